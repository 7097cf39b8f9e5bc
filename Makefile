# The commands of the README: `make run`, `make test` (the whole suite, CI's command) and
# `make test-fast` (the edit loop). All set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARCHIVE ?= output
# pip 23.2 cannot resolve lxml[html_clean] ("Candidate is not for this requirement"):
# the venv gets a newer pip before anything else is installed.
PIP_VERSION := 25.3

.PHONY: run test test-fast lint bench bench-archive eval clean test-services

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[test]"
	touch $@

run: $(VENV)/.installed
	$(BIN)/newsarchive crawl --mirror --archive "$(ARCHIVE)"

test: $(VENV)/.installed test-services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

# The edit loop, under 2 minutes on 2 cores: the tests marked neither slow nor second_store (pyproject.toml).
test-fast: $(VENV)/.installed test-services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -m "not slow and not second_store"

# Ceph RGW (the second real object store of the tests) and redis-server come from Debian (root needed once).
test-services:
	bash tests/install-services.sh

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The crawl at scale on loopback (../shared/eval pages, N and 5N), hostile input at full size
# (outcome and peak memory), a crawl shared through Redis, then the mirror crawl and stores.
bench: $(VENV)/.installed test-services
	$(BIN)/python -m benchmarks.bench_crawl
	$(BIN)/python -m benchmarks.bench_storage
	$(BIN)/python -m benchmarks.bench_hostile
	$(BIN)/python -m benchmarks.bench_redis
	$(BIN)/python -m benchmarks.bench_mirror_crawl
	$(BIN)/python -m benchmarks.bench_object_storage

# A run's cost against the archive's size and age: crawls finding nothing new on synthetic archives
# (entries / runs, built once into /tmp/newsarchive-bench-archive) beside a fresh one, local and on
# SeaweedFS; BENCH_ARCHIVE_ARGS="--full" adds 5M entries.
bench-archive: $(VENV)/.installed
	$(BIN)/python -m benchmarks.bench_archive $(BENCH_ARCHIVE_ARGS)

# Scores on ../shared/eval: extraction (F1, P, R, cross-validated F1 by site folds, ms/page and CPU
# beside trafilatura and readability-lxml; --quick, --datasets: python -m benchmarks.eval_extraction -h),
# then language identification (text, headlines, extracted pages, times).
eval: $(VENV)/.installed
	$(BIN)/python -m benchmarks.eval_extraction
	$(BIN)/python -m benchmarks.eval_language

clean:
	rm -rf $(VENV) output/* .pytest_cache
