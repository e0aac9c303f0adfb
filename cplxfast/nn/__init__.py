"""Drop-in replacements for cplxmodule.nn layers, backed by fused kernels.

Every layer takes a native complex tensor or a cplxmodule ``Cplx`` and returns the same kind.
"""
from ._complex import CplxParameter
from .activation import CplxAdaptiveModReLU, CplxModReLU, ModReLU
from .batchnorm import CplxBatchNorm1d, CplxBatchNorm2d, CplxBatchNorm3d, CplxSyncBatchNorm, convert_sync_batchnorm
from .conv import (
    CplxConv1d, CplxConv2d, CplxConv3d, CplxConvTranspose1d, CplxConvTranspose2d, CplxConvTranspose3d,
)
from .linear import CplxLinear

__all__ = [
    "CplxAdaptiveModReLU", "CplxBatchNorm1d", "CplxBatchNorm2d", "CplxBatchNorm3d", "CplxConv1d", "CplxConv2d", "CplxConv3d",
    "CplxConvTranspose1d", "CplxConvTranspose2d", "CplxConvTranspose3d", "CplxLinear", "CplxModReLU",
    "CplxParameter", "CplxSyncBatchNorm", "ModReLU", "convert_sync_batchnorm",
]
