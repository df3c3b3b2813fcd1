#!/bin/sh
# Installs Surgeflow and its dependencies from a folder of wheels into a new venv, offline:
#   sh scripts/image/install.sh WHEELS VENV        (PYTHON: the interpreter, default `python`)
# The image's final stage runs it (Dockerfile); tests/deploy/test_image.py runs the same file
# into a venv outside the source tree. The venv gets no pip: the base interpreter's pip installs
# into it (`pip --python`), so the image carries no installer beside the base's own.
set -eu

wheels=$1
venv=$2
python=${PYTHON:-python}

"$python" -m venv --without-pip "$venv"
pip_venv() { "$python" -m pip --python "$venv/bin/python" --disable-pip-version-check "$@"; }
pip_venv install --no-cache-dir --no-index --find-links "$wheels" --only-binary :all: surgeflow
pip_venv check
# Nothing of the project is imported here: importing a flow module builds nothing, but it must
# import from the venv alone.
"$venv/bin/python" -I -c 'import bytewax.run, flows.shipments, flows.tickets'
