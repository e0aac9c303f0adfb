"""Complex linear layers: a drop-in for cplxmodule.nn.CplxLinear, and one for torch's own
nn.Linear with complex parameters."""
import math

import torch

from .. import _config, functional, ops
from ._complex import CplxModule, CplxParameter, to_complex


def cplx_kaiming_uniform_(param, a=0.0):
    """cplxmodule's init: torch's kaiming_uniform_ on re and im independently, a' = sqrt(1 + 2a^2)."""
    a = math.sqrt(1 + 2 * a * a)
    torch.nn.init.kaiming_uniform_(param.real, a=a)
    torch.nn.init.kaiming_uniform_(param.imag, a=a)


def cplx_fans(shape):
    """cplxmodule's fan helper: for 2-D weights it returns (out, in) as (fan_in, fan_out)."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


class CplxLinear(CplxModule):
    """y = x W^T + b on complex input; same signature, parameters and state_dict as cplxmodule's.

    Takes a complex tensor [*, in_features] or a cplxmodule ``Cplx`` (any object with .real and
    .imag tensors) and returns the same kind. ``algorithm``: "auto", "3m", "4m", or None for the
    global default (:func:`cplxfast.set_default_algorithm`).
    """

    def __init__(self, in_features, out_features, bias=True, *, algorithm=None, dtype=None, device=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.algorithm = None if algorithm is None else _config.resolve(algorithm)
        self.weight = CplxParameter.empty(out_features, in_features, dtype=dtype, device=device)
        self.bias = CplxParameter.empty(out_features, dtype=dtype, device=device) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        cplx_kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = cplx_fans(self.weight.shape)
            bound = 1 / math.sqrt(fan_in)
            torch.nn.init.uniform_(self.bias.real, -bound, bound)
            torch.nn.init.uniform_(self.bias.imag, -bound, bound)

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        return rewrap(self._forward_complex(z))

    def _forward_complex(self, z):
        # The op takes the real and imaginary Parameters as they are: no complex copy of the
        # weight is built, and their gradients come back as real tensors.
        w_re, w_im, b_re, b_im = self._weight_and_bias_parts(z)
        return ops.linear(z, w_re, w_im, b_re, b_im, self.algorithm, None, self._weight_mask())

    def extra_repr(self):
        algo = "" if self.algorithm is None else f", algorithm={self.algorithm!r}"
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}{algo}"


class CplxBilinear(CplxModule):
    """y_k = sum_ij conj(x1_i) W_kij x2_j + b_k (conjugate=False: x1 not conjugated); cplxmodule's
    signature, parameters [out, in1, in2] and [out], init and state_dict. Plain PyTorch (one complex
    einsum), not a fused kernel."""

    def __init__(self, in1_features, in2_features, out_features, bias=True, conjugate=True, *, dtype=None,
                 device=None):
        super().__init__()
        self.in1_features, self.in2_features, self.out_features = in1_features, in2_features, out_features
        self.conjugate = conjugate
        self.weight = CplxParameter.empty(out_features, in1_features, in2_features, dtype=dtype, device=device)
        self.bias = CplxParameter.empty(out_features, dtype=dtype, device=device) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        cplx_kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = cplx_fans(self.weight.shape)
            bound = 1 / math.sqrt(fan_in)
            torch.nn.init.uniform_(self.bias.real, -bound, bound)
            torch.nn.init.uniform_(self.bias.imag, -bound, bound)

    def forward(self, input1, input2):
        z1, rewrap = to_complex(input1, type(self).__name__)
        z2, _ = to_complex(input2, type(self).__name__)
        return rewrap(self._forward_complex(z1, z2))

    def _forward_complex(self, z1, z2):
        w_re, w_im, b_re, b_im = self._weight_and_bias_parts(z1)
        mask = self._weight_mask()
        if mask is not None:  # the einsum has no fused mask: a masked copy of the weight
            w_re, w_im = w_re * mask, w_im * mask
        y = torch.einsum("...i,kij,...j->...k", z1.conj() if self.conjugate else z1, torch.complex(w_re, w_im), z2)
        return y if b_re is None else y + torch.complex(b_re, b_im)

    def extra_repr(self):
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}, conjugate={self.conjugate}")


class AlgorithmOption:
    """Mixed into torch's layers that run on the fused ops: the extra keyword ``algorithm`` ("auto",
    "3m", "4m", or None for the global default), everything else passed to torch's constructor."""

    def __init__(self, *args, algorithm=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.algorithm = None if algorithm is None else _config.resolve(algorithm)


class Linear(AlgorithmOption, torch.nn.Linear):
    """torch.nn.Linear on the fused ops when its parameters are complex (``dtype=torch.complex64`` or
    ``complex128``): the same signature, parameter names and shapes (``weight`` [out, in], ``bias``
    [out], complex), init and state_dict as torch's layer, so checkpoints and optimizers carry over;
    the weight is read in place and gets one complex gradient (the ``linear_complex`` ops). With
    real parameters it is torch's layer. Signature: torch's (in_features, out_features, bias=True,
    device=None, dtype=None) and the keyword ``algorithm`` ("auto", "3m", "4m", or None for the global
    default). Also takes a cplxmodule ``Cplx`` and returns one.
    """

    def forward(self, input):
        if not self.weight.is_complex():
            return super().forward(input)
        z, rewrap = to_complex(input, type(self).__name__)
        return rewrap(functional.linear(z, self.weight, self.bias, self.algorithm))
