"""Typed wrappers over ``torch.ops.cplxfast`` and the fake (meta) kernels of every op.

Fake kernels return tensors with the shapes AND strides of the real kernels' outputs, so
``torch.compile(fullgraph=True)`` and ``torch.export`` trace through the ops.
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch._prims_common import suggest_memory_format

from . import _config

_ops = torch.ops.cplxfast


# ------------------------------------------------------------------------- mixed precision
# operand_dtype (linear and conv ops): None, the input's real dtype (full precision), or
# torch.bfloat16 / torch.float16 for complex64 inputs: the real products take 16-bit operands and
# accumulate and return float32. torch.autocast sets it (the ops' autocast kernels); an explicit
# value is kept under autocast.
def _check_operand_dtype(op: str, x: Tensor, operand_dtype: Optional[torch.dtype]) -> None:
    if operand_dtype is None or operand_dtype == x.real.dtype:
        return
    torch._check(
        operand_dtype in (torch.bfloat16, torch.float16),
        lambda: f"{op}: operand_dtype must be None, the input's real dtype, torch.bfloat16 or torch.float16, "
        f"got {operand_dtype}",
    )
    torch._check(
        x.dtype == torch.complex64,
        lambda: f"{op}: operand_dtype {operand_dtype} (16-bit operands, float32 products) needs a complex64 "
        f"input, got {x.dtype}",
    )


# ------------------------------------------------------------------------------ weight masks
# weight_mask (the parts variants of linear and conv; masked layers): a real tensor of weight_re's
# dtype, device and shape, not differentiated. The op computes with W * mask and returns grad_W *
# mask, applying the mask in the passes that read W and write its gradient (no masked copy).
def _check_weight_mask(op: str, weight_mask: Optional[Tensor], weight_re: Tensor) -> None:
    if weight_mask is None:
        return
    torch._check(
        weight_mask.dtype == weight_re.dtype and weight_mask.device == weight_re.device,
        lambda: f"{op}: weight_mask must be a real {weight_re.dtype} tensor on {weight_re.device}, got "
        f"{weight_mask.dtype} on {weight_mask.device}",
    )
    torch._check(
        weight_mask.shape == weight_re.shape,
        lambda: f"{op}: weight_mask must have the weight's shape {tuple(weight_re.shape)}, got "
        f"{tuple(weight_mask.shape)}",
    )


# ---------------------------------------------------------------------------------- linear
def linear(
    x: Tensor, weight_re: Tensor, weight_im: Tensor, bias_re: Optional[Tensor] = None,
    bias_im: Optional[Tensor] = None, algorithm: Optional[str] = None, operand_dtype: Optional[torch.dtype] = None,
    weight_mask: Optional[Tensor] = None,
) -> Tensor:
    """y = x (W * weight_mask)^T + b for complex x [*, in] and W = weight_re + i weight_im [out, in],
    b = bias_re + i bias_im [out] (real parts, any strides; weight_mask None: no mask): returns
    complex [*, out]."""
    return _ops.linear.default(x, weight_re, weight_im, bias_re, bias_im, _config.resolve(algorithm), operand_dtype,
                               weight_mask)


def linear_backward(
    grad: Tensor, x: Tensor, weight_re: Tensor, weight_im: Tensor, algorithm: Optional[str] = None,
    output_mask: Sequence[bool] = (True, True, True), operand_dtype: Optional[torch.dtype] = None,
    weight_mask: Optional[Tensor] = None,
) -> Tuple[Optional[Tensor], ...]:
    """(grad_x, grad_weight_re, grad_weight_im, grad_bias_re, grad_bias_im) from grad_x = g conj(W),
    grad_W = g^T conj(x), grad_b = sum g (W and grad_W times weight_mask when given); None where
    output_mask (x, weight, bias) is False."""
    return _ops.linear_backward.default(
        grad, x, weight_re, weight_im, _config.resolve(algorithm), list(output_mask), operand_dtype, weight_mask
    )


@torch.library.register_fake("cplxfast::linear")
def _linear_fake(x, weight_re, weight_im, bias_re, bias_im, algorithm, operand_dtype=None, weight_mask=None):
    _check_operand_dtype("cplxfast.linear", x, operand_dtype)
    _check_weight_mask("cplxfast.linear", weight_mask, weight_re)
    torch._check(x.dim() >= 1, lambda: "cplxfast.linear: input must have at least 1 dimension")
    torch._check(
        x.shape[-1] == weight_re.shape[1],
        lambda: f"cplxfast.linear: input has {x.shape[-1]} features but weight expects {weight_re.shape[1]}",
    )
    return x.new_empty((*x.shape[:-1], weight_re.shape[0]))


@torch.library.register_fake("cplxfast::linear_backward")
def _linear_backward_fake(grad, x, weight_re, weight_im, algorithm, output_mask, operand_dtype=None,
                          weight_mask=None):
    _check_operand_dtype("cplxfast.linear_backward", x, operand_dtype)
    _check_weight_mask("cplxfast.linear_backward", weight_mask, weight_re)
    real = x.new_empty((), dtype=weight_re.dtype)
    grad_x = x.new_empty(x.shape) if output_mask[0] else None
    grad_w = [real.new_empty(weight_re.shape) if output_mask[1] else None for _ in range(2)]
    grad_b = [real.new_empty((weight_re.shape[0],)) if output_mask[2] else None for _ in range(2)]
    return grad_x, *grad_w, *grad_b


def linear_complex(
    x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, algorithm: Optional[str] = None,
    operand_dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """y = x W^T + b for complex x [*, in], W [out, in] and b [out]: the complex-weight variant of
    :func:`linear` (native complex parameters; their gradients come back complex)."""
    return _ops.linear_complex.default(x, weight, bias, _config.resolve(algorithm), operand_dtype)


def linear_complex_backward(
    grad: Tensor, x: Tensor, weight: Tensor, algorithm: Optional[str] = None,
    output_mask: Sequence[bool] = (True, True, True), operand_dtype: Optional[torch.dtype] = None,
) -> Tuple[Optional[Tensor], ...]:
    """(grad_x, grad_weight, grad_bias), complex; None where output_mask (x, weight, bias) is False."""
    return _ops.linear_complex_backward.default(
        grad, x, weight, _config.resolve(algorithm), list(output_mask), operand_dtype
    )


@torch.library.register_fake("cplxfast::linear_complex")
def _linear_complex_fake(x, weight, bias, algorithm, operand_dtype=None):
    return _linear_fake(x, weight, None, None, None, algorithm, operand_dtype)


@torch.library.register_fake("cplxfast::linear_complex_backward")
def _linear_complex_backward_fake(grad, x, weight, algorithm, output_mask, operand_dtype=None):
    _check_operand_dtype("cplxfast.linear_complex_backward", x, operand_dtype)
    grad_x = x.new_empty(x.shape) if output_mask[0] else None
    grad_w = x.new_empty(weight.shape) if output_mask[1] else None
    grad_b = x.new_empty((weight.shape[0],)) if output_mask[2] else None
    return grad_x, grad_w, grad_b


# ---------------------------------------------------------------------------------- conv
def conv(
    x: Tensor, weight_re: Tensor, weight_im: Tensor, bias_re: Optional[Tensor] = None,
    bias_im: Optional[Tensor] = None, stride: Sequence[int] = (1,), padding: Sequence[int] = (0,),
    dilation: Sequence[int] = (1,), transposed: bool = False, output_padding: Sequence[int] = (0,), groups: int = 1,
    algorithm: Optional[str] = None, operand_dtype: Optional[torch.dtype] = None, weight_mask: Optional[Tensor] = None,
) -> Tensor:
    """Complex (transposed) convolution of x [B, C_in, *S] with W = weight_re + i weight_im (times
    weight_mask when given) and b = bias_re + i bias_im (real parts); stride/padding/dilation/
    output_padding one int per spatial dim, symmetric zero padding."""
    return _ops.conv.default(
        x, weight_re, weight_im, bias_re, bias_im, list(stride), list(padding), list(dilation), transposed,
        list(output_padding), groups, _config.resolve(algorithm), operand_dtype, weight_mask,
    )


def conv_backward(
    grad: Tensor, x: Tensor, weight_re: Tensor, weight_im: Tensor, stride: Sequence[int], padding: Sequence[int],
    dilation: Sequence[int], transposed: bool, output_padding: Sequence[int], groups: int,
    algorithm: Optional[str] = None, output_mask: Sequence[bool] = (True, True, True),
    operand_dtype: Optional[torch.dtype] = None, weight_mask: Optional[Tensor] = None,
) -> Tuple[Optional[Tensor], ...]:
    """(grad_x, grad_weight_re, grad_weight_im, grad_bias_re, grad_bias_im), W and grad_W times
    weight_mask when given; None where output_mask (x, weight, bias) is False."""
    return _ops.conv_backward.default(
        grad, x, weight_re, weight_im, list(stride), list(padding), list(dilation), transposed, list(output_padding),
        groups, _config.resolve(algorithm), list(output_mask), operand_dtype, weight_mask,
    )


def _activation_format(x):
    """The memory format of conv's results: channels_last when x suggests it (4-D/5-D), as the kernels do."""
    return suggest_memory_format(x) if x.dim() >= 4 else torch.contiguous_format


