"""Typed wrappers over ``torch.ops.cplxfast`` and the fake (meta) kernels of every op.

Fake kernels return tensors with the shapes AND strides of the real kernels' outputs, so
``torch.compile(fullgraph=True)`` and ``torch.export`` trace through the ops.
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _config

_ops = torch.ops.cplxfast


# ---------------------------------------------------------------------------------- linear
def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, algorithm: Optional[str] = None) -> Tensor:
    """y = x W^T + b for complex x [*, in], W [out, in], b [out]: returns [*, out]."""
    return _ops.linear.default(x, weight, bias, _config.resolve(algorithm))


def linear_backward(
    grad: Tensor, x: Tensor, weight: Tensor, algorithm: Optional[str] = None,
    output_mask: Sequence[bool] = (True, True, True),
) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """(grad_x, grad_W, grad_b) = (g conj(W), g^T conj(x), sum g); None where not in output_mask."""
    return _ops.linear_backward.default(grad, x, weight, _config.resolve(algorithm), list(output_mask))


@torch.library.register_fake("cplxfast::linear")
def _linear_fake(x, weight, bias, algorithm):
    torch._check(x.dim() >= 1, lambda: "cplxfast.linear: input must have at least 1 dimension")
    torch._check(
        x.shape[-1] == weight.shape[1],
        lambda: f"cplxfast.linear: input has {x.shape[-1]} features but weight expects {weight.shape[1]}",
    )
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.register_fake("cplxfast::linear_backward")
def _linear_backward_fake(grad, x, weight, algorithm, output_mask):
    grad_x = x.new_empty(x.shape) if output_mask[0] else None
    grad_w = weight.new_empty(weight.shape) if output_mask[1] else None
    grad_b = weight.new_empty((weight.shape[0],)) if output_mask[2] else None
    return grad_x, grad_w, grad_b
