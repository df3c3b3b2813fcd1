#!/bin/sh
# The chart's recovery init step (`sh -c "sh ./entrypoint-recovery.sh"`, `waxctl ... --recovery`):
# creates BYTEWAX_RECOVERY_PARTS partitions in BYTEWAX_RECOVERY_DIRECTORY, once. An existing
# store is never recreated: it holds the flow's state.
set -eu

if [ -f "$BYTEWAX_RECOVERY_DIRECTORY/part-0.sqlite3" ]; then
    echo "$BYTEWAX_RECOVERY_DIRECTORY/part-0.sqlite3 exists: recovery store kept" >&2
else
    exec python -m bytewax.recovery "$BYTEWAX_RECOVERY_DIRECTORY" "$BYTEWAX_RECOVERY_PARTS"
fi
