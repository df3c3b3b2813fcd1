"""Surgeflow's dataflows: `flows.shipments` and `flows.tickets` (each has a module-level `flow`)."""
