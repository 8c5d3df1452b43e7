# Thin wrappers. Every target creates (or reuses) the virtual environment in .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kdnb-installed
PROFILE ?= auto  # each results page from the most faithful committed store that holds it (subset60, else mini);
#                  smoke trains its tiny grid first
export KDNB_DATA ?= $(abspath ../shared/data)

.PHONY: install test test-fast book book-smoke bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch torchvision
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[book,dev,slurm]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not notebook and not browser"

book: $(STAMP)
	$(BIN)/kdnb book --profile $(PROFILE) $(if $(filter smoke,$(PROFILE)),,--no-train)

book-smoke: $(STAMP)
	$(BIN)/kdnb book --profile smoke

bench: $(STAMP)
	$(BIN)/kdnb bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf _build build
