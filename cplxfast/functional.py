"""Public functional API: differentiable complex ops on native complex tensors."""
from . import ops as _ops


def linear(input, weight, bias=None, algorithm=None):
    """Complex linear map y = x W^T + b (no conjugation), differentiable.

    input [*, in], weight [out, in], bias [out] or None: complex64 or complex128, same dtype and
    device. The op reads weight.real/weight.imag as views: no copy of the weight is made. ``algorithm``: "auto", "3m" or "4m" (see :func:`cplxfast.set_default_algorithm`);
    None uses the global default.
    """
    if bias is None:
        return _ops.linear(input, weight.real, weight.imag, None, None, algorithm)
    return _ops.linear(input, weight.real, weight.imag, bias.real, bias.imag, algorithm)


__all__ = ["linear"]
