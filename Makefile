# The two commands of the README: `make app` and `make test`. Both build .venv in the repository.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STORE  ?= .dev/demo.duckdb
DEMO   := data/demo
HOST   ?= 127.0.0.1
PORT   ?= 8501
# torch is pinned to the CPU build that lies on this machine's disk; an unpinned torch pulls a CUDA build.
TORCH  := torch==2.13.0

.PHONY: app test lint typecheck pytest bench clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.app-installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install -q -e '.[app]'
	touch $@

$(VENV)/.test-installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install -q -e '.[app,train,dev,cluster]' $(TORCH)
	touch $@

# Debian's chromium for the browser test; Playwright's own browser download does not work offline.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

$(STORE): $(VENV)/.app-installed $(wildcard $(DEMO)/*.parquet)
	@mkdir -p $(dir $(STORE))
	$(BIN)/harp import --force $(DEMO) $(STORE)

app: $(VENV)/.app-installed $(STORE)
	$(BIN)/harp app --store $(STORE) --host $(HOST) --port $(PORT)

SOURCES := $(wildcard harp app tests benchmarks setup.py)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

# Includes tests/test_wheel.py: it builds the wheel and installs it with [app] into a fresh venv of its own (from
# the package registry, or pip's cache), so a packaging mistake fails here and not for the first user.
pytest: $(VENV)/.test-installed chromium
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/bench_select.py

clean:
	rm -rf $(VENV) .dev .pytest_cache .ruff_cache .mypy_cache
