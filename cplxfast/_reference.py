"""Pure-PyTorch float64 references: the executable spec of every op (SEMANTICS.md).

Written with real arithmetic on (re, im) pairs, the way SEMANTICS.md states the maths, and
independent of the kernels. Gradients come from autograd through these functions.
"""
import torch


def _parts(z):
    z = z.to(torch.complex128).resolve_conj()
    return z.real, z.imag


def linear(x, weight, bias=None):
    """y = x W^T + b: Re = xr Wr^T - xi Wi^T (+ br), Im = xr Wi^T + xi Wr^T (+ bi)."""
    xr, xi = _parts(x)
    wr, wi = _parts(weight)
    re = xr @ wr.T - xi @ wi.T
    im = xr @ wi.T + xi @ wr.T
    if bias is not None:
        br, bi = _parts(bias)
        re, im = re + br, im + bi
    return torch.complex(re, im)
