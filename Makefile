# Every target creates .venv on first use; a second run reuses it (the stamp file tracks pyproject.toml, setup.py and constraints.txt).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-down test lint docs bench cluster-up cluster-down cluster-status clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m cluster.demo $(ARGS)

demo-down: cluster-down

# Two xdist workers: every integration test on one (they share one cluster), the unit tests on the other
# meanwhile (tests/conftest.py: pytest_xdist_make_scheduler). ARGS="-n 0" runs everything in this process.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The documentation site (mkdocs, material theme) into site/; --strict fails on any broken link or anchor.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Every benchmark one after another, then benchmarks/results/summary.md (ARGS="--quick", "--only data,train").
BENCH_STAMP := $(VENV)/.installed-bench

# The bench extras once per change of the package files, as for the venv (a pip run costs ~7 s even when
# everything is installed).
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks.run_all $(ARGS)

cluster-up: $(STAMP)
	$(PY) -m cluster up

cluster-down: $(STAMP)
	$(PY) -m cluster down

cluster-status: $(STAMP)
	$(PY) -m cluster status

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
