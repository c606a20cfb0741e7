# index-tts-lora: `make demo` runs the whole pipeline on an embedded example; `make test` runs the tests.
# Both create .venv on first use. torch is installed first, on its own, so an existing suitable
# build is kept; override the spec with e.g. `make test TORCH="torch==2.13.0"`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python tools/run_demo.py --workdir demo_out

clean-demo:
	rm -rf demo_out
