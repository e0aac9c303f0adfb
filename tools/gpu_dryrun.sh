#!/usr/bin/env bash
# make gpu-dryrun: rehearse bench/gpu_check.sh here, without a GPU, against what the GPU machine
# has: torch 2.11.0 (the CUDA 13.0 build, from the registry: a ~5 GB venv, made once in
# build/gpu-dryrun-venv), pytest, hypothesis, numpy, matplotlib, ninja, and no cplxmodule. The
# script runs on a copy of the working tree (tracked and untracked-but-not-ignored files, as the
# device tool sends it), builds the CUDA sources, imports, and runs the same test selection; CUDA
# cases then skip for want of a device only, and the GPU benchmarks report "no CUDA device".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=build/gpu-dryrun-venv
PYTHON_BOOTSTRAP=${PYTHON_BOOTSTRAP:-python3}
if [ ! -f "$VENV/.deps-installed" ]; then
  rm -rf "$VENV"
  "$PYTHON_BOOTSTRAP" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q torch==2.11.0 numpy pytest hypothesis matplotlib ninja "setuptools>=64" wheel
  touch "$VENV/.deps-installed"
fi
"$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("cplxmodule") is not None)' \
  || { echo "gpu-dryrun: cplxmodule is installed in $VENV; the GPU machine has none"; exit 1; }
SRC=build/gpu-dryrun-src
rm -rf "$SRC"
mkdir -p "$SRC"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$SRC" 2>/dev/null || true
OUT=${1:-$ROOT/build/gpu-dryrun-out}
rm -rf "$OUT"
cd "$SRC"
# The GPU machine's torch finds its nvcc; here the wrapper on PATH is followed by setup.py, and
# with no GPU visible it compiles for sm_90 (the H200).
status=0
# Two cores here against sixteen there: the build gets 20 minutes, the budget an hour.
PYTHON="$ROOT/$VENV/bin/python" FORCE_CUDA=1 BUILD_LIMIT_S=1200 BUDGET_S=3600 bash bench/gpu_check.sh "$OUT" || status=1
# Then the whole suite against that build (CPU cases run, CUDA cases skip for want of a device,
# cplxmodule's for want of cplxmodule): the project passes on torch 2.11 without cplxmodule.
echo "=== whole test suite, torch 2.11.0, no cplxmodule ==="
"$ROOT/$VENV/bin/python" -m pytest -q -p no:cacheprovider tests > "$OUT/all_tests.log" 2>&1 || status=1
tail -n 15 "$OUT/all_tests.log"
exit $status
