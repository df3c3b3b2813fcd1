"""The garbage-collector policy of a long-running worker.

A flow allocates many short-lived objects per record (parsed JSON, models, records crossing
Bytewax steps) and almost no reference cycles. With Python's default thresholds (700, 10, 10) the
cyclic collector runs a young collection every 700 net allocations, and every full collection
walks everything start-up left behind (modules, reference data, the built dataflow). `apply`
moves what exists once the flow is built into the permanent generation (`gc.freeze`), so no
collection walks it again, and raises the young threshold so collections run a hundredfold less
often; reference counting still frees almost every object at once, and the collector still runs.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Net allocations between young collections (Python's default: 700)."""
OLDER_THRESHOLDS = (20, 20)
"""Young collections per middle one, middle ones per full one (Python's default: 10, 10)."""


def apply(enabled: bool = True) -> bool:
    """Freeze what exists now and raise the collection thresholds, when `enabled`; whether the
    policy was applied. Call it once the flow is built (idempotent)."""
    if not enabled:
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return True
