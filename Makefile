# The two commands a new machine needs: `make dev` and `make test`.
# Everything else here is what they are made of.

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
STATE_DIR ?= .state
export UV_PYTHON_DOWNLOADS := never

# uv from the PATH when present, else a private copy in .tools/.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)

.PHONY: dev test system-deps lint typecheck pytest webui webui-test bench clean

dev: system-deps $(VENV)/.synced webui
	$(BIN)/controlplane dev --state-dir $(STATE_DIR)

test: system-deps $(VENV)/.synced webui lint typecheck webui-test pytest

# Chromium, nginx, sqlite3, PostgreSQL, git, systemd-analyze, Node.js: installed with
# apt-get when missing and possible, else the command to run is printed.
system-deps:
	@PYTHON=$(PYTHON) scripts/system-deps

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.synced
	$(BIN)/mypy

# The Python tests, then a branch-coverage report (pyproject.toml; no threshold).
pytest: system-deps $(VENV)/.synced webui
	$(BIN)/pytest --cov --cov-report=term

bench: $(VENV)/.synced
	$(BIN)/python bench/relay.py

.tools/bin/uv: | system-deps
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock Makefile | $(UV)
	$(UV) sync --frozen --extra postgres --python $(PYTHON)
	touch $@

# The web UI is built when it exists (webui/package.json); npm ci only when
# the lock file changed, the build only when a source changed.
ifneq ($(wildcard webui/package.json),)
WEBUI_SOURCES := $(shell find webui/src webui/index.html webui/vite.config.* webui/tsconfig*.json -type f 2>/dev/null)
webui: webui/dist/index.html
webui/node_modules/.installed: webui/package.json webui/package-lock.json | system-deps
	cd webui && npm ci --no-audit --no-fund
	touch $@
webui/dist/index.html: webui/node_modules/.installed $(WEBUI_SOURCES)
	cd webui && npm run build
webui-test: webui/node_modules/.installed
	cd webui && npm run lint
	cd webui && npm test
else
webui:
	@true
webui-test:
	@true
endif

clean:
	rm -rf $(VENV) .tools webui/node_modules webui/dist .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
