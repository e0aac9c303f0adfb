"""Public functional API: differentiable complex ops.

Every entry point takes native complex tensors or cplxmodule ``Cplx`` objects (anything with
.real/.imag tensors) and returns the kind its input came in, so code written against
``cplxmodule.cplx``'s functions switches by import. Weights and biases may be complex tensors
(native complex Parameters: read in place, one complex gradient each) or pairs of real parts (a
Cplx, a cplxfast/cplxmodule layer's CplxParameter: each part gets its own real gradient).
"""
import torch
import torch.nn.functional as F

from . import ops as _ops
from ._interop import _identity, parts_of, to_complex


def _to_complex(input, name):
    """(tensor, rewrap): a tensor goes to the op as it is (the op checks it: its errors are the ones
    of the bad-input table), a Cplx is combined (zero-copy when it came from a cplxfast layer)."""
    if isinstance(input, torch.Tensor):
        return input, _identity
    return to_complex(input, name)


def _weight_and_bias(weight, bias, name):
    """("complex", w, b) when the weight is a tensor (a Cplx bias is combined to one),
    else ("parts", w_re, w_im, b_re, b_im) (a complex bias is read through its real/imag views)."""
    if isinstance(weight, torch.Tensor):  # complex (a real one gets the op's error)
        if bias is not None and not isinstance(bias, torch.Tensor):
            bias = torch.complex(*parts_of(bias, name))
        return "complex", weight, bias
    w_re, w_im = parts_of(weight, name)
    b_re, b_im = (None, None) if bias is None else parts_of(bias, name)
    return "parts", w_re, w_im, b_re, b_im


def linear(input, weight, bias=None, algorithm=None):
    """Complex linear map y = x W^T + b (no conjugation), differentiable.

    input [*, in], weight [out, in], bias [out] or None: complex64 or complex128 (or Cplx), same
    precision and device; weight and bias are read in place (no copy). ``algorithm``: "auto", "3m"
    or "4m" (see :func:`cplxfast.set_default_algorithm`); None uses the global default.
    """
    z, rewrap = _to_complex(input, "cplxfast.functional.linear")
    kind, *params = _weight_and_bias(weight, bias, "cplxfast.functional.linear")
    if kind == "complex":
        return rewrap(_ops.linear_complex(z, *params, algorithm))
    return rewrap(_ops.linear(z, *params, algorithm))


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _ntuple(value, n, name):
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n or not all(isinstance(v, int) for v in value):
        raise ValueError(f"{name} must be an int or {n} ints, got {value!r}")
    return value


def conv_padding(input, kernel_size, stride, padding, dilation, padding_mode="zeros"):
    """(input, symmetric zero padding) for the conv op, with torch's conv padding semantics.

    ``padding``: ints, "valid" or "same" (stride 1 only; when the total padding of a dim is odd the
    extra element goes to the end, as in torch). ``padding_mode`` "reflect", "replicate" or "circular"
    pads ``input`` here (torch's meaning of each mode); "zeros" leaves symmetric padding to the op and
    pads here only the odd remainder of "same".
    """
    n = len(kernel_size)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * n
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            pads = []
            for d, k in zip(dilation, kernel_size):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
        else:
            raise ValueError(f"padding must be an int, a tuple of ints, 'valid' or 'same', got {padding!r}")
    else:
        pads = [(p, p) for p in _ntuple(padding, n, "padding")]
        if any(p < 0 for p, _ in pads):
            raise ValueError(f"padding must be non-negative, got {padding!r}")
    if padding_mode == "zeros":
        symmetric = [min(lo, hi) for lo, hi in pads]
        extra = [(lo - m, hi - m) for (lo, hi), m in zip(pads, symmetric)]
        if any(lo or hi for lo, hi in extra):
            input = F.pad(input, [v for lo_hi in reversed(extra) for v in lo_hi])
        return input, list(symmetric)
    return F.pad(input, [v for lo_hi in reversed(pads) for v in lo_hi], mode=padding_mode), [0] * n


def _conv_input(input, n, name):
    if isinstance(input, torch.Tensor) and not input.is_complex():
        raise TypeError(f"{name}: expected a complex tensor, got {input.dtype}")
    z, rewrap = _to_complex(input, name)
    if z.dim() != n + 2:
        raise ValueError(f"{name}: expected a {n + 2}-D input [batch, channels, *{n} spatial dims], got shape "
                         f"{tuple(z.shape)}")
    return z, rewrap


