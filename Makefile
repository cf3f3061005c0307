# The README's two commands: `make demo` (main job on embedded data) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where torch comes from: the default index gives the CUDA build on Linux (what a GPU wants);
# `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes the CPU-only wheel.
TORCH_INDEX ?=

.PHONY: demo test test-slow bench gpu-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[apps,test,triton]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wdist demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -x -q

bench: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[apps,test,bench]'
	$(BIN)/python benchmarks/core.py
	$(BIN)/python benchmarks/wmd.py
	$(BIN)/python benchmarks/wgan.py --device cpu
	$(BIN)/python benchmarks/wdgrl.py --device cpu
	$(BIN)/python benchmarks/qrdqn.py

# One command on a CUDA machine (7.5 minutes at most on one H200, install excluded): every table of
# benchmarks/gpu_check.py into results/gpu/.
# The long checks kept out of CI (full-length learning runs, big solves): `pytest -m slow`.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

gpu-check: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[apps,test,triton,bench]'
	$(BIN)/python benchmarks/gpu_check.py --device cuda

clean:
	rm -rf $(VENV) .pytest_cache
