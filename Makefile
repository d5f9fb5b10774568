# seriesgate — see README.md. Two commands on a fresh machine: `make run`, `make check`.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
TAGS    ?=
# `make check` runs every functional test on both builds (CHECK_TAGS empty = all tiers),
# one test-VM boot for the single-VM tests and one per migration test class;
# `make check CHECK_TAGS=quick` is the fast subset.
CHECK_TAGS ?=
ARGS    ?=
SHELL   := /bin/bash
.SHELLFLAGS := -o pipefail -c
# The machine's pip config names local indexes that may be absent; keep only real messages.
PIPQUIET := 2>&1 | { grep -v 'is ignored: it is neither' || true; }

.PHONY: all setup venv run check check-unit check-functional lint bench bench-apply bench-build bench-testenv bench-gate bench-l1 clean

all: check

# Debian packages (apt) — idempotent, quick when everything is there.
setup:
	bash ci/setup-host.sh

# The virtualenv with pinned Python dependencies (pyproject.toml).
venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml ci/setup-host.sh
	bash ci/setup-host.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip $(PIPQUIET)
	$(BIN)/pip install -q -e '.[dev]' $(PIPQUIET)
	touch $@

# Verify the default series end to end (offline copies from ../shared/series when present):
# the gate's tests (quick, core and every claim of the series); ARGS=--all runs every test.
run: venv
	$(BIN)/seriesgate run $(ARGS)

check: lint check-unit check-functional

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

# pytest exits 5 when it collects nothing: that is a failure here, not a pass.
check-unit: venv
	$(BIN)/pytest -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "check-unit: no tests collected" >&2; exit 1; fi; exit $$rc

# Functional tests (Avocado) on the baseline and patched builds of the default series,
# inside the test environment. Passes when the gate reached a verdict (pass or fail):
# a QEMU defect found by a test is a finding in the report, not a broken tool.
SELECTED = $(or $(TAGS),$(CHECK_TAGS))
check-functional: venv
	$(BIN)/seriesgate run --check-tool --bisect-max 1 $(if $(SELECTED),$(addprefix --tags ,$(SELECTED)),--all) $(ARGS)

bench: venv
	$(BIN)/seriesgate bench $(ARGS)

bench-apply: venv
	$(BIN)/python ci/bench_apply.py

bench-build: venv
	$(BIN)/python ci/bench_build.py

bench-testenv: venv
	$(BIN)/python ci/bench_testenv.py

# The whole gate, timed: verdict line, stage times, test-VM boots and deaths per run
# (ARGS: e.g. `--runs 3`, `--fresh-baseline`, `--tags quick`).
bench-gate: venv
	$(BIN)/python ci/bench_gate.py $(ARGS)

# L1 test-VM deaths per L1 QEMU (system 7.2 vs bookworm-backports 10.0), migration-group boots
# interleaved (ARGS: e.g. `--boots 10`, `--until 10:10` (UTC), `--qemu system --qemu PATH`).
bench-l1: venv
	$(BIN)/python ci/bench_l1.py $(ARGS)

clean:
	rm -rf $(VENV) results
