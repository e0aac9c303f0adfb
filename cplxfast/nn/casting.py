"""Layers between real and complex tensors: drop-ins for cplxmodule's AsTypeCplx, RealToCplx,
CplxToReal, CplxReal, CplxImag, CplxModulus and CplxAngle. Plain PyTorch (views where possible).

Complex-in layers take a complex tensor or a cplxmodule ``Cplx``. Real-in layers return a native
complex tensor, or, when ``cplx_type`` is set (``cplxfast.nn.convert`` sets cplxmodule's Cplx for
the layers it converts), an object of that type built from (real, imag), so that models which
pass Cplx objects between layers keep working.
"""
import torch

from ._complex import to_complex


class _RealToComplex(torch.nn.Module):
    def __init__(self, cplx_type=None):
        super().__init__()
        self.cplx_type = cplx_type

    def _wrap(self, re, im):
        return torch.complex(re, im) if self.cplx_type is None else self.cplx_type(re, im)


class AsTypeCplx(_RealToComplex):
    """x -> x + 0i."""

    def forward(self, input):
        return self._wrap(input, torch.zeros_like(input))


class RealToCplx(_RealToComplex):
    """Real [..., 2 d] with interleaved (re, im) pairs along ``dim`` -> complex [..., d]
    (cplxmodule's InterleavedRealToCplx; ``copy`` is accepted for compatibility: the result is a
    view whenever the strides allow)."""

    def __init__(self, copy=False, dim=-1, cplx_type=None):
        super().__init__(cplx_type)
        self.copy, self.dim = copy, dim

    def forward(self, input):
        if input.shape[self.dim] % 2:
            raise ValueError(f"RealToCplx: dim {self.dim} has odd size {input.shape[self.dim]}; it must hold (re, im) pairs")
        pairs = input.movedim(self.dim, -1).unflatten(-1, (-1, 2))
        if self.cplx_type is not None:
            return self.cplx_type(pairs[..., 0].movedim(-1, self.dim), pairs[..., 1].movedim(-1, self.dim))
        return torch.view_as_complex(pairs.contiguous()).movedim(-1, self.dim)


class CplxToReal(torch.nn.Module):
    """Complex [..., d] -> real [..., 2 d] with interleaved (re, im) pairs along ``dim``
    (cplxmodule's CplxToInterleavedReal)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        z, _ = to_complex(input, type(self).__name__)
        dim = self.dim % z.dim()
        return torch.stack([z.real, z.imag], dim=dim + 1).flatten(dim, dim + 1)


class CplxReal(torch.nn.Module):
    """The real part."""

    def forward(self, input):
        return to_complex(input, type(self).__name__)[0].real


class CplxImag(torch.nn.Module):
    """The imaginary part."""

    def forward(self, input):
        return to_complex(input, type(self).__name__)[0].imag


class CplxModulus(torch.nn.Module):
    """|z|."""

    def forward(self, input):
        return to_complex(input, type(self).__name__)[0].abs()


class CplxAngle(torch.nn.Module):
    """arg z in (-pi, pi]."""

    def forward(self, input):
        return to_complex(input, type(self).__name__)[0].angle()
