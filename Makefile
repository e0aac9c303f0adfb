# make test  : set up .venv (pinned deps), build the extension in place, run the whole test suite
# make bench : same set-up, then run the benchmarks and print the table
# make build : (re)build the extension in place, incrementally (ninja)
PYTHON_BOOTSTRAP ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NPROC  := $(shell nproc 2>/dev/null || echo 2)
STAMP  := $(VENV)/.deps-installed

.PHONY: test bench bench-quick fuzz sanitize wheel wheel-test cpp-test gpu-dryrun build venv clean

test: build
	$(PY) -m pytest -q tests

# Many more random cases than the test suite's bounded run, new ones each time.
fuzz: build
	CPLXFAST_FUZZ_EXAMPLES=$${CPLXFAST_FUZZ_EXAMPLES:-2000} $(PY) -m pytest -q tests/test_fuzz.py

# A CPython-version-independent (abi3) wheel in dist/, built against the pinned torch (FORCE_CUDA=0
# for a CPU-only one); its version label and requirements name that torch.
wheel: $(STAMP)
	rm -rf dist
	MAX_JOBS=$${MAX_JOBS:-$(NPROC)} $(PY) -m pip wheel -q --no-build-isolation --no-deps -w dist .

# Install that wheel into a clean virtual environment with the same pinned dependencies and run the
# test suite against the installed package (from a copy of tests/, away from the source tree).
WHEEL_VENV := build/wheel-venv
wheel-test: wheel
	rm -rf $(WHEEL_VENV) build/wheel-tests
	$(PYTHON_BOOTSTRAP) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q -r requirements.txt
	$(WHEEL_VENV)/bin/python -m pip install -q --no-deps dist/cplxfast-*.whl
	cp -r tests build/wheel-tests
	cd build/wheel-tests && ../wheel-venv/bin/python -c 'import cplxfast, os; assert "site-packages" in cplxfast.__file__, cplxfast.__file__'
	cd build/wheel-tests && ../wheel-venv/bin/python -m pytest -q -p no:cacheprovider --ignore=test_bench_smoke.py .

# The op library for C++ (libtorch) users, built with CMake (CMakeLists.txt), and its test program.
cpp-test:
	PYTHON_BOOTSTRAP=$(PYTHON_BOOTSTRAP) bash tools/cpp_test.sh

# Rehearsal of bench/gpu_check.sh (the GPU machine's one run) on this machine: torch 2.11.0 (the
# GPU machine's CUDA 13.0 build, a ~5 GB venv in build/gpu-dryrun-venv), no cplxmodule, a copy
# of the working tree, the same build and test selection, then the whole suite. Not in CI.
gpu-dryrun:
	PYTHON_BOOTSTRAP=$(PYTHON_BOOTSTRAP) bash tools/gpu_dryrun.sh

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
	rm -rf build dist cplxfast/_C*.so cplxfast/_build_info.py
