# syntax=docker/dockerfile:1
# Surgeflow's image: the project installed as a package (its data included) in a venv, run as
# uid 65532 like the Bytewax chart's pods. Build: `docker build -t surgeflow:0.1.0 .`
#   docker run --rm surgeflow:0.1.0                   # flows.shipments on embedded defaults
#   docker run --rm surgeflow:0.1.0 flows.tickets -w 2
# `waxctl dataflow deploy` (the Bytewax chart) runs `sh ./entrypoint.sh` in the WORKDIR instead:
# see scripts/image/ and the README's "Image and waxctl". tests/deploy/test_image.py runs the
# install script and both entrypoints.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# Build stage: the project's wheel and the wheels of all its dependencies, in /wheels.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY data ./data
COPY schemas ./schemas
COPY operators ./operators
COPY flows ./flows
RUN pip wheel --wheel-dir /wheels --only-binary :all: .

# Final stage: a venv in /venv from those wheels (no compiler, no network, no wheels left).
# /bin/sh is bash: the chart's command `sh -c "sh ./entrypoint.sh"` runs as PID 1, and dash
# would stay there, where SIGTERM without a handler is dropped; bash execs it, so SIGTERM from
# Kubernetes reaches the flow (graceful stop, final snapshot).
FROM ${PYTHON_IMAGE}
# hadolint ignore=DL4005
RUN ln -sf bash /bin/sh
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=scripts/image/install.sh,target=/tmp/install.sh \
    sh /tmp/install.sh /wheels /venv \
    && python -m pip uninstall --yes --quiet --disable-pip-version-check setuptools wheel \
    && install -d -o 65532 -g 65532 -m 0750 /var/bytewax /var/bytewax-api-cache /var/recovery
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BYTEWAX_WORKDIR=/var/bytewax \
    BYTEWAX_DATAFLOW_API_CACHE_PATH=/var/bytewax-api-cache
# Read-only for the flow's user; it writes only to /var/bytewax, /var/bytewax-api-cache and
# /var/recovery (emptyDirs and the recovery claim on Kubernetes).
WORKDIR /bytewax
COPY scripts/image/entrypoint.sh scripts/image/entrypoint-recovery.sh ./
USER 65532:65532
EXPOSE 9999 3030
ENTRYPOINT ["python", "-m", "bytewax.run"]
CMD ["flows.shipments"]
