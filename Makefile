# SleepTrain: `make run` chats with the agent, `make test` runs the tests.
# Both set everything up first (scripts/install.sh; fast when nothing changed).

VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test test-fast bench docs clean

install:
	@bash scripts/install.sh

run: install
	$(BIN)/sleeptrain chat

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not real and not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/store_bench.py

docs: install
	$(BIN)/python scripts/gen_docs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
