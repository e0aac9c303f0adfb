"""Special functions on the tensor's own device (no host round trip): the exponential integral Ei
and the KL divergence of complex variational dropout built on it (issue 14's foundation).

cplxmodule computes Ei with scipy on the CPU (``cplxmodule.nn.relevance.complex.torch_expi``): a
device-to-host copy and a sync on every training step of a GPU model. Here Ei is evaluated with
torch ops in float64 and returned in the input's dtype:

- x < 0, Ei(x) = -E1(u), u = -x: for u <= 1 the power series
  E1(u) = -gamma - ln u - sum_{k>=1} (-u)^k / (k k!) (20 terms: the remainder is below 1e-21), for
  u > 1 the rational form of Abramowitz & Stegun 5.1.56, u e^u E1(u) = P(u)/Q(u) with absolute
  error below 2e-8 on a value in [0.596, 1), i.e. relative error below 4e-8;
- 0 < x <= 40, the power series Ei(x) = gamma + ln x + sum x^k / (k k!) (positive terms, summed
  until they fall below 1e-17 of the sum: at most 150);
- x > 40, the asymptotic series e^x / x sum k! / x^k, stopped at its smallest term (< 1e-16);
- Ei(0) = -inf, Ei(nan) = nan. Ei(x) underflows to 0 in float32 below x = -87 and in float64
  below x = -708 (as scipy's does); it overflows to inf above x = 88 (float32) and 709 (float64).

The derivative is e^x / x, computed on the device as well. For x < 0 (the only branch the VD
penalty uses) nothing leaves the device; when positive arguments occur, one host check of the
tensor decides whether the positive branches run (and the series stops on a host check).
"""
import math

import torch

EULER_GAMMA = 0.57721566490153286061

# Abramowitz & Stegun 5.1.56: u e^u E1(u) = P(u) / Q(u) for u >= 1, |error| < 2e-8.
_AS_P = (1.0, 8.5733287401, 18.0590169730, 8.6347608925, 0.2677737343)
_AS_Q = (1.0, 9.5733223454, 25.6329561486, 21.0996530827, 3.9584969228)


def _horner(u, coefficients):
    out = torch.full_like(u, coefficients[0])
    for c in coefficients[1:]:
        out = out * u + c
    return out


def _alternating_series(u):
    """sum_{k=1}^{20} (-u)^k / (k k!) for 0 <= u <= 1 (the remainder is below 1e-21)."""
    total, term = torch.zeros_like(u), torch.ones_like(u)
    for k in range(1, 21):
        term = term * (-u) / k  # (-u)^k / k!
        total = total + term / k
    return total


def _e1_series(u):
    """E1(u) = -gamma - ln u - sum_{k>=1} (-u)^k / (k k!) for 0 < u <= 1."""
    return -EULER_GAMMA - torch.log(u) - _alternating_series(u)


def _e1_rational(u):
    """E1(u) for u > 1 from A&S 5.1.56."""
    return torch.exp(-u) / u * (_horner(u, _AS_P) / _horner(u, _AS_Q))


def _ei_positive_series(x):
    """gamma + ln x + sum x^k / (k k!) for 0 < x <= 40."""
    total, term = torch.zeros_like(x), torch.ones_like(x)
    for k in range(1, 151):
        term = term * x / k
        total = total + term / k
        if bool((term / k <= 1e-17 * total).all()):
            break
    return EULER_GAMMA + torch.log(x) + total


def _ei_asymptotic(x):
    """e^x / x sum_k k! / x^k for x > 40, to the smallest term."""
    total, term = torch.ones_like(x), torch.ones_like(x)
    for k in range(1, 41):
        term = term * k / x
        total = total + term
    return torch.exp(x) / x * total


class _Expi(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _expi_values(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x) / x


def _expi_values(x):
    x64 = x.double()
    out = torch.full_like(x64, float("nan"))
    u = -x64
    small = (u > 0) & (u <= 1)
    large = u > 1
    out = torch.where(small, -_e1_series(torch.where(small, u, 1.0)), out)
    out = torch.where(large, -_e1_rational(torch.where(large, u, 2.0)), out)
    out = torch.where(x64 == 0, -math.inf, out)
    positive = x64 > 0
    if bool(positive.any()):  # not on the VD penalty's path (x = -exp(-log_alpha) < 0)
        near = positive & (x64 <= 40)
        far = x64 > 40
        out = torch.where(near, _ei_positive_series(torch.where(near, x64, 1.0)), out)
        out = torch.where(far, _ei_asymptotic(torch.where(far, x64, 41.0)), out)
    return out.to(x.dtype)


def expi(x):
    """The exponential integral Ei(x) = integral_{-inf}^x e^t / t dt of a real tensor, elementwise,
    on its device, differentiable (d/dx Ei = e^x / x); scipy.special.expi's values (module docstring
    for the method and its accuracy: relative error below 1e-7)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"expi: expected a real floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    return _Expi.apply(x)


class _CplxVDPenalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, log_alpha):
        ctx.save_for_backward(log_alpha)
        la = log_alpha.double()
        u = torch.exp(-la)
        # u <= 1: gamma - la - Ei(-u) = -sum_{k>=1} (-u)^k / (k k!) exactly (the gamma and ln u of
        # Ei's series cancel against gamma - la): no cancellation for large log_alpha.
        small = -_alternating_series(torch.where(u <= 1, u, 0.0))
        large = EULER_GAMMA - la + _e1_rational(torch.where(u > 1, u, 2.0))
        return torch.where(u <= 1, small, large).to(log_alpha.dtype)

    @staticmethod
    def backward(ctx, grad):
        (log_alpha,) = ctx.saved_tensors
        # d/d la [gamma - la - Ei(-e^{-la})] = -1 + exp(-e^{-la}) = -(1 - exp(-u))
        return grad * -(-torch.expm1(-torch.exp(-log_alpha)))


def cplx_vd_penalty(log_alpha):
    """KL divergence of complex variational dropout (Nazarov & Burnaev 2020, as cplxmodule's
    CplxVDMixin.penalty): gamma - log_alpha - Ei(-exp(-log_alpha)), elementwise, on the device,
    computed without cancellation for large log_alpha (where it tends to exp(-log_alpha)) and with
    the exact derivative exp(-exp(-log_alpha)) - 1."""
    if not isinstance(log_alpha, torch.Tensor) or not log_alpha.is_floating_point():
        raise TypeError("cplx_vd_penalty: expected a real floating-point tensor")
    return _CplxVDPenalty.apply(log_alpha)
