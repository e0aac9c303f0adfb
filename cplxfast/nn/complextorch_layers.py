"""complextorch 2.1.1's layers with complextorch's own maths, names, parameters and state_dict, on
the fused ops (what ``convert()`` makes of a complextorch model; SEMANTICS.md, "complextorch").

- ``BatchNorm1d/2d/3d``: cplxmodule's whitening batch norm (biased covariance, eps on its diagonal,
  running_var with eps, same state_dict), the affine weight initialised to I/sqrt(2).
- ``modReLU(bias=-0.1, learnable=False)``: relu(|z| + b) z / max(|z|, 1e-12), a scalar ``b`` in
  the submodule ``activation_mag`` (a buffer, or a Parameter when learnable); the modrelu op with
  threshold -b and eps = 1e-12.
- ``AdaptiveModReLU(num_features, init=-0.1)``: the same with ``activation_mag.bias`` [C],
  broadcast against dim 1 of [B, C, *] input.
"""
import math

import torch

from .. import ops
from ._complex import to_complex
from .batchnorm import CplxBatchNorm1d, CplxBatchNorm2d, CplxBatchNorm3d

MODULUS_FLOOR = 1e-12  # complextorch clamps |z| at 1e-12 before dividing


class _IdentityOverSqrt2:
    def reset_parameters(self):
        super().reset_parameters()
        if self.affine:
            with torch.no_grad():
                self.weight.mul_(1 / math.sqrt(2))


class BatchNorm1d(_IdentityOverSqrt2, CplxBatchNorm1d):
    """complextorch.nn.BatchNorm1d ([B, F] or [B, F, L]) on the fused batch-norm op."""


class BatchNorm2d(_IdentityOverSqrt2, CplxBatchNorm2d):
    """complextorch.nn.BatchNorm2d ([B, F, H, W]) on the fused batch-norm op."""


class BatchNorm3d(_IdentityOverSqrt2, CplxBatchNorm3d):
    """complextorch.nn.BatchNorm3d ([B, F, D, H, W]) on the fused batch-norm op."""


class _MagnitudeBias(torch.nn.Module):
    """Holds ``bias`` where complextorch keeps it (``activation_mag.bias``)."""

    def __init__(self, bias, learnable):
        super().__init__()
        if learnable:
            self.bias = torch.nn.Parameter(bias)
        else:
            self.register_buffer("bias", bias)


class modReLU(torch.nn.Module):  # noqa: N801 (complextorch's name)
    """complextorch.nn.modReLU: relu(|z| + b) z / max(|z|, 1e-12)."""

    def __init__(self, bias=-0.1, learnable=False):
        super().__init__()
        if not learnable and not bias < 0:
            raise ValueError("modReLU: bias must be smaller than 0 to have a non-linearity effect (or learnable=True)")
        self.activation_mag = _MagnitudeBias(torch.tensor(float(bias)), learnable)

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        tau = (-self.activation_mag.bias).to(z.real.dtype).reshape(1)
        return rewrap(ops.modrelu(z, tau, MODULUS_FLOOR))


class AdaptiveModReLU(torch.nn.Module):
    """complextorch.nn.AdaptiveModReLU: relu(|z_c| + b_c) z_c / max(|z_c|, 1e-12) per channel (dim 1)."""

    def __init__(self, num_features, init=-0.1):
        super().__init__()
        self.activation_mag = _MagnitudeBias(torch.full((num_features,), float(init)), True)
        self.activation_mag.num_features = num_features

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        n = self.activation_mag.num_features
        if z.dim() < 2 or z.shape[1] != n:
            raise ValueError(f"AdaptiveModReLU: expected input [B, {n}, *], got shape {tuple(z.shape)}")
        tau = (-self.activation_mag.bias).to(z.real.dtype).view(n, *([1] * (z.dim() - 2)))
        return rewrap(ops.modrelu(z, tau, MODULUS_FLOOR))
