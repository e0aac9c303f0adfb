#!/usr/bin/env bash
# `make sanitize`: build the C++ kernels with AddressSanitizer and UndefinedBehaviorSanitizer (CPU
# only: the CUDA kernels get compute-sanitizer in bench/gpu_check.sh) in a copy of the tree under
# build/sanitize/, so the normal in-place build is untouched, and run the op tests against it with
# the sanitizer runtimes preloaded into Python. Any ASan report or UB finding fails the run.
#
#   bash tools/sanitize.sh [pytest args...]     (default: the op and fuzz tests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="${PYTHON:-$ROOT/.venv/bin/python}"
TREE=build/sanitize
mkdir -p "$TREE"
# -u: unchanged sources keep their times, so ninja rebuilds only what changed. The normal build's
# cplxfast/_C*.so is not copied.
mkdir -p "$TREE/cplxfast"
cp -a -u csrc tests setup.py pyproject.toml "$TREE/"
cp -a -u cplxfast/*.py cplxfast/nn "$TREE/cplxfast/"
cd "$TREE"
CPLXFAST_SANITIZE=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" setup.py -q build_ext --inplace
RUNTIMES="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
# detect_leaks=0: CPython and torch keep allocations alive until exit by design; leaks of
# cplxfast's own memory are covered by tests/test_reliability.py (resident memory over 1000 steps).
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export CPLXFAST_FUZZ_EXAMPLES="${CPLXFAST_FUZZ_EXAMPLES:-100}"
if [ $# -eq 0 ]; then
  # The leak test measures resident memory, which ASan's quarantine of freed blocks grows by design.
  set -- -q -x -p no:cacheprovider tests/test_linear.py tests/test_conv.py tests/test_modrelu.py \
    tests/test_batchnorm.py tests/test_bad_input.py tests/test_fuzz.py tests/test_reliability.py \
    --deselect tests/test_reliability.py::test_training_steps_leak_neither_python_nor_native_memory
fi
LD_PRELOAD="$RUNTIMES" "$PY" -m pytest "$@"
echo "sanitize: clean (AddressSanitizer + UndefinedBehaviorSanitizer, $(git -C "$ROOT" rev-parse --short HEAD))"
