"""Autograd for every forward op: the backward is our own backward op.

Backward ops are not themselves differentiable: their autograd raises a clear error, so a
double backward (create_graph=True) fails loudly instead of returning wrong second derivatives.
"""
import torch


def _no_double_backward(op_name):
    def backward(ctx, *grads):
        raise RuntimeError(
            f"cplxfast.{op_name}: double backward is not supported (the backward is a fused "
            f"kernel, not built from differentiable ops); use the pure-PyTorch reference in "
            f"cplxfast._reference for higher-order derivatives"
        )

    torch.library.register_autograd(f"cplxfast::{op_name}", backward)


# ---------------------------------------------------------------------------------- linear
def _linear_setup_context(ctx, inputs, output):
    x, weight, bias, algorithm = inputs
    ctx.save_for_backward(x, weight)
    ctx.algorithm = algorithm
    ctx.has_bias = bias is not None


def _linear_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    mask = [need[0], need[1], ctx.has_bias and need[2]]
    grad_x, grad_w, grad_b = torch.ops.cplxfast.linear_backward.default(grad, x, weight, ctx.algorithm, mask)
    return grad_x, grad_w, grad_b, None


torch.library.register_autograd("cplxfast::linear", _linear_backward, setup_context=_linear_setup_context)
_no_double_backward("linear_backward")
