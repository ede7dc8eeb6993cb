# Quarry: `make run` serves the API, `make test` runs the suite; both set up what
# they need (virtualenv, project install, embedded engine build) on first use and
# skip it when nothing changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test bench lint engine install clean

$(INSTALLED): pyproject.toml client/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Quarry needs Python 3.11 or newer (found " + sys.version.split()[0] + ")")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e './client[cli]'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(INSTALLED)

# Builds .quarry/bin/ferretdb once (skipped when QUARRY_MONGODB_URL names a server).
engine: $(INSTALLED)
	@if [ -z "$$QUARRY_MONGODB_URL" ]; then $(BIN)/quarry engine build; fi

run: engine
	$(BIN)/quarry serve

# The suite tests the embedded engine itself, so it always needs the binary. It
# runs on the PostgreSQL backend (or QUARRY_TEST_MONGODB_URL); servers refuse the
# SQLite backend, which only `quarry engine migrate` still reads.
test: $(INSTALLED)
	$(BIN)/quarry engine build
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: engine
	$(BIN)/python -m bench

lint: $(INSTALLED)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .quarry .pytest_cache .ruff_cache *.egg-info
