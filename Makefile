# Two commands a new user needs: `make demo` and `make test`. Both create .venv if missing and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmattn-installed
# pytest workers are not used: the suite is sized for 2 cores and some tests start their own processes.
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet "pip>=23.2"

$(STAMP): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	@bash scripts/ensure_espeak.sh
	$(VENV)/bin/mmattn-train

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check mmattn tests scripts examples
	$(VENV)/bin/ruff format --check mmattn tests scripts examples

bench: install
	$(PY) scripts/bench.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
