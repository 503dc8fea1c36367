# citypulse: `make demo` runs the whole service, `make test` runs the tests.
# Both install what they need (system packages via scripts/system-deps.sh when root).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-timescale test-fast test-faults lint deps system-deps assets clean bench vendor

$(STAMP): pyproject.toml constraints.txt ingest/_fastrows.c
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

system-deps:
	@PYTHON=$(PYTHON) bash scripts/system-deps.sh --browser

deps: system-deps $(STAMP) assets vendor

# vendor SDKs the tests drive (tb-mqtt-client, ngsildclient), in their own virtualenv: see
# tests/vendor-requirements.txt
vendor: $(STAMP)
	$(BIN)/python tests/ingest/vendor.py

assets: $(STAMP)
	@if [ -x scripts/build-assets.sh ]; then bash scripts/build-assets.sh; fi

lint: $(STAMP)
	$(BIN)/ruff check .

# the whole suite, fault suite included, on 4 workers (pytest-xdist): most tests wait on
# servers and clocks, so 4 workers fill 2 cores (pytest 7 min 42 s here, 8 min 18 s on 3)
TEST_WORKERS ?= 4
test: deps lint
	$(BIN)/pytest -q --run-slow -n $(TEST_WORKERS)

# the same suite on the TimescaleDB store path: private servers preload the extension, and the
# run fails when it is not installed (CITYPULSE_PG_BINDIR picks a server that has it)
test-timescale: deps lint
	$(BIN)/pytest -q --run-slow -n $(TEST_WORKERS) --store-backend timescale

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not browser"

test-faults: deps
	$(BIN)/pytest -q -m slow --run-slow

demo: deps
	$(BIN)/citypulse up

clean:
	rm -rf $(VENV) .citypulse
