"""Surge capacity benchmark: `python -m benchmarks.surge {shipments,tickets}`; see __main__."""
