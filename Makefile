# chaosmesh-qa: `make demo` (the main job) and `make test` do all the set-up themselves.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# A Python >= 3.12: on PATH first, else under pyenv (these machines keep 3.12 there, off PATH).
PYTHON ?= $(shell for c in python3.12 python3.13 python3.14 python3; do \
            p=$$(command -v $$c 2>/dev/null) && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
            && { echo $$p; exit; }; done; \
          root=$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv); \
          for p in $$(ls -d $$root/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do \
            $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; exit; }; done)

.PHONY: setup bytecode demo test lint unit slow test-all bench bench-ab clean down test-tools docs

setup: $(STAMP) prometheus bytecode

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: chaosmesh-qa needs Python >= 3.12 (chaostoolkit >= 1.21 requires it); none found on PATH" \
	       "or under pyenv. Install one, or run: make PYTHON=/path/to/python3.12"; exit 1; fi
	@echo "using $(PYTHON) ($$($(PYTHON) --version))"
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The package's bytecode, as a regular (not editable) install writes it at install time.  Where
# PYTHONDONTWRITEBYTECODE is set (as on the machines this project is built on) an editable install compiles
# every module from source in every process the tests and the bench start: 0.09 s of each sandbox's start.
# Only stale files are compiled again.
bytecode: $(STAMP)
	@$(PY) -m compileall -q chaosmesh_qa

prometheus:
	@if [ -n "$$CHAOSMESH_QA_PROMETHEUS" ] || command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's prometheus package"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null; \
	else \
	  echo "error: Prometheus not found. Install Debian's 'prometheus' package (sudo apt-get install prometheus)" \
	       "or set CHAOSMESH_QA_PROMETHEUS=/path/to/prometheus"; exit 1; fi

# Tools the tests drive, from Debian (not needed by `make demo`): headless Chromium opens the HTML report,
# kubectl talks to the Kubernetes API emulation.  Only what is missing is installed.
test-tools:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v kubectl >/dev/null || missing="$$missing kubernetes-client"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's$$missing (the tests use them)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null; \
	else \
	  echo "error: missing$$missing. Install Debian's packages: sudo apt-get install$$missing"; exit 1; fi

# lint-imports: the package's layers and the contracts of [tool.importlinter] (pyproject.toml; docs/explanation/architecture.md)
lint: setup
	$(VENV)/bin/ruff check chaosmesh_qa tests bench docs/hooks
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench  # make bench's programs
	$(VENV)/bin/mypy docs/hooks/reference.py  # the docs site's build hook (reference pages generated from the code)
	$(VENV)/bin/lint-imports

# The fast lane: every test that starts no process (tests.support.lanes makes any process start fail the test).
unit: $(STAMP)
	CHAOSMESH_QA_TEST_LANE=unit $(VENV)/bin/pytest -q -m "not processes and not slow" --durations=10

# Two phases: the tests judged by budgets the sandbox measures (tests/support/workers.py) alone, one at a time, as in
# a serial run; then every other test on TEST_WORKERS workers (pytest-xdist), which contend only with each other.
# Both phases run; the target fails if either did.  TEST_WORKERS=0 runs the second serially too.
TEST_WORKERS ?= 2
test: setup test-tools lint
	@status=0; \
	$(VENV)/bin/pytest -q -m "budgets and not slow" --durations=15 || status=$$?; \
	$(VENV)/bin/pytest -q -m "not budgets and not slow" -n $(TEST_WORKERS) --dist loadscope --durations=10 || status=$$?; \
	exit $$status

slow: setup test-tools
	$(VENV)/bin/pytest -q -m slow --durations=25

test-all: setup test-tools lint
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) -m bench

bench-ab: setup  # make bench-ab REF=<commit> BENCH=hop: the package at REF against the working tree, alternating
	$(PY) -m bench.ab $(REF) $(BENCH) --rounds $(or $(ROUNDS),3)

# The documentation site (mkdocs.yml, docs/) into site/: open site/index.html, no server needed.  --strict: a broken
# link or a warning is an error.  The reference pages are generated from the code while building (docs/hooks/).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# The main job: a real experiment (sandbox up, traffic, pod kill, probes, rollback, sandbox down)
# and the verdict that CI would trust.  Journal, log and timeline land in .demo/.
DEMO_EXPERIMENT ?= experiments/pod-kill-failover.json
demo: setup
	@mkdir -p .demo
	-CHAOSMESH_QA_TIMELINE=.demo/timeline.jsonl $(VENV)/bin/chaos --no-version-check --log-file .demo/chaostoolkit.log \
	  run --journal-path .demo/journal.json $(DEMO_EXPERIMENT)
	@echo
	$(VENV)/bin/chaosmesh-qa verdict .demo/journal.json

down:
	-$(VENV)/bin/chaosmesh-qa down

clean: down
	rm -rf $(VENV) .chaosmesh-qa .demo *.egg-info
