"""Cheap complex layers in plain PyTorch: drop-ins for cplxmodule's CplxIdentity, CplxPhaseShift,
CplxDropout, CplxMaxPool1d/2d/3d, CplxSequential and CplxToCplx (promotion of a real module or
function to one applied to the real and imaginary parts separately)."""
import functools

import torch
import torch.nn.functional as F

from ._complex import to_complex


class CplxIdentity(torch.nn.Module):
    def forward(self, input):
        return input


class CplxSequential(torch.nn.Sequential):
    """torch.nn.Sequential for complex layers (complex tensors or Cplx flow through)."""


class CplxPhaseShift(torch.nn.Module):
    """z e^{i phi} with a learnable phase ``phi`` of shape ``dim`` (radians), broadcast against the
    input's trailing dims; init randn(*dim) * 0.02, as cplxmodule."""

    def __init__(self, *dim):
        super().__init__()
        self.phi = torch.nn.Parameter(torch.randn(*dim) * 0.02)

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        return rewrap(z * torch.polar(torch.ones_like(self.phi), self.phi))


class CplxDropout(torch.nn.Module):
    """Dropout of whole complex numbers (real and imaginary parts together), scaled by 1 / (1 - p)
    in training, identity in eval; cplxmodule's semantics, without its Dropout2d detour."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        if not self.training or self.p == 0.0:
            return input
        keep = F.dropout(torch.ones(z.shape, dtype=z.real.dtype, device=z.device), self.p, True)
        return rewrap(z * keep)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class _CplxMaxPoolNd(torch.nn.Module):
    """Max pooling by modulus (Zhang et al. 2017, as cplxmodule): each window keeps the complex
    value of largest |z|."""

    _pool = None

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        _, idx = type(self)._pool(z.abs(), self.kernel_size, self.stride, self.padding, self.dilation,
                                  ceil_mode=self.ceil_mode, return_indices=True)
        out = z.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
        return (rewrap(out), idx) if self.return_indices else rewrap(out)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class CplxMaxPool1d(_CplxMaxPoolNd):
    _pool = staticmethod(F.max_pool1d)


class CplxMaxPool2d(_CplxMaxPoolNd):
    _pool = staticmethod(F.max_pool2d)


class CplxMaxPool3d(_CplxMaxPoolNd):
    _pool = staticmethod(F.max_pool3d)


class _SplitModule(torch.nn.Module):
    """Base of promoted real modules: the real module's forward on re and im separately."""


class _CplxToCplxMeta(type):
    @functools.lru_cache(maxsize=None)
    def __getitem__(cls, base):
        if isinstance(base, type) and issubclass(base, torch.nn.Module):
            if base is torch.nn.Module:
                return cls
            if issubclass(base, (cls, _SplitModule)):
                return base

            class Promoted(base, _SplitModule):
                def forward(self, input):
                    z, rewrap = to_complex(input, type(self).__name__)
                    real_forward = super().forward
                    return rewrap(torch.complex(real_forward(z.real), real_forward(z.imag)))

            Promoted.__name__ = Promoted.__qualname__ = f"CplxSplitLayer{base.__name__}"
            return Promoted
        if callable(base):
            fn = base

            class PromotedFn(cls):
                def __init__(self, *args, **kwargs):
                    super().__init__()
                    self.args, self.kwargs = args, kwargs

                def forward(self, input):
                    z, rewrap = to_complex(input, type(self).__name__)
                    return rewrap(torch.complex(fn(z.real, *self.args, **self.kwargs),
                                                fn(z.imag, *self.args, **self.kwargs)))

            PromotedFn.__name__ = PromotedFn.__qualname__ = f"CplxSplitFunc{getattr(fn, '__name__', 'fn').title()}"
            return PromotedFn
        raise TypeError(f"CplxToCplx[...] takes a torch.nn.Module subclass or a callable, got {type(base).__name__}")


class CplxToCplx(torch.nn.Module, metaclass=_CplxToCplxMeta):
    """Base of complex-to-complex layers. ``CplxToCplx[torch.nn.Tanh]`` (a real module class) or
    ``CplxToCplx[torch.tanh]`` (a function) promote a real layer to the complex layer applying it to
    the real and imaginary parts separately, as cplxmodule's promotion does."""
