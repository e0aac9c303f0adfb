"""Drop-in replacements for cplxmodule.nn layers, and for torch's nn.Linear with complex
parameters, backed by fused kernels.

Every layer takes a native complex tensor or a cplxmodule ``Cplx`` and returns the same kind;
``convert(model)`` swaps the cplxmodule layers and torch's complex nn.Linear layers of a live
model for these. The sparsification layers and their utilities live in ``cplxfast.nn.relevance``
(variational dropout, ARD, L0, LASSO), ``cplxfast.nn.masked`` and ``cplxfast.nn.sparsity``.
"""
from ._complex import CplxParameter
from .activation import CplxAdaptiveModReLU, CplxModReLU, ModReLU
from .batchnorm import CplxBatchNorm1d, CplxBatchNorm2d, CplxBatchNorm3d, CplxSyncBatchNorm, convert_sync_batchnorm
from .casting import AsTypeCplx, CplxAngle, CplxImag, CplxModulus, CplxReal, CplxToReal, RealToCplx
from .conv import (
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, CplxConv1d, CplxConv2d, CplxConv3d,
    CplxConvTranspose1d, CplxConvTranspose2d, CplxConvTranspose3d,
)
from .convert import convert
from .extra import (
    CplxDropout, CplxIdentity, CplxMaxPool1d, CplxMaxPool2d, CplxMaxPool3d, CplxPhaseShift, CplxSequential, CplxToCplx,
)
from .linear import CplxBilinear, CplxLinear, Linear
from . import masked, relevance, sparsity  # cplxmodule.nn.masked, .relevance, .utils.sparsity

__all__ = [
    "AsTypeCplx", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "CplxAdaptiveModReLU", "CplxAngle", "CplxBatchNorm1d", "CplxBatchNorm2d", "CplxBatchNorm3d",
    "CplxBilinear", "CplxConv1d", "CplxConv2d", "CplxConv3d", "CplxConvTranspose1d", "CplxConvTranspose2d",
    "CplxConvTranspose3d", "CplxDropout", "CplxIdentity", "CplxImag", "CplxLinear", "CplxMaxPool1d", "CplxMaxPool2d",
    "CplxMaxPool3d", "CplxModReLU", "CplxModulus", "CplxParameter", "CplxPhaseShift", "CplxReal", "CplxSequential",
    "CplxSyncBatchNorm", "CplxToCplx", "CplxToReal", "Linear", "ModReLU", "RealToCplx", "convert",
    "convert_sync_batchnorm",
]
