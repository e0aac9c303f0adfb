# make test  : set up .venv (pinned deps), build the extension in place, run the whole test suite
# make bench : same set-up, then run the benchmarks and print the table
# make build : (re)build the extension in place, incrementally (ninja)
PYTHON_BOOTSTRAP ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NPROC  := $(shell nproc 2>/dev/null || echo 2)
STAMP  := $(VENV)/.deps-installed

.PHONY: test bench bench-quick fuzz sanitize build venv clean

test: build
	$(PY) -m pytest -q tests

# Many more random cases than the test suite's bounded run, new ones each time.
fuzz: build
	CPLXFAST_FUZZ_EXAMPLES=$${CPLXFAST_FUZZ_EXAMPLES:-2000} $(PY) -m pytest -q tests/test_fuzz.py

# AddressSanitizer + UBSan build of the C++ kernels (in build/sanitize/), op tests against it.
sanitize: $(STAMP)
	PYTHON=$(abspath $(PY)) bash tools/sanitize.sh

bench: build
	$(PY) bench/run_all.py $(BENCH_ARGS)

bench-quick: build
	$(PY) bench/run_all.py --quick

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

# setup.py finds CUDA_HOME, the arch list and the nvidia header folder itself; ninja rebuilds
# only what changed.
build: $(STAMP)
	MAX_JOBS=$${MAX_JOBS:-$(NPROC)} $(PY) setup.py -q build_ext --inplace

clean:
	rm -rf build cplxfast/_C*.so cplxfast/_build_info.py
