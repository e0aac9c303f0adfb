"""Drop-in replacements for cplxmodule.nn layers, backed by fused kernels.

Every layer takes a native complex tensor or a cplxmodule ``Cplx`` and returns the same kind.
"""
from ._complex import CplxParameter
from .activation import CplxAdaptiveModReLU, CplxModReLU, ModReLU
from .linear import CplxLinear

__all__ = ["CplxAdaptiveModReLU", "CplxLinear", "CplxModReLU", "CplxParameter", "ModReLU"]