def _conv_output_shape(x, weight, stride, padding, dilation, transposed, output_padding, groups):
    shape = [x.shape[0], weight.shape[1] * groups if transposed else weight.shape[0]]
    for i in range(x.dim() - 2):
        span = dilation[i] * (weight.shape[i + 2] - 1) + 1
        if transposed:
            shape.append((x.shape[i + 2] - 1) * stride[i] - 2 * padding[i] + span + output_padding[i])
        else:
            shape.append((x.shape[i + 2] + 2 * padding[i] - span) // stride[i] + 1)
    return shape


@torch.library.register_fake("cplxfast::conv")
def _conv_fake(x, weight_re, weight_im, bias_re, bias_im, stride, padding, dilation, transposed, output_padding,
               groups, algorithm, operand_dtype=None, weight_mask=None):
    _check_operand_dtype("cplxfast.conv", x, operand_dtype)
    _check_weight_mask("cplxfast.conv", weight_mask, weight_re)
    torch._check(x.dim() == weight_re.dim(), lambda: "cplxfast.conv: input and weight ranks differ")
    shape = _conv_output_shape(x, weight_re, stride, padding, dilation, transposed, output_padding, groups)
    return x.new_empty(shape).contiguous(memory_format=_activation_format(x))


@torch.library.register_fake("cplxfast::conv_backward")
def _conv_backward_fake(grad, x, weight_re, weight_im, stride, padding, dilation, transposed, output_padding, groups,
                        algorithm, output_mask, operand_dtype=None, weight_mask=None):
    _check_operand_dtype("cplxfast.conv_backward", x, operand_dtype)
    _check_weight_mask("cplxfast.conv_backward", weight_mask, weight_re)
    grad_x = x.new_empty(x.shape).contiguous(memory_format=_activation_format(x)) if output_mask[0] else None
    grad_w = [weight_re.new_empty(weight_re.shape) if output_mask[1] else None for _ in range(2)]
    c_out = weight_re.shape[1] * groups if transposed else weight_re.shape[0]
    grad_b = [weight_re.new_empty((c_out,)) if output_mask[2] else None for _ in range(2)]
    return grad_x, *grad_w, *grad_b


def conv_complex(
    x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: Sequence[int] = (1,),
    padding: Sequence[int] = (0,), dilation: Sequence[int] = (1,), transposed: bool = False,
    output_padding: Sequence[int] = (0,), groups: int = 1, algorithm: Optional[str] = None,
    operand_dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """:func:`conv` with a complex weight and bias (native complex parameters; their gradients come
    back complex)."""
    return _ops.conv_complex.default(
        x, weight, bias, list(stride), list(padding), list(dilation), transposed, list(output_padding), groups,
        _config.resolve(algorithm), operand_dtype,
    )


def conv_complex_backward(
    grad: Tensor, x: Tensor, weight: Tensor, stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
    transposed: bool, output_padding: Sequence[int], groups: int, algorithm: Optional[str] = None,
    output_mask: Sequence[bool] = (True, True, True), operand_dtype: Optional[torch.dtype] = None,
) -> Tuple[Optional[Tensor], ...]:
    """(grad_x, grad_weight, grad_bias), complex; None where output_mask (x, weight, bias) is False."""
    return _ops.conv_complex_backward.default(
        grad, x, weight, list(stride), list(padding), list(dilation), transposed, list(output_padding), groups,
        _config.resolve(algorithm), list(output_mask), operand_dtype,
    )


@torch.library.register_fake("cplxfast::conv_complex")
def _conv_complex_fake(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups, algorithm,
                       operand_dtype=None):
    return _conv_fake(x, weight, None, None, None, stride, padding, dilation, transposed, output_padding, groups,
                      algorithm, operand_dtype)


@torch.library.register_fake("cplxfast::conv_complex_backward")
def _conv_complex_backward_fake(grad, x, weight, stride, padding, dilation, transposed, output_padding, groups,
                                algorithm, output_mask, operand_dtype=None):
    _check_operand_dtype("cplxfast.conv_complex_backward", x, operand_dtype)
    grad_x = x.new_empty(x.shape).contiguous(memory_format=_activation_format(x)) if output_mask[0] else None
    grad_w = weight.new_empty(weight.shape) if output_mask[1] else None
    c_out = weight.shape[1] * groups if transposed else weight.shape[0]
    grad_b = weight.new_empty((c_out,)) if output_mask[2] else None
    return grad_x, grad_w, grad_b


# ---------------------------------------------------------------------------------- modrelu
def modrelu(input: Tensor, threshold: Tensor, eps: float = 1e-5) -> Tensor:
    """out = z * relu(1 - tau / max(|z|, eps)); tau real, broadcast against z's trailing dims.

    ``eps`` is the modulus floor: 1e-5 is cplxmodule's, 1e-12 complextorch's; eps = 0 is
    torchcvnn's polar form relu(|z| - tau) z/|z|, with relu(-tau) at z = 0.
    """
    return _ops.modrelu.default(input, threshold, eps)


def modrelu_backward(
    grad: Tensor, input: Tensor, threshold: Tensor, output_mask: Sequence[bool] = (True, True), eps: float = 1e-5
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """(grad_input, grad_threshold); None where output_mask (input, threshold) is False."""
    return _ops.modrelu_backward.default(grad, input, threshold, list(output_mask), eps)


@torch.library.register_fake("cplxfast::modrelu")
def _modrelu_fake(input, threshold, eps=1e-5):
    return torch.empty_like(input)


@torch.library.register_fake("cplxfast::modrelu_backward")
def _modrelu_backward_fake(grad, input, threshold, output_mask, eps=1e-5):
    grad_input = torch.empty_like(input) if output_mask[0] else None
    grad_threshold = threshold.new_empty(threshold.shape) if output_mask[1] else None
    return grad_input, grad_threshold


# ---------------------------------------------------------------------------------- batch_norm
def batch_norm(
    input: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
    running_mean: Optional[Tensor] = None, running_var: Optional[Tensor] = None, training: bool = True,
    eps: float = 1e-5,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Complex batch norm with 2x2 whitening: (out, batch mean [2, C], batch covariance [2, 2, C]).

    training=True uses the batch statistics (returned, covariance with eps on its diagonal, for a
    running-statistics update); training=False uses running_mean/running_var as they are and
    returns empty statistics. weight [2, 2, C], bias [2, C] real, optional.
    """
    return _ops.batch_norm.default(input, weight, bias, running_mean, running_var, training, eps)


def batch_norm_backward(
    grad: Tensor, input: Tensor, weight: Optional[Tensor], mean: Tensor, covariance: Tensor, training: bool,
    output_mask: Sequence[bool] = (True, True, True), grad_sums: Optional[Tensor] = None, count: int = -1,
) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """(grad_input, grad_weight, grad_bias). grad_sums [6, C] float64 and count, when given, replace the
    local per-channel gradient sums and element count (statistics spanning several processes)."""
    return _ops.batch_norm_backward.default(grad, input, weight, mean, covariance, training, list(output_mask),
                                            grad_sums, count)


def batch_norm_stats(input: Tensor) -> Tuple[Tensor, Tensor]:
    """Local per-channel (mean [2, C], biased covariance [2, 2, C] without eps), float64; not differentiable."""
    return _ops.batch_norm_stats.default(input)


def batch_norm_grad_sums(grad: Tensor, input: Tensor, mean: Tensor) -> Tensor:
    """Local per-channel gradient sums [6, C] float64: sum g re, sum g im, sum g x'^T (x' = input - mean)."""
    return _ops.batch_norm_grad_sums.default(grad, input, mean)


def _real_of(t):
    return torch.float64 if t.dtype == torch.complex128 else torch.float32


@torch.library.register_fake("cplxfast::batch_norm")
def _batch_norm_fake(input, weight, bias, running_mean, running_var, training, eps):
    torch._check(input.dim() >= 2, lambda: "cplxfast.batch_norm: input must be [B, C, *]")
    C = input.shape[1]
    real = _real_of(input)
    if training:
        return torch.empty_like(input), input.new_empty((2, C), dtype=real), input.new_empty((2, 2, C), dtype=real)
    return torch.empty_like(input), input.new_empty((0,), dtype=real), input.new_empty((0,), dtype=real)


@torch.library.register_fake("cplxfast::batch_norm_stats")
def _batch_norm_stats_fake(input):
    C = input.shape[1]
    return input.new_empty((2, C), dtype=torch.float64), input.new_empty((2, 2, C), dtype=torch.float64)


@torch.library.register_fake("cplxfast::batch_norm_grad_sums")
def _batch_norm_grad_sums_fake(grad, input, mean):
    return input.new_empty((6, input.shape[1]), dtype=torch.float64)


@torch.library.register_fake("cplxfast::batch_norm_backward")
def _batch_norm_backward_fake(grad, input, weight, mean, covariance, training, output_mask, grad_sums=None, count=-1):
    C = input.shape[1]
    real = _real_of(input)
    return (
        torch.empty_like(input) if output_mask[0] else None,
        input.new_empty((2, 2, C), dtype=real) if output_mask[1] else None,
        input.new_empty((2, C), dtype=real) if output_mask[2] else None,
    )


# ---------------------------------------------------------------------------------- reparam
def gaussian_reparam(mu: Tensor, s2: Tensor) -> Tuple[Tensor, Tensor]:
    """(out, rng): out = mu + e sqrt(max(s2, 1e-8)), e complex standard normal (each part N(0, 1/2))
    drawn in the kernel from torch's default generator of mu's device; rng (int64 [2], on mu's
    device) is the generator state it used. Differentiable in mu and s2."""
    return _ops.gaussian_reparam.default(mu, s2)


def gaussian_reparam_backward(grad: Tensor, s2: Tensor, rng: Tensor) -> Tensor:
    """grad_s2 = Re(conj(g) e) / (2 sqrt(s2)) where s2 > 1e-8 (else 0), with the forward's noise e
    drawn again from rng; s2 must be the forward's, in its layout (which orders the noise)."""
    return _ops.gaussian_reparam_backward.default(grad, s2, rng)


def _is_dense(t):
    """Tensor.is_non_overlapping_and_dense(): its elements fill a block of memory, each once."""
    if any(sz == 0 for sz in t.shape):
        return True
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _noise_order_like(s2, dtype=None):
    """An empty tensor in the layout the kernels give s2-shaped results (s2's when it is dense)."""
    if _is_dense(s2):
        return torch.empty_strided(s2.shape, s2.stride(), dtype=dtype or s2.dtype, device=s2.device)
    return torch.empty(s2.shape, dtype=dtype or s2.dtype, device=s2.device)


@torch.library.register_fake("cplxfast::gaussian_reparam")
def _gaussian_reparam_fake(mu, s2):
    torch._check(mu.shape == s2.shape, lambda: f"cplxfast.gaussian_reparam: s2 has shape {tuple(s2.shape)} but mu "
                                               f"has shape {tuple(mu.shape)}")
    return _noise_order_like(s2, mu.dtype), mu.new_empty((2,), dtype=torch.int64)


@torch.library.register_fake("cplxfast::gaussian_reparam_backward")
def _gaussian_reparam_backward_fake(grad, s2, rng):
    return _noise_order_like(s2)


# ------------------------------------------------------------------ the Gaussian layers, fused
def linear_gaussian(
    x: Tensor, weight_re: Tensor, weight_im: Tensor, bias_re: Optional[Tensor], bias_im: Optional[Tensor],
    log_sigma2: Tensor, algorithm: Optional[str] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """(out, s2, rng) of a complex Gaussian (variational dropout) linear layer in training:
    out = mu + e sqrt(max(s2, 1e-8)) with mu = linear(x, W, b), s2 = linear(|x|^2, exp(log_sigma2)),
    e drawn as by :func:`gaussian_reparam` (same noise from the same generator state); |x|^2 and
    the noise fused into the 3M passes. Differentiable in x, the weight and bias parts and
    log_sigma2; s2 and rng are not differentiated."""
    return _ops.linear_gaussian.default(x, weight_re, weight_im, bias_re, bias_im, log_sigma2,
                                        _config.resolve(algorithm))


def conv_gaussian(
    x: Tensor, weight_re: Tensor, weight_im: Tensor, bias_re: Optional[Tensor], bias_im: Optional[Tensor],
    log_sigma2: Tensor, stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], groups: int = 1,
    algorithm: Optional[str] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """The same for a convolution (not transposed, symmetric zero padding):
    mu = conv(x, W) + b, s2 = conv(|x|^2, exp(log_sigma2)) with no bias."""
    return _ops.conv_gaussian.default(x, weight_re, weight_im, bias_re, bias_im, log_sigma2, list(stride),
                                      list(padding), list(dilation), groups, _config.resolve(algorithm))


def _check_log_sigma2(op, log_sigma2, weight_re):
    torch._check(tuple(log_sigma2.shape) == tuple(weight_re.shape),
                 lambda: f"{op}: log_sigma2 has shape {tuple(log_sigma2.shape)} but the weight has shape "
                         f"{tuple(weight_re.shape)}")


@torch.library.register_fake("cplxfast::linear_gaussian")
def _linear_gaussian_fake(x, weight_re, weight_im, bias_re, bias_im, log_sigma2, algorithm):
    _check_log_sigma2("cplxfast.linear_gaussian", log_sigma2, weight_re)
    out = _linear_fake(x, weight_re, weight_im, bias_re, bias_im, algorithm)
    return out, torch.empty_like(out, dtype=weight_re.dtype), x.new_empty((2,), dtype=torch.int64)


@torch.library.register_fake("cplxfast::conv_gaussian")
def _conv_gaussian_fake(x, weight_re, weight_im, bias_re, bias_im, log_sigma2, stride, padding, dilation, groups,
                        algorithm):
    _check_log_sigma2("cplxfast.conv_gaussian", log_sigma2, weight_re)
    out = _conv_fake(x, weight_re, weight_im, bias_re, bias_im, stride, padding, dilation, False, [0] * len(stride),
                     groups, algorithm)
    return out, torch.empty_like(out, dtype=weight_re.dtype), x.new_empty((2,), dtype=torch.int64)


def _gaussian_grads_fake(x_grad, weight_re, log_sigma2, output_mask):
    grad_w = [torch.empty_like(weight_re, memory_format=torch.contiguous_format) if output_mask[1] else None
              for _ in range(2)]
    grad_b = [weight_re.new_empty((weight_re.shape[0],)) if output_mask[2] else None for _ in range(2)]
    grad_s = torch.empty_like(log_sigma2, memory_format=torch.contiguous_format) if output_mask[3] else None
    return x_grad if output_mask[0] else None, *grad_w, *grad_b, grad_s


@torch.library.register_fake("cplxfast::linear_gaussian_backward")
def _linear_gaussian_backward_fake(grad, x, weight_re, weight_im, log_sigma2, s2, rng, algorithm, output_mask):
    return _gaussian_grads_fake(x.new_empty(x.shape), weight_re, log_sigma2, output_mask)


@torch.library.register_fake("cplxfast::conv_gaussian_backward")
def _conv_gaussian_backward_fake(grad, x, weight_re, weight_im, log_sigma2, s2, rng, stride, padding, dilation,
                                 groups, algorithm, output_mask):
    grad_x = x.new_empty(x.shape).contiguous(memory_format=_activation_format(x))
    return _gaussian_grads_fake(grad_x, weight_re, log_sigma2, output_mask)
