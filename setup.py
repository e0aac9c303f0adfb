"""Build cplxfast's compiled op library against the installed torch.

Build with ``pip install --no-build-isolation -e .`` (``make build`` does this). CUDA sources
are compiled when torch is a CUDA build and nvcc is found (or FORCE_CUDA=1); FORCE_CUDA=0
forces a CPU-only build. The configuration is printed and recorded in
cplxfast/_build_info.py, which cplxfast checks at import time.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _is_cuda_root(path):
    nvcc = os.path.join(path, "bin", "nvcc")
    # A real toolkit root has include/cuda_runtime.h beside bin/nvcc; a wrapper script in
    # /usr/local/bin does not, so torch's own guess (dirname of `which nvcc`) can be wrong.
    return os.path.isfile(nvcc) and os.path.isfile(os.path.join(path, "include", "cuda_runtime.h"))


def find_cuda_home():
    """CUDA_HOME if set, else the toolkit behind the `nvcc` on PATH (following wrapper scripts)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    candidates = []
    if nvcc:
        real = os.path.realpath(nvcc)
        candidates.append(os.path.dirname(os.path.dirname(real)))
        try:  # a wrapper script: `exec /path/to/cuda/bin/nvcc "$@"`
            with open(real, "rb") as f:
                head = f.read(4096)
            if head.startswith(b"#!"):
                for m in re.finditer(rb"(/\S+)/bin/nvcc", head):
                    candidates.append(m.group(1).decode())
        except OSError:
            pass
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for c in candidates:
        if _is_cuda_root(c):
            return c
    return None


def find_nvidia_pip_includes(cuda_home):
    """Include folders of the pip `nvidia` packages for headers the toolkit lacks (cuBLAS...)."""
    if cuda_home and os.path.isfile(os.path.join(cuda_home, "include", "cublas_v2.h")):
        return []
    try:
        import nvidia  # namespace package installed with the CUDA build of torch
    except ImportError:
        return []
    found = []
    for base in nvidia.__path__:
        for inc in sorted(glob.glob(os.path.join(base, "*", "include"))):
            if glob.glob(os.path.join(inc, "cublas*.h")) or glob.glob(os.path.join(inc, "cusparse*.h")):
                found.append(inc)
    return found


CUDA_HOME = find_cuda_home()
if CUDA_HOME:
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
    os.environ["CUDA_HOME"] = CUDA_HOME

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

force = os.environ.get("FORCE_CUDA")
if force is not None and force not in ("0", "1"):
    sys.exit("FORCE_CUDA must be 0 or 1")
WITH_CUDA = (force == "1") or (force is None and torch.version.cuda is not None and CUDA_HOME is not None)
if WITH_CUDA and torch.version.cuda is None:
    sys.exit("FORCE_CUDA=1 but the installed torch is a CPU-only build")
if WITH_CUDA and CUDA_HOME is None:
    sys.exit("FORCE_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME")
if WITH_CUDA and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
    # No GPU to ask: build for Hopper (the project's GPU test cards). CUDA 13 needs >= 7.5.
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"

DEBUG = os.environ.get("CPLXFAST_DEBUG", "0") == "1"
opt = ["-O0", "-g"] if DEBUG else ["-O3"]
# Elementwise kernels vectorise only if sqrt need not set errno and floating-point ops may be
# treated as non-trapping (if-conversion of selects); cplxfast reads neither errno nor FP traps.
cxx_flags = opt + ["-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
nvcc_flags = opt + ["--expt-relaxed-constexpr", "-lineinfo"]
for inc in find_nvidia_pip_includes(CUDA_HOME) if WITH_CUDA else []:
    # -idirafter: only headers missing from the toolkit (cuBLAS/cuSPARSE) come from here.
    cxx_flags += ["-idirafter", inc]
    nvcc_flags += ["-Xcompiler", "-idirafter," + inc]
extra_link = ["-fopenmp"]
# CPLXFAST_SANITIZE=1 (make sanitize): AddressSanitizer + UndefinedBehaviorSanitizer on the C++
# kernels; run the tests with the sanitizer runtimes preloaded (tools/sanitize.sh does).
if os.environ.get("CPLXFAST_SANITIZE", "0") == "1":
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    cxx_flags = ["-O1", "-g"] + [f for f in cxx_flags if not f.startswith("-O")] + sanitize
    extra_link += sanitize

sources = (
    ["csrc/ops.cpp"] + sorted(glob.glob("csrc/common/*.cpp"))
    + sorted(glob.glob("csrc/autograd/*.cpp")) + sorted(glob.glob("csrc/autocast/*.cpp"))
    + sorted(glob.glob("csrc/cpu/*.cpp"))
)
if WITH_CUDA:
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    ext = CUDAExtension(
        "cplxfast._C", sources, py_limited_api=True, include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags}, extra_link_args=extra_link,
    )
else:
    ext = CppExtension(
        "cplxfast._C", sources, py_limited_api=True, include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": cxx_flags}, extra_link_args=extra_link,
    )

BUILD_INFO = {
    "torch_version": torch.__version__,
    "torch_cuda": torch.version.cuda,
    "with_cuda": WITH_CUDA,
    "cuda_home": CUDA_HOME if WITH_CUDA else None,
    "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST", "(detected from the visible GPU)") if WITH_CUDA else None,
    "sanitize": os.environ.get("CPLXFAST_SANITIZE", "0") == "1",
}
print("cplxfast build configuration:", file=sys.stderr)
for k, v in BUILD_INFO.items():
    print(f"  {k:15s} {v}", file=sys.stderr)
with open(os.path.join(ROOT, "cplxfast", "_build_info.py"), "w") as f:
    f.write("# Written by setup.py: what this build of cplxfast was compiled against.\n")
    for k, v in BUILD_INFO.items():
        f.write(f"{k} = {v!r}\n")

# The wheel says what it was built for: a local version label (0.1.0+torch2.14.1.cu130 or
# ...cpu) and a requirement on that torch release; _build_info.py inside it records the rest.
TORCH_RELEASE = torch.__version__.split("+")[0]
VARIANT = f"cu{torch.version.cuda.replace('.', '')}" if WITH_CUDA else "cpu"

setup(
    name="cplxfast",
    version=f"0.1.0+torch{TORCH_RELEASE}.{VARIANT}",
    install_requires=[f"torch=={TORCH_RELEASE}"],
    description="Fused complex-valued neural-network layers for PyTorch (CPU and CUDA)",
    packages=find_packages(include=["cplxfast", "cplxfast.*"]),
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
    python_requires=">=3.9",
)
