# The two commands of the README. Each creates or reuses .venv and installs what
# it needs; the stamp file makes a second run install nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: demo test clean-venv

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# make demo: ~12 min on a 2-core CPU; make demo QUICK=1: a ~3 min smoke run.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m tools.demo $(if $(QUICK),--quick) $(ARGS)

# Style first (seconds), then the suite: ruff's settings are in pyproject.toml.
# Two pytest-xdist workers of one thread each, a test file per worker at a time
# (files share module fixtures): ~9 min on the 2-core CPU instead of ~14 in one
# process. TEST_WORKERS=0 runs it in this process (e.g. for pdb).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/ruff check --quiet .
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

clean-venv:
	rm -rf $(VENV)
