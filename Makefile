# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv and install ctxbin (which builds the C core) with what it needs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-out
PYTEST_ARGS ?=

.PHONY: demo test test-fast bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard native/*.c native/*.h native/*.py)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,htp,bench]'
	$(BIN)/python -c "import ctxbin; print('ctxbin', ctxbin.__version__, '| native core:', ctxbin.native_available())"
	touch $(STAMP)

# The main job end to end on the built-in example models: build two FCN
# variants (same weights, two input shapes), link them into one .ctxbin that
# stores the weights once, inspect and check it, run a graph by name on the
# emulator against onnxruntime; link an LLM-style prompt/token pair; convert a
# model to a QNN DLC; and, where the QNN libraries are installed, compile the
# two FCN graphs into one real weight-shared HTP context binary.
demo: $(STAMP)
	$(BIN)/python -m tests.models --out $(DEMO)
	$(BIN)/ctxbin link $(DEMO)/fcn_landscape.onnx $(DEMO)/fcn_portrait.onnx --names landscape,portrait -o $(DEMO)/fcn.ctxbin
	$(BIN)/ctxbin inspect $(DEMO)/fcn.ctxbin
	$(BIN)/ctxbin check $(DEMO)/fcn.ctxbin
	$(BIN)/python -m tests.demo_inputs $(DEMO)
	$(BIN)/ctxbin run $(DEMO)/fcn.ctxbin --graph portrait --input-list $(DEMO)/inputs.txt --output-dir $(DEMO)/out --backend emulator
	$(BIN)/python -m tests.demo_inputs $(DEMO) --compare $(DEMO)/out/Result_0
	$(BIN)/ctxbin link $(DEMO)/transformer_ar128.onnx $(DEMO)/transformer_ar1.onnx --names prompt_ar128,token_ar1 -o $(DEMO)/llm.ctxbin
	$(BIN)/ctxbin convert $(DEMO)/transformer_ar1.onnx -o $(DEMO)/token_ar1.dlc --name token_ar1
	$(BIN)/ctxbin inspect $(DEMO)/token_ar1.dlc
	@if $(BIN)/python -c "import onnxruntime_qnn" 2>/dev/null; then \
	  echo "$(BIN)/ctxbin link ... --soc-model 60 --htp-arch 75 -o $(DEMO)/fcn.bin"; \
	  $(BIN)/ctxbin link $(DEMO)/fcn_landscape.onnx $(DEMO)/fcn_portrait.onnx --names landscape,portrait \
	    --soc-model 60 --htp-arch 75 -o $(DEMO)/fcn.bin && $(BIN)/ctxbin inspect $(DEMO)/fcn.bin; \
	else echo "skipping the HTP compile: onnxruntime-qnn (the QNN libraries) is not installed here"; fi

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info ctxbin/_native_core*.so ctxbin/_native_core.c
