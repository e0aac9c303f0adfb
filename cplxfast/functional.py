"""Public functional API: differentiable complex ops on native complex tensors."""
import torch

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





def modrelu(input, threshold):
    """cplxmodule's modReLU: input * relu(1 - threshold / max(|input|, 1e-5)), differentiable.

    ``threshold`` is a real tensor (or a float) broadcast against the input's TRAILING dims, e.g.
    shape [C, 1, 1] for per-channel thresholds on [B, C, H, W]. Arjovsky et al.'s
    relu(|z| + b) z/|z| is the same map with threshold = -b. Value and gradient at z = 0 are 0.
    """
    if not isinstance(threshold, torch.Tensor):
        real = torch.float64 if input.dtype == torch.complex128 else torch.float32
        threshold = torch.tensor([float(threshold)], dtype=real, device=input.device)
    return _ops.modrelu(input, threshold)
__all__ = ["linear", "modrelu"]
