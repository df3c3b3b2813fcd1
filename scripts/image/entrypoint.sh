#!/bin/sh
# What the Bytewax Helm chart (and so `waxctl dataflow deploy`) runs in the image's WORKDIR:
# `sh -c "sh ./entrypoint.sh"`, with BYTEWAX_PYTHON_FILE_PATH=/var/bytewax/<file> (the flow file
# copied from its ConfigMap), BYTEWAX_WORKDIR=/var/bytewax, and the process id and addresses
# in BYTEWAX_POD_NAME / BYTEWAX_STATEFULSET_NAME / BYTEWAX_HOSTFILE_PATH, read by bytewax.run.
set -eu

cd "${BYTEWAX_WORKDIR:-/var/bytewax}"
if [ "${BYTEWAX_KEEP_CONTAINER_ALIVE:-false}" != true ]; then
    # exec: SIGTERM reaches the flow, which stops gracefully and writes a final snapshot.
    exec python -m bytewax.run "$BYTEWAX_PYTHON_FILE_PATH"
fi
status=0
python -m bytewax.run "$BYTEWAX_PYTHON_FILE_PATH" || status=$?
echo "process ended with status $status; kept alive (BYTEWAX_KEEP_CONTAINER_ALIVE=true)" >&2
sleeper=
trap 'kill $sleeper 2>/dev/null; exit "$status"' TERM INT
while :; do
    sleep 3600 &
    sleeper=$!
    wait $sleeper || true
done