def _conv(n, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm):
    z, rewrap = _conv_input(input, n, f"conv{n}d")
    stride, dilation = _ntuple(stride, n, "stride"), _ntuple(dilation, n, "dilation")
    z, pad = conv_padding(z, weight.real.shape[2:], stride, padding, dilation, padding_mode)
    return rewrap(_conv_op(z, weight, bias, stride, pad, dilation, False, (0,) * n, groups, algorithm))


def _conv_transpose(n, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm):
    z, rewrap = _conv_input(input, n, f"conv_transpose{n}d")
    return rewrap(_conv_op(z, weight, bias, _ntuple(stride, n, "stride"), _ntuple(padding, n, "padding"),
                           _ntuple(dilation, n, "dilation"), True, _ntuple(output_padding, n, "output_padding"),
                           groups, algorithm))


def _conv_op(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, algorithm):
    """A complex weight (e.g. a complex nn.Parameter) goes to the complex-weight op: read in place,
    one complex gradient (not the gradients of .real/.imag views). A weight given as parts (a
    layer's CplxParameter, a Cplx) goes to the parts op."""
    kind, *params = _weight_and_bias(weight, bias, "cplxfast.functional.conv")
    op = _ops.conv_complex if kind == "complex" else _ops.conv
    return op(input, *params, stride, padding, dilation, transposed, output_padding, groups, algorithm)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm=None):
    """Complex 1-d convolution with torch.nn.functional.conv1d's semantics (complex input, weight, bias)."""
    return _conv(1, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm=None):
    """Complex 2-d convolution with torch.nn.functional.conv2d's semantics (complex input, weight, bias).

    ``padding_mode`` as in torch.nn.Conv2d; ``algorithm`` "auto", "3m" or "4m" (None: the global default).
    """
    return _conv(2, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm=None):
    """Complex 3-d convolution with torch.nn.functional.conv3d's semantics (complex input, weight, bias)."""
    return _conv(3, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm=None):
    """Complex 1-d transposed convolution with torch.nn.functional.conv_transpose1d's semantics."""
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm=None):
    """Complex 2-d transposed convolution with torch.nn.functional.conv_transpose2d's semantics."""
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm=None):
    """Complex 3-d transposed convolution with torch.nn.functional.conv_transpose3d's semantics."""
    return _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm)




def modrelu(input, threshold, eps=1e-5):
    """cplxmodule's modReLU: input * relu(1 - threshold / max(|input|, eps)), differentiable.

    ``threshold`` is a real tensor (or a float) broadcast against the input's TRAILING dims, e.g.
    shape [C, 1, 1] for per-channel thresholds on [B, C, H, W]. Arjovsky et al.'s
    relu(|z| + b) z/|z| is the same map with threshold = -b. ``eps``, the modulus floor, is
    cplxmodule's 1e-5 by default (value and gradient at z = 0 are then 0 unless threshold < eps);
    eps = 0 is the polar form relu(|z| - threshold) z/|z| with relu(-threshold) at z = 0 (torchcvnn's).
    """
    z, rewrap = _to_complex(input, "cplxfast.functional.modrelu")
    if not isinstance(threshold, torch.Tensor):
        real = torch.float64 if z.dtype == torch.complex128 else torch.float32
        threshold = torch.tensor([float(threshold)], dtype=real, device=z.device)
    return rewrap(_ops.modrelu(z, threshold, eps))


def batch_norm(input, running_mean=None, running_var=None, weight=None, bias=None, training=True, momentum=0.1,
               eps=1e-5):
    """cplxmodule's complex batch norm (2x2 whitening per channel of [B, C, *] input).

    Uses the batch statistics when training (or when no running statistics are given) and then
    updates running_mean [2, C] and running_var [2, 2, C] in place with ``momentum``; otherwise
    normalises with the running statistics. weight [2, 2, C] and bias [2, C] are optional.
    """
    z, rewrap = _to_complex(input, "cplxfast.functional.batch_norm")
    if training or running_mean is None:
        out, mean, cov = _ops.batch_norm(z, weight, bias, None, None, True, eps)
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                running_mean.lerp_(mean.to(running_mean.dtype), momentum)
                running_var.lerp_(cov.to(running_var.dtype), momentum)
        return rewrap(out)
    return rewrap(_ops.batch_norm(z, weight, bias, running_mean, running_var, False, eps)[0])


__all__ = [
    "batch_norm", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear",
    "modrelu",
]
