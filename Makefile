# SleepTrain: `make run` chats with the agent, `make test` runs the tests.
# Both set everything up first (scripts/install.sh; fast when nothing changed).

VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test test-fast lint bench docs clean

install:
	@bash scripts/install.sh

run: install
	$(BIN)/sleeptrain chat

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not real and not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/store_bench.py
	$(BIN)/python -m benchmarks.serve_bench

docs: install
	$(BIN)/python scripts/gen_docs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
