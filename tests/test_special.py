"""cplxfast.special: Ei on the device and the complex variational-dropout KL divergence, against
scipy (marked; skipped without it), against known values, gradcheck."""
import math

import numpy as np
import pytest
import torch

from cplxfast.special import EULER_GAMMA, cplx_vd_penalty, expi

# Ei at a few points (scipy.special.expi, float64), for the checks that need no scipy.
KNOWN = {-1e-9: -20.146050173044877, -1.0: -0.2193839343955205, -10.0: -4.156968929685325e-06,
         -100.0: -3.683597761682032e-46, 1.0: 1.895117816355937, 10.0: 2492.2289762418773,
         50.0: 1.058563689713169e+20, 100.0: 2.71555274485388e+41}


def test_known_values(device):
    x = torch.tensor(list(KNOWN), dtype=torch.float64, device=device)
    want = torch.tensor(list(KNOWN.values()), dtype=torch.float64, device=device)
    torch.testing.assert_close(expi(x), want, rtol=1e-7, atol=0)
    edge = expi(torch.tensor([0.0, float("nan"), -1000.0], dtype=torch.float64, device=device))
    assert edge[0] == -math.inf and torch.isnan(edge[1]) and edge[2] == 0


def _penalty_arguments():
    """x = -exp(-log_alpha) over log_alpha in [-25, 25] (and beyond what practice sees)."""
    log_alpha = torch.linspace(-25, 25, 2001, dtype=torch.float64)
    return log_alpha, -torch.exp(-log_alpha)


@pytest.mark.scipy
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-7), (torch.float32, 1e-6)])
def test_expi_matches_scipy(device, dtype, rtol):
    import scipy.special
    _, negative = _penalty_arguments()
    positive = torch.logspace(-8, math.log10(700), 500, dtype=torch.float64)
    x = torch.cat([negative[negative > -700], positive])  # float64 Ei underflows/overflows beyond
    if dtype == torch.float32:
        x = x[(x > -80) & (x < 80)]  # float32 underflow / overflow of Ei
    want = torch.from_numpy(scipy.special.expi(x.numpy()))
    got = expi(x.to(dtype).to(device)).cpu().double()
    # The argument is rounded to dtype (and Ei's own series cancels near its root x = 0.3725):
    # Ei's condition number |x Ei'(x) / Ei(x)| = |e^x / Ei(x)| times dtype's epsilon is allowed on top.
    cond = (torch.exp(x) / want).abs()
    err = (got - want).abs() / want.abs()
    assert (err <= rtol + 4 * cond * torch.finfo(dtype).eps).all(), f"max relative error {err.max().item():.2e}"


@pytest.mark.scipy
@pytest.mark.cplxmodule
def test_penalty_matches_cplxmodule():
    """cplxmodule's CplxVDMixin.penalty formula with scipy's Ei, float64: equal to 1e-7 relative
    where it is not itself cancelling (its own form loses digits for large log_alpha, where this
    one's series stays exact), and 1e-12 absolute everywhere."""
    from cplxmodule.nn.relevance.complex import torch_expi
    log_alpha, _ = _penalty_arguments()
    theirs = EULER_GAMMA - log_alpha - torch_expi(-torch.exp(-log_alpha))
    ours = cplx_vd_penalty(log_alpha)
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-12)
    la = log_alpha.clone().requires_grad_()
    cplx_vd_penalty(la).sum().backward()
    lb = log_alpha.clone().requires_grad_()
    (EULER_GAMMA - lb - torch_expi(-torch.exp(-lb))).sum().backward()
    torch.testing.assert_close(la.grad, lb.grad, rtol=1e-7, atol=1e-12)


def test_penalty_closed_forms(device):
    """Large log_alpha: penalty ~ u - u^2/4 (u = e^-log_alpha), computed without cancellation;
    very negative log_alpha: ~ gamma - log_alpha; positive everywhere, float32 too."""
    la = torch.tensor([30.0, 60.0, -30.0], dtype=torch.float64, device=device)
    u = torch.exp(-la[:2])
    got = cplx_vd_penalty(la)
    torch.testing.assert_close(got[:2], u - u * u / 4, rtol=1e-12, atol=0)
    torch.testing.assert_close(got[2], torch.tensor(EULER_GAMMA + 30.0, dtype=torch.float64, device=device))
    f32 = cplx_vd_penalty(torch.linspace(-20, 20, 401, device=device))
    assert f32.dtype == torch.float32 and (f32 > 0).all()


def test_gradcheck(device):
    x = torch.tensor([-30.0, -3.0, -0.5, -1e-3, 0.7, 5.0, 45.0], dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(expi, (x,))
    la = torch.linspace(-12, 12, 25, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(cplx_vd_penalty, (la,))


def test_bad_input():
    for fn in (expi, cplx_vd_penalty):
        with pytest.raises(TypeError, match="floating-point"):
            fn(torch.ones(3, dtype=torch.int64))
        with pytest.raises(TypeError, match="floating-point"):
            fn(np.ones(3))
