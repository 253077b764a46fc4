# The two commands of the README. Each sets up .venv on a fresh machine first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint bench figures clean-venv screenshots

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/augstudio

test: $(STAMP_TEST)
	$(BIN)/ruff check augstudio tests benchmarks
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP_TEST)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/chain.py

# Every number in the README, measured again (about an hour on 2 cores; never part of `make test`):
# `make figures ONLY=localisation,tta_wafers` reruns some, `python -m benchmarks.figures --list` names them.
figures: $(STAMP_TEST)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.figures $(if $(ONLY),--only $(ONLY))

screenshots: $(STAMP_TEST)
	$(BIN)/python scripts/screenshots.py

clean-venv:
	rm -rf $(VENV)
