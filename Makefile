# The two commands a fresh clone needs: `make demo` and `make test`.
# Each creates the virtual environment it needs (.venv) from constraints.txt.
# `make bench` adds the bench extra (Vapi's SDK, aiohttp: the peers bench/ measures
# against) and runs the benchmarks: about an hour on 2 cores, BENCH_ROUNDS=1 for a third.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ROUNDS ?= 3

.PHONY: demo test lint types unit venv bench compat fuzz soak restarts wheel-check clean screenshots bench-dashboard

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(BENCH_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(BIN)/phonebatch demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

types: $(STAMP)
	$(BIN)/mypy

# The tests in TEST_PROCESSES pytest processes (pytest-xdist), an idle one taking tests
# from a busy one's share (worksteal: no long file holds up the end): most
# of their time is spent waiting on the processes they start (Redis, the simulator, workers),
# so 3 of them share 2 cores well. Each starts its own Redis, simulator and workers on ports
# of its own. TEST_PROCESSES=0 runs them in this one process. Tests marked `alone` measure
# rates or pauses in wall time: they run afterwards, in one process, with nothing beside them.
TEST_PROCESSES ?= 3

unit: $(STAMP)
	status=0; \
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist worksteal -m "not alone" || status=$$?; \
	$(BIN)/pytest -m alone || status=$$?; \
	exit $$status

test: lint types unit

# The README's screenshots of the pages (docs/screenshots/), taken by the browser tests.
screenshots: $(STAMP)
	PHONEBATCH_SCREENSHOTS=1 $(BIN)/pytest -q tests/test_e2e_browser.py

# The pages over 1,000 to 100,000-item batches: page times, the API's memory (a minute).
bench-dashboard: $(STAMP)
	$(BIN)/python -m bench.dashboard

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.api_pace --rounds $(BENCH_ROUNDS)
	$(BIN)/python -m bench.rate_limit
	$(BIN)/python -m bench.throughput --rounds $(BENCH_ROUNDS)
	$(BIN)/python -m bench.transport --rounds $(BENCH_ROUNDS)
	$(BIN)/python -m bench.enqueue
	$(BIN)/python -m bench.reports
	$(BIN)/python -m bench.dashboard
	$(BIN)/python -m bench.hostile
	$(BIN)/python -m bench.priority

# A 100,000-number batch while a worker process is SIGKILLed every 30 s and Redis restarts
# once: counts, worker memory over time, Redis memory per item (about 5 minutes).
soak: $(STAMP)
	$(BIN)/python -m bench.soak --numbers $${SOAK_NUMBERS:-100000}

# Redis stopped and started 20 times under a running batch: no worker process may exit,
# and every item is counted once. About two minutes; not part of `make test`.
restarts: $(STAMP)
	$(BIN)/python -m bench.restarts --restarts 20

# The built wheel, installed (not editable) in a fresh venv, runs a small batch; CI runs it.
wheel-check:
	.ci/wheel-check

# Generated hostile batch files and API requests (schemathesis), many more than the test
# command tries (new ones each run).
fuzz: $(STAMP)
	PHONEBATCH_FUZZ_EXAMPLES=$${PHONEBATCH_FUZZ_EXAMPLES:-20000} $(BIN)/pytest -q -p no:cacheprovider --timeout=0 tests/test_hostile_property.py
	PHONEBATCH_SCHEMATHESIS_EXAMPLES=$${PHONEBATCH_SCHEMATHESIS_EXAMPLES:-1000} $(BIN)/pytest -q -p no:cacheprovider --timeout=0 tests/test_e2e_schemathesis.py

# Fresh venvs: the lowest celery and kombu pyproject.toml allows runs the end-to-end
# pipeline; kombu 5.6 (without the internals worker/broker.py overrides) runs it on
# kombu's own transport. A few minutes; not part of `make test`.
compat:
	.ci/compat

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
