# modelgov entry points. Everything installs into .venv from PyPI; state lives under var/.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# Evidently, the drift peer, needs pandas<3: its own venv, rebuilt when its pins (bench/peers.py) change
PEERS  := var/peers
PEERS_STAMP := $(PEERS)/.installed-$(shell cksum bench/peers.py | cut -d' ' -f1)

.PHONY: install peers demo up down status test test-unit test-integration test-e2e bench bench-scoring bench-drift \
        lint schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

peers: $(PEERS_STAMP)

$(PEERS_STAMP): bench/peers.py
	$(PYTHON) -m bench.peers
	rm -f $(PEERS)/.installed-* && touch $(PEERS_STAMP)

demo: install up
	$(PY) -m deploy.demo

up: install
	$(PY) -m deploy.stack up

down:
	$(PY) -m deploy.stack down

status: install
	$(PY) -m deploy.stack status

test: install peers
	$(PY) -m pytest -q tests

test-unit: install peers
	$(PY) -m pytest -q tests/unit

test-integration: install
	$(PY) -m pytest -q tests/integration

test-e2e: install
	$(PY) -m pytest -q tests/e2e

bench: install peers
	$(PY) -m bench.audit_ingest
	$(PY) -m bench.monitoring_ingest
	$(PY) -m bench.drift_vs_evidently

# modelgov scoring vs MLServer 1.7 (its own venv under var/bench); ~3 min with the defaults;
# then what a shadow version costs the decisions it shadows (~1.5 min)
bench-scoring: install
	$(PY) -m bench.scoring_vs_mlserver
	$(PY) -m bench.scoring_shadow

# modelgov drift vs Evidently 0.7.23's DataDriftPreset (its own venv, var/peers), 100,000 × 20; ~2 min
bench-drift: install peers
	$(PY) -m bench.drift_vs_evidently

lint: install
	$(VENV)/bin/ruff check .

schemas: install
	$(PY) -m contracts.catalog

clean:
	rm -rf var .pytest_cache
