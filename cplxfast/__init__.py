"""cplxfast: fused complex-valued layers for PyTorch (CPU and CUDA).

Ops live under ``torch.ops.cplxfast``; typed wrappers in :mod:`cplxfast.ops`, the public
functional API in :mod:`cplxfast.functional`, drop-in cplxmodule layers in :mod:`cplxfast.nn`.
"""
from ._loader import load as _load

build_info = _load()

from . import ops  # noqa: E402,F401  (fake kernels; autograd is registered in C++: csrc/autograd/)
from ._config import ALGORITHMS, get_default_algorithm, set_default_algorithm, default_algorithm  # noqa: E402
from . import functional, nn  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "ALGORITHMS", "build_info", "default_algorithm", "functional", "get_default_algorithm",
    "nn", "ops", "set_default_algorithm",
]
