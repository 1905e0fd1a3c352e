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
# The book's tensors are small: one thread per process. Two pytest workers, each with a
# kernel of its own, oversubscribe 2 cores otherwise, and small operations slowed down
# many times over (measured on the derivative-recursion chapter: 153 s -> 48 s).
export OMP_NUM_THREADS ?= 1
# WikiText-2 for the language-model chapter: the shared data folder beside the repository
# when there is one (lib/corpus.py documents the whole lookup order).
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/wikitext-2/valid.txt),)
export RNN_BOOK_DATA ?= $(SHARED_DATA)
endif

# MathJax and the Jupyter widget manager, from the npm registry, served by the built site
# (offline reading; see tools/web_assets.py).
WEB := $(VENV)/share/book-web/installed.json
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup book test lab clean benchmarks chapter-times browser student tex pdf pdf-check

setup: $(STAMP) $(WEB)

# PyTorch comes first, from PyTorch's CPU wheel index: from the plain package index a Linux
# machine would get the CUDA build (several GB) instead. For a CUDA build choose its index,
# e.g. `make setup TORCH_INDEX=https://download.pytorch.org/whl/cu126`. Where that index is
# unreachable, pip still finds a wheel in its configured find-links or extra indexes.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

$(STAMP): requirements.txt requirements-torch.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --retries 1 --index-url $(TORCH_INDEX) -r requirements-torch.txt
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (book)" >/dev/null
	touch $(STAMP)

$(WEB): tools/web_assets.py | $(STAMP)
	$(PY) tools/web_assets.py $(dir $(WEB))
	touch $(WEB)

# Debian's Chromium for the browser test (tests/test_site.py), installed when missing and
# running as root; otherwise the test says how to install it (and fails under CI).
browser:
	@if [ ! -x "$(CHROMIUM)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# TeX Live from Debian's packages for `make pdf` (about 80 MB to download), installed when
# missing and running as root; XeLaTeX with the FreeFont and DejaVu fonts typesets the
# book's Unicode.
# poppler-utils (pdfinfo, pdfimages) for the PDF's checks.
TEX_PACKAGES := texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended \
  texlive-xetex latexmk fonts-freefont-otf fonts-dejavu-core poppler-utils
tex:
	@if ! dpkg -s $(TEX_PACKAGES) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing TeX Live for the PDF"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(TEX_PACKAGES) >/dev/null; \
	  elif ! command -v xelatex >/dev/null || ! command -v latexmk >/dev/null; then \
	    echo "make pdf needs TeX Live; as root: apt-get install $(TEX_PACKAGES)" >&2; exit 1; \
	  fi; \
	fi

# The student edition (tools/student.py): notebooks and a site without solutions, and the
# solutions manual, in _build/student/; then the test that no solution leaks into it.
# Built from the executed notebooks of `make test` (chapters without one are executed).
student: $(STAMP) $(WEB)
	$(PY) tools/student.py
	STUDENT_EDITION=$(CURDIR)/_build/student $(VENV)/bin/pytest -q -p no:cacheprovider \
	  tests/test_student.py

# The book as one PDF through Jupyter Book's LaTeX builder (tools/build_pdf.py), from the
# executed notebooks of `make test`: _build/book.pdf. pdf-check also verifies it (page
# count, LaTeX errors, missing files, every figure included).
pdf: $(STAMP) tex
	$(PY) tools/build_pdf.py

pdf-check: $(STAMP) tex
	$(PY) tools/build_pdf.py --check

book: $(STAMP) $(WEB)
	set -o pipefail; $(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# Two runs: the lib tests and every chapter (nbval, which also saves the executed notebooks
# to _build/executed), then the browser test on the site built from those notebooks.
test: $(STAMP) $(WEB) browser
	@$(VENV)/bin/pytest -n $(JOBS) --dist loadfile --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=180 --timeout=900 --ignore=tests/test_site.py tests book; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the test setup is broken" >&2; fi; \
	  if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	  $(VENV)/bin/pytest --timeout=900 -rs -s tests/test_site.py

# JupyterLab with jupytext: the .md chapters open as notebooks on a double click
# (tools/jupyterlab-overrides.json makes "Jupytext Notebook" their default viewer).
lab: $(STAMP)
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp tools/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) book

benchmarks: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf _build
