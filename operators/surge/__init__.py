"""The seeded surge engine (`engine`) and the templates of its text (`templates`); each flow
domain makes up its own records (`operators.shipments.surge`, `operators.tickets.surge`).
`python -m operators.surge {shipments,tickets}` writes a surge as JSON lines."""
