# Every target creates .venv when missing and installs only what changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench soak lint install clean models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pdm-gateway demo

test: $(STAMP)
	bash tests/setup-system-deps.sh
	$(BIN)/python -m pytest tests --ignore=tests/benchmarks

bench: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks -q -s

soak: $(STAMP)
	$(BIN)/python -m tests.soak.soak --minutes 30
# the shipped anomaly models and their evaluation report (numpy fit, LiteRT flatbuffer export)
models: $(STAMP)
	$(BIN)/python models/train.py --out models

lint: $(STAMP)
	$(BIN)/ruff check gateway simulators tests
	$(BIN)/mypy gateway simulators

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
