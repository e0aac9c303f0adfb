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


def modrelu(z, threshold):
    """cplxmodule's modReLU: z * relu(1 - tau / max(|z|, 1e-5)), tau broadcast on trailing dims.

    |z| is computed as sqrt(re^2 + im^2) with a zero-safe gradient (a plain sqrt gives 0/0 at
    z = 0). Near z = 0 the map is z * relu(1 - tau / 1e-5), so at z = 0 the gradient is that
    factor, 0 for tau >= 1e-5, as cplxmodule computes it.
    """
    zr, zi = _parts(z)
    tau = threshold.to(torch.float64)
    sq = zr * zr + zi * zi
    safe = torch.where(sq > 0, sq, torch.ones_like(sq))
    modulus = torch.where(sq > 0, torch.sqrt(safe), torch.zeros_like(sq))
    scale = torch.relu(1.0 - tau / torch.clamp(modulus, min=1e-5))
    return torch.complex(zr * scale, zi * scale)
