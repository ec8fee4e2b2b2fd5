# Quick start: `make demo` then `make test`. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml requirements/torch.txt serving/requirements.txt
	$(BIN)/pip install -q -r requirements/torch.txt
	# editable: pyproject's package-dir makes this a plain .pth path entry (no import-hook finder)
	$(BIN)/pip install -q -e '.[ml,serve,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[ml,serve,dev,bench]'  # kserve: serve_load.py's second baseline
	PATH=$(abspath $(BIN)):$$PATH bash scripts/bench.sh

clean:
	rm -rf $(VENV) .demo .pytest_cache .hypothesis build *.egg-info
