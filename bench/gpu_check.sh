#!/usr/bin/env bash
# The ONE prepared GPU run: build cplxfast against the machine's torch with all cores, run the
# CUDA cases of the test suite (CI runs the CPU ones), run the CUDA benchmarks, run the kernels
# under compute-sanitizer, and write logs, JUnit XML and JSON into OUTDIR; the last lines are a
# one-screen verdict (bench/gpu_verdict.py). Runs from a fresh copy of the repo on a machine with
# torch, nvcc and ninja but no network and no cplxmodule. Everything, build included, ends inside
# BUDGET_S (default 540 s, the GPU machine's 10-minute command limit less start-up; the build's
# cap is BUILD_LIMIT_S, default 200 s on 16 cores): each step has
# its own cap, shortened to what is left of the budget, and a step that would get under 15 s is
# skipped and says so.
#
#   bash bench/gpu_check.sh [OUTDIR]
#
# `make gpu-dryrun` rehearses this script on a development machine (torch 2.11.0, no GPU): the
# build, the import and the test collection; the CUDA cases and benchmarks then skip for want of
# a device only.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/out/gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-540}"
export PYTHONUNBUFFERED=1
: > "$OUT/steps.tsv"

# step NAME CAP_S COMMAND...: runs COMMAND with a timeout of min(CAP_S, what is left), logs to
# OUT/NAME.log, records "NAME rc seconds" in OUT/steps.tsv. SIGINT first (pytest then still
# writes its JUnit XML), SIGKILL 10 s later.
step() {
  local name=$1 cap=$2; shift 2
  local left=$((BUDGET_S - SECONDS - 10))
  local limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 15 ]; then
    echo "=== $name: skipped, no time left (${SECONDS}s of ${BUDGET_S}s) ==="
    printf '%s\tskipped\t0\n' "$name" >> "$OUT/steps.tsv"
    return 0
  fi
  echo "=== $name (limit ${limit}s) ==="
  local t0=$SECONDS
  timeout -s INT -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$OUT/$name.log"
  echo "=== $name: rc=$rc in $((SECONDS - t0))s ==="
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$OUT/steps.tsv"
  return $rc
}

skip_step() {  # skip_step NAME WHY
  echo "=== $1: skipped, $2 ==="
  printf '%s\tskipped: %s\t0\n' "$1" "$2" >> "$OUT/steps.tsv"
}

{ date -u; git rev-parse --short HEAD 2>/dev/null || echo "(no git)"
  if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  else echo "(no nvidia-smi)"; fi
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())'
  nvcc --version 2>&1 | tail -n 2; } | tee "$OUT/machine.txt"
HAVE_GPU=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)

# Always rebuild here: this machine's torch differs from the development machines'.
rm -rf build cplxfast/_C*.so cplxfast/_build_info.py
if ! step build "${BUILD_LIMIT_S:-200}" env MAX_JOBS="$(nproc)" "$PY" setup.py build_ext --inplace; then
  "$PY" bench/gpu_verdict.py "$OUT"
  exit 1
fi
step import 30 "$PY" -c 'import cplxfast, torch; print(cplxfast.__file__, "against torch", torch.__version__)'

# The CUDA cases of every family (the marker `cuda`: device-parametrised cases and CUDA-only tests).
step tests 150 "$PY" -m pytest -q -m cuda -p no:cacheprovider --junitxml="$OUT/tests.xml" tests

if [ "$HAVE_GPU" = 1 ]; then
  step bench_linear 50 "$PY" bench/bench_linear.py --device cuda --autocast --out "$OUT"
  step bench_conv 45 "$PY" bench/bench_conv.py --device cuda --autocast --out "$OUT"
  step bench_modrelu 20 "$PY" bench/bench_modrelu.py --device cuda --out "$OUT"
  step bench_batchnorm 20 "$PY" bench/bench_batchnorm.py --device cuda --out "$OUT"
  step bench_e2e 40 "$PY" bench/bench_e2e.py --device cuda --out "$OUT"
  step bench_linear_crossover 25 "$PY" bench/bench_linear.py --device cuda --crossover --rounds 5 --out "$OUT"
  step bench_sparsification 25 "$PY" bench/bench_sparsification.py --device cuda --steps 2 10 2 --out "$OUT"
else
  for b in bench_linear bench_conv bench_modrelu bench_batchnorm bench_e2e bench_linear_crossover bench_sparsification; do
    skip_step "$b" "no CUDA device"
  done
fi

# CUDA kernels under compute-sanitizer, on the CUDA cases of the reference and gradcheck tests,
# for as long as each step's limit allows (-x: the first error stops it; a run cut by its limit is
# reported as partial): memcheck (out-of-bounds and misaligned accesses; without the caching
# allocator, so that an overrun inside a cached segment is caught too) and racecheck
# (shared-memory races in the reductions).
SAN_TESTS=(tests/test_modrelu.py tests/test_batchnorm.py tests/test_linear.py tests/test_conv.py tests/test_reparam.py
           -m cuda -k "forward_backward_match_reference or matches_reference or gradcheck")
if [ "$HAVE_GPU" != 1 ]; then
  skip_step sanitize_memcheck "no CUDA device"
  skip_step sanitize_racecheck "no CUDA device"
elif command -v compute-sanitizer > /dev/null; then
  step sanitize_memcheck 70 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck \
    --error-exitcode 1 "$PY" -m pytest -q -x -p no:cacheprovider "${SAN_TESTS[@]}"
  step sanitize_racecheck 50 compute-sanitizer --tool racecheck --error-exitcode 1 \
    "$PY" -m pytest -q -x -p no:cacheprovider "${SAN_TESTS[@]}"
else
  skip_step sanitize_memcheck "compute-sanitizer not found"
  skip_step sanitize_racecheck "compute-sanitizer not found"
fi

"$PY" bench/gpu_verdict.py "$OUT"
