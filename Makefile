# modelgov entry points. Everything installs into .venv from PyPI; state lives under var/.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo up down status test test-unit test-integration test-e2e bench bench-scoring lint schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: install up
	$(PY) -m deploy.demo

up: install
	$(PY) -m deploy.stack up

down:
	$(PY) -m deploy.stack down

status: install
	$(PY) -m deploy.stack status

test: install
	$(PY) -m pytest -q tests

test-unit: install
	$(PY) -m pytest -q tests/unit

test-integration: install
	$(PY) -m pytest -q tests/integration

test-e2e: install
	$(PY) -m pytest -q tests/e2e

bench: install
	$(PY) -m bench.audit_ingest

# modelgov scoring vs MLServer 1.7 (its own venv under var/bench); ~3 min with the defaults
bench-scoring: install
	$(PY) -m bench.scoring_vs_mlserver

lint: install
	$(VENV)/bin/ruff check .

schemas: install
	$(PY) -m contracts.catalog

clean:
	rm -rf var .pytest_cache
