# hamlib: environment, book and tests.
#   make test   -> create .venv (if needed) and run the whole test-suite (incl. notebooks)
#   make book   -> create .venv (if needed) and build the Jupyter Book into _build/html
#   make clean  -> remove build artefacts (keeps .venv); make distclean also removes .venv

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed
BIN    := $(VENV)/bin

# Every chapter reads HAMLIB_TINY; CI / local builds always use the tiny CPU settings.
export HAMLIB_TINY := 1
# Offline copies of the real data sets, where this machine has them (library code only reads HAMLIB_DATA).
ifneq ($(wildcard ../shared/data),)
export HAMLIB_DATA ?= $(abspath ../shared/data)
endif
# matplotlib's font cache lives in the venv: a shared ~/.cache/matplotlib written by another matplotlib (e.g. a
# distribution's, which ships no fonts of its own) makes this one miss its bundled STIX fonts and print
# "findfont: ... not found" into every chapter that draws a log axis.
export MPLCONFIGDIR := $(abspath $(VENV))/matplotlib

.PHONY: all venv book test clean distclean

all: test

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements.txt
	touch $@

book: $(STAMP)
	$(BIN)/jupyter-book build . --path-output . -W --keep-going

# --dist loadfile: the book-build gates (one file) share one build in one worker.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --timeout=3600 --durations=20

clean:
	rm -rf _build .pytest_cache .ipynb_checkpoints book/.ipynb_checkpoints *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
