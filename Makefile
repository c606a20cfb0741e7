# index-tts-lora: `make demo` runs the whole pipeline on an embedded example; `make test` runs the tests.
# Both create .venv on first use. torch is installed first, on its own step, and only when .venv
# has none, so a suitable build put there beforehand is kept. TORCH is the requirement and
# TORCH_INDEX_URL an optional package index, e.g. for a CPU-only build on a machine without a GPU:
#   make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX_URL ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-readme test-under-load test-floor demo clean-demo device-wheels

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps "resemblyzer>=0.1.4"  # see the [eval] extra in pyproject.toml
	touch $(STAMP)

# The cp3xx wheels tests/test_device_command.py installs offline as the GPU machine does (fetched once).
DEVICE_WHEELS = .cache/device-wheels-py$(shell $(BIN)/python -c 'import sys; print("%d%d" % sys.version_info[:2])' 2>/dev/null)

test: $(STAMP) device-wheels
	$(BIN)/python -m pytest

# Every README command line, as printed, in a fresh venv (tests/test_readme_commands.py; not part of `make test`).
test-readme: $(STAMP)
	$(BIN)/python -m pytest -m readme tests/test_readme_commands.py

# `make test` beside LOAD_PROCESSES (default 2) CPU-bound busy loops, stopped whatever happens.
test-under-load:
	bash tools/test_under_load.sh $(MAKE) test

device-wheels: $(STAMP)
	@test -f $(DEVICE_WHEELS)/.ready || { bash benchmarks/prepare_device_wheels.sh --no-conformance \
		--python-version $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') $(DEVICE_WHEELS) \
		&& touch $(DEVICE_WHEELS)/.ready; }

# The declared dependency floors (.ci/floor-constraints.txt) with the tests that exercise them.
FLOOR_VENV ?= .venv-floor
FLOOR_TESTS := tests/test_gpt.py tests/test_generation.py tests/test_conformance.py tests/test_lora.py \
	tests/test_voices.py tests/test_train.py tests/test_infer.py tests/test_decode_step.py tests/test_quantize.py \
	tests/test_v2_gpt.py tests/test_v2_semantic.py tests/test_v2_tiny.py
test-floor:
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -c "import torch" 2>/dev/null || $(FLOOR_VENV)/bin/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(FLOOR_VENV)/bin/python -m pip install -q -c .ci/floor-constraints.txt -e . "pytest>=8" "espeakng-loader>=0.2"
	$(FLOOR_VENV)/bin/python -m pytest -m "not slow" $(FLOOR_TESTS)

# FAMILY: the model family of the demo's tiny checkpoint, 1.5 (default), 2 (IndexTTS-2) or 2.5.
FAMILY ?= 1.5

demo: $(STAMP)
	$(BIN)/python tools/run_demo.py --family $(FAMILY) --workdir demo_out

clean-demo:
	rm -rf demo_out
