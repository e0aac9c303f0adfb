#!/usr/bin/env bash
# `make cpp-test`: build the op library and its C++ test program with CMake against libtorch
# (the CPU torch wheel's CMake config, in its own virtual environment build/cpp-venv), and run it.
#
#   bash tools/cpp_test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BOOT="${PYTHON_BOOTSTRAP:-python3}"
TORCH_CPU="${CPLXFAST_CPP_TORCH:-torch==2.13.0}"  # the CPU build: its CMake config needs no CUDA toolkit
VENV=build/cpp-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  "$BOOT" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "$TORCH_CPU" numpy
fi
PREFIX="$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
cmake -S . -B build/cpp -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release > build/cpp-configure.log
cmake --build build/cpp -j "${MAX_JOBS:-$(nproc)}"
./build/cpp/cplxfast_cpp_test
