import pytest
import torch

import cplxfast  # loads the ops

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


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
