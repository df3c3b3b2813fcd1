"""Reusable Surgeflow operators.

Each operator is a function `(step_id, upstream, *, settings...)` returning a stream (or a frozen
dataclass of named streams), the way `bytewax.operators` is written. The decision, routing and
prompt logic they call lives in plain-Python modules that do not import Bytewax.
"""
