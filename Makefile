# Two commands do everything on a fresh machine: `make app` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
PORT ?= 8866
export WORKBENCH_DATA_DIR ?= $(abspath ../shared/data)
export GLIBC_TUNABLES ?= glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736:glibc.malloc.arena_max=1

.PHONY: app test lint install browser bench clean tour

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test]" $(TORCH)
	touch $(STAMP)

install: $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

app: install
	$(BIN)/workbench app --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: install browser
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# the README's tour (docs/images/tour_*.png) from a reproducible run of the app (a few minutes)
tour: install browser
	$(BIN)/python docs/make_tour.py

bench: install
	for s in benchmarks/bench_*.py; do $(BIN)/python $$s || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
