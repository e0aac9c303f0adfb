import importlib.util
import os
import subprocess
import sys

import pytest
import torch

import cplxfast  # loads the ops

# Tests that compare against an optional library (cplxmodule, torchcvnn, complextorch, scipy) carry its
# marker (@pytest.mark.cplxmodule, ...) and skip one by one where it is not installed (the GPU
# machine has none of them): every other test, CUDA cases included, still runs.
OPTIONAL_LIBRARIES = ("cplxmodule", "torchcvnn", "complextorch", "scipy")
INSTALLED = {name: importlib.util.find_spec(name) is not None for name in OPTIONAL_LIBRARIES}


def pytest_configure(config):
    for name in OPTIONAL_LIBRARIES:
        config.addinivalue_line("markers", f"{name}: compares against {name} (skipped when it is not installed)")
    config.addinivalue_line("markers", "cuda: a CUDA case (skipped without a CUDA device)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in OPTIONAL_LIBRARIES:
            if not INSTALLED[name] and item.get_closest_marker(name) is not None:
                item.add_marker(pytest.mark.skip(reason=f"{name} not installed"))

# CUDA cases carry the `cuda` marker (bench/gpu_check.sh runs `pytest -m cuda` on the GPU machine,
# CI runs everything on the CPU) and skip without a device.
_NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def requires_cuda(test):
    """A test that only makes sense on a GPU."""
    return pytest.mark.cuda(_NO_CUDA(test))


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, _NO_CUDA])]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def crandn(*shape, dtype=torch.complex128, device="cpu", generator=None):
    """Random complex normal tensor (never zeros)."""
    return torch.randn(*shape, dtype=dtype, device=device, generator=generator)


def rel_err(actual, expected):
    """Normwise relative error ||a - e|| / ||e|| in float64."""
    a, e = actual.detach().to(torch.complex128).cpu(), expected.detach().to(torch.complex128).cpu()
    return ((a - e).norm() / e.norm().clamp_min(1e-300)).item()


TOL = {torch.complex64: 2e-5, torch.complex128: 1e-12}


def linear_real_parts(x, w, b=None, algorithm=None):
    """cplxfast.ops.linear, the real-parts op variant the layers use, fed .real/.imag views of complex
    w and b (functional.linear runs the complex-weight variant): gradients flow back to w and b."""
    return cplxfast.ops.linear(x, w.real, w.imag, None if b is None else b.real, None if b is None else b.imag, algorithm)


@pytest.fixture(autouse=True)
def exact_fp32():
    """Every test compares complex64 against float64 with fp32 tolerances, so TF32 (cuDNN's default
    for float32 convolutions on Ampere and later, and cuBLAS's when allowed) is off unless a test
    turns it on itself (test_linear/test_conv: test_tf32_*). The flags are torch's own: cplxfast's
    GEMMs and convolutions run through ATen and follow them as torch's layers do."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def environment_with_vector_bytes(value):
    """This process's environment with CPLXFAST_VECTOR_BYTES set (cpu/vectorize.h) and this
    process's cplxfast first on the path."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(cplxfast.__file__)))
    path = os.pathsep.join(p for p in [package_root, os.environ.get("PYTHONPATH")] if p)
    return dict(os.environ, CPLXFAST_VECTOR_BYTES=value, PYTHONPATH=path)


def run_again_with_32_byte_vectors(test_file):
    """On a CPU with AVX-512 the modReLU and batch norm CPU kernels run in 64-byte vectors, and the
    tests see only those; CPLXFAST_VECTOR_BYTES=32 picks the 32-byte kernels that AVX2 CPUs run.
    Runs test_file's tests in a process with that setting (on a CPU without AVX-512: the same
    kernels a second time); skips in that process itself."""
    if os.environ.get("CPLXFAST_VECTOR_BYTES") == "32":
        pytest.skip("this is the 32-byte run")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.abspath(test_file)],
        env=environment_with_vector_bytes("32"), capture_output=True, text=True,
        cwd=os.path.dirname(os.path.abspath(test_file)))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
