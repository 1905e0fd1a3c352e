# The two commands of the README: `make book` and `make test`. Both set up the environment
# first (a virtual environment with the pinned requirements and `lib` installed editable).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2
# A non-interactive matplotlib backend in the environment drops every plot from the pages.
unexport MPLBACKEND

.PHONY: setup book test lab clean benchmarks chapter-times

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (book)" >/dev/null
	touch $(STAMP)

book: $(STAMP)
	set -o pipefail; $(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

test: $(STAMP)
	@$(VENV)/bin/pytest -n $(JOBS) --dist loadfile --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=180 --timeout=900 tests book; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the test setup is broken" >&2; fi; \
	  exit $$rc

lab: $(STAMP)
	$(VENV)/bin/jupyter lab book

benchmarks: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf _build
