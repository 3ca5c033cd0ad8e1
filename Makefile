# extgate — every target sets itself up: a fresh clone needs only python3 (3.11+).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: run test lint policy-check examples fuzz bench clean help install browser

help:
	@echo "make run    - set up and serve the gateway on 127.0.0.1:8000 (embedded defaults, demo data)"
	@echo "make test   - set up and run the whole suite (what CI runs)"
	@echo "make lint   - ruff and mypy"
	@echo "make fuzz   - deeper schemathesis run"
	@echo "make bench  - benchmarks (ratios against in-run baselines)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

# The console's browser tests drive Debian's chromium (Playwright cannot download browsers here).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

run: $(STAMP)
	$(BIN)/extgate demo serve

lint: $(STAMP)
	$(BIN)/ruff check service runner audit tests bench examples sdk
	$(BIN)/mypy service runner audit

test: $(STAMP) policy-check lint browser
	$(BIN)/extgate openapi export --check
	$(BIN)/pytest -q

# The compliance gate: policies parse, are formatted, and every policy decides some test.
policy-check: $(STAMP)
	$(BIN)/extgate policy validate
	$(BIN)/extgate policy fmt --check
	$(BIN)/extgate policy test --min-coverage 1.0

examples: $(STAMP)
	$(MAKE) -C examples demo

fuzz: $(STAMP)
	EXTGATE_FUZZ_EXAMPLES=500 $(BIN)/pytest -q tests/api -m fuzz

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .extgate .pytest_cache .ruff_cache
