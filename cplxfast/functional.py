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


def batch_norm(input, running_mean=None, running_var=None, weight=None, bias=None, training=True, momentum=0.1,
               eps=1e-5):
    """cplxmodule's complex batch norm (2x2 whitening per channel of [B, C, *] input).

    Uses the batch statistics when training (or when no running statistics are given) and then
    updates running_mean [2, C] and running_var [2, 2, C] in place with ``momentum``; otherwise
    normalises with the running statistics. weight [2, 2, C] and bias [2, C] are optional.
    """
    if training or running_mean is None:
        out, mean, cov = _ops.batch_norm(input, weight, bias, None, None, True, eps)
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                running_mean.lerp_(mean.to(running_mean.dtype), momentum)
                running_var.lerp_(cov.to(running_var.dtype), momentum)
        return out
    return _ops.batch_norm(input, weight, bias, running_mean, running_var, False, eps)[0]


__all__ = ["batch_norm", "linear", "modrelu"]
