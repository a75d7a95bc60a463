# One Makefile: it creates its own virtualenv and installs everything the project needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# A reference MCP server for the integration test, in its own virtualenv: it pins the 1.x `mcp`
# SDK, which must not share a site-packages with our 2.x client.
MCP_VENV  := .venv-mcp-time
MCP_STAMP := $(MCP_VENV)/.installed-stamp

.PHONY: install test lint typecheck bench demo schemas clean

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

test: install $(MCP_STAMP)
	ORCHESTR_MCP_TIME=$(CURDIR)/$(MCP_VENV)/bin/mcp-server-time $(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check orchestr tests bench

typecheck: install
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/run.py

demo: install
	@$(VENV)/bin/orchestr validate
	@$(VENV)/bin/orchestr plan hello
	@$(VENV)/bin/orchestr run hello

schemas: install
	for kind in workflow context config; do $(VENV)/bin/orchestr schema $$kind > docs/schema/$$kind.schema.json; done

clean:
	rm -rf $(VENV) $(MCP_VENV) .orchestr out .mypy_cache .ruff_cache .pytest_cache
