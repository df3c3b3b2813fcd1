"""`python -m tests.support.recovery_probe DIR`: print, as one JSON line, what the start-up check
of a recovery store says about DIR: `{"partitions": N}`, or `{"reason": ..., "message": ...}`.

The filesystem tests run it inside a user namespace (`unshare`), where they can mount a tiny or
read-only filesystem, or drop the privileges that let root write anywhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from operators.runtime.recovery import RecoveryConfigurationError, partition_count


def main(directory: str) -> None:
    try:
        print(json.dumps({"partitions": partition_count(Path(directory))}))
    except RecoveryConfigurationError as exc:
        print(json.dumps({"reason": getattr(exc, "reason", None), "message": str(exc)}))


if __name__ == "__main__":
    main(sys.argv[1])
