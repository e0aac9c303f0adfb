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
    x, weight_re, weight_im, bias_re, bias_im, algorithm = inputs
    ctx.save_for_backward(x, weight_re, weight_im)
    ctx.algorithm = algorithm
    ctx.has_bias = bias_re is not None


def _linear_backward(ctx, grad):
    x, weight_re, weight_im = ctx.saved_tensors
    need = ctx.needs_input_grad
    mask = [need[0], need[1] or need[2], ctx.has_bias and (need[3] or need[4])]
    grad_x, gw_re, gw_im, gb_re, gb_im = torch.ops.cplxfast.linear_backward.default(
        grad, x, weight_re, weight_im, ctx.algorithm, mask
    )
    return grad_x, gw_re, gw_im, gb_re, gb_im, None


torch.library.register_autograd("cplxfast::linear", _linear_backward, setup_context=_linear_setup_context)
_no_double_backward("linear_backward")
