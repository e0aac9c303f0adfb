"""Complex convolution layers: drop-ins for cplxmodule.nn.CplxConv{1,2,3}d and CplxConvTranspose{1,2,3}d."""
import math

import torch
from torch.nn.modules.conv import _ConvTransposeNd

from .. import _config, ops
from ..functional import PADDING_MODES, _ntuple, conv_padding
from ._complex import CplxModule, CplxParameter, to_complex
from .linear import AlgorithmOption, cplx_fans, cplx_kaiming_uniform_


class _CplxConvNd(CplxModule):
    """Shared by the convolution layers: cplxmodule's parameters, init and state_dict layout."""

    _dims = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, transposed, output_padding,
                 groups, bias, padding_mode, algorithm, dtype, device):
        super().__init__()
        n, name = self._dims, type(self).__name__
        if groups < 1:
            raise ValueError(f"{name}: groups must be a positive integer, got {groups}")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if transposed and padding_mode != "zeros":
            # torch.nn.ConvTranspose*d's rule. cplxmodule accepted "circular" here, with a padding of
            # the input that is not torch's meaning (see SEMANTICS.md).
            raise ValueError(f'{name}: only "zeros" padding_mode is supported for transposed convolution')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _ntuple(kernel_size, n, "kernel_size")
        self.stride = _ntuple(stride, n, "stride")
        self.dilation = _ntuple(dilation, n, "dilation")
        if isinstance(padding, str):
            if transposed or padding not in ("same", "valid"):
                raise ValueError(f"{name}: invalid padding {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = _ntuple(padding, n, "padding")
        self.transposed, self.output_padding = transposed, _ntuple(output_padding, n, "output_padding")
        self.groups, self.padding_mode = groups, padding_mode
        self.algorithm = None if algorithm is None else _config.resolve(algorithm)
        shape = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
        self.weight = CplxParameter.empty(*shape, *self.kernel_size, dtype=dtype, device=device)
        self.bias = CplxParameter.empty(out_channels, dtype=dtype, device=device) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        cplx_kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = cplx_fans(self.weight.shape)
            bound = 1 / math.sqrt(fan_in)
            torch.nn.init.uniform_(self.bias.real, -bound, bound)
            torch.nn.init.uniform_(self.bias.imag, -bound, bound)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._dims:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._dims:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._dims:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        if self.algorithm is not None:
            s += f", algorithm={self.algorithm!r}"
        return s


class _CplxConv(_CplxConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", *, algorithm=None, dtype=None, device=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0, groups, bias,
                         padding_mode, algorithm, dtype, device)

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        return rewrap(self._forward_complex(z))

    def _conv_operands(self, z):
        """(z padded as the op takes it, its symmetric padding, w_re, w_im, b_re, b_im), z's rank checked."""
        if z.dim() != self._dims + 2:
            raise ValueError(f"{type(self).__name__}: expected a {self._dims + 2}-D input [batch, channels, "
                             f"*{self._dims} spatial dims], got shape {tuple(z.shape)}")
        parts = self._weight_and_bias_parts(z)
        return (*conv_padding(z, self.kernel_size, self.stride, self.padding, self.dilation, self.padding_mode),
                *parts)

    def _forward_complex(self, z):
        z, pad, w_re, w_im, b_re, b_im = self._conv_operands(z)
        return ops.conv(z, w_re, w_im, b_re, b_im, self.stride, pad, self.dilation, False, self.output_padding,
                        self.groups, self.algorithm, None, self._weight_mask())


class _CplxConvTranspose(_CplxConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, output_padding=0,
                 groups=1, bias=None, padding_mode="zeros", *, algorithm=None, dtype=None, device=None):
        # cplxmodule's argument order (dilation before output_padding) and no bias by default.
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, True, output_padding,
                         groups, bool(bias), padding_mode, algorithm, dtype, device)

    def forward(self, input, output_size=None):
        z, rewrap = to_complex(input, type(self).__name__)
        if z.dim() != self._dims + 2:
            raise ValueError(f"{type(self).__name__}: expected a {self._dims + 2}-D input [batch, channels, "
                             f"*{self._dims} spatial dims], got shape {tuple(z.shape)}")
        w_re, w_im, b_re, b_im = self._weight_and_bias_parts(z)
        output_padding = _ConvTransposeNd._output_padding(
            self, z, output_size, list(self.stride), list(self.padding), list(self.kernel_size), self._dims,
            list(self.dilation))
        return rewrap(ops.conv(z, w_re, w_im, b_re, b_im, self.stride, self.padding, self.dilation, True,
                               output_padding, self.groups, self.algorithm, None, self._weight_mask()))


class CplxConv1d(_CplxConv):
    """Complex 1-d convolution; cplxmodule's signature, parameters and state_dict, torch's semantics
    (padding ints, "same" or "valid"; padding_mode zeros, reflect, replicate or circular)."""
    _dims = 1


class CplxConv2d(_CplxConv):
    """Complex 2-d convolution; see :class:`CplxConv1d`."""
    _dims = 2


class CplxConv3d(_CplxConv):
    """Complex 3-d convolution; see :class:`CplxConv1d`."""
    _dims = 3


class CplxConvTranspose1d(_CplxConvTranspose):
    """Complex 1-d transposed convolution; cplxmodule's signature (dilation before output_padding, bias
    off by default), forward(input, output_size=None)."""
    _dims = 1


class CplxConvTranspose2d(_CplxConvTranspose):
    """Complex 2-d transposed convolution; see :class:`CplxConvTranspose1d`."""
    _dims = 2


class CplxConvTranspose3d(_CplxConvTranspose):
    """Complex 3-d transposed convolution; see :class:`CplxConvTranspose1d`."""
    _dims = 3


# ---- torch's own convolution layers with complex parameters ---------------------------------------------------------

def _unbatched(layer, z, n):
    """torch's conv layers take [C, *spatial] as one sample; the op wants a batch."""
    if z.dim() == n + 1:
        return z.unsqueeze(0), lambda out: out.squeeze(0)
    if z.dim() != n + 2:
        raise ValueError(f"{type(layer).__name__}: expected a {n + 1}-D (unbatched) or {n + 2}-D (batched) input, "
                         f"got shape {tuple(z.shape)}")
    return z, lambda out: out


class _NativeConv(AlgorithmOption):
    """torch's ConvNd on the fused ops when its parameters are complex: torch's signature, parameter
    names, init and state_dict; the weight and bias are read in place and get one complex gradient
    each (the ``conv_complex`` ops). With real parameters it is torch's layer."""

    def forward(self, input):
        if not self.weight.is_complex():
            return super().forward(input)
        z, rewrap = to_complex(input, type(self).__name__)
        z, unbatch = _unbatched(self, z, len(self.kernel_size))
        z, pad = conv_padding(z, self.kernel_size, self.stride, self.padding, self.dilation, self.padding_mode)
        out = ops.conv_complex(z, self.weight, self.bias, self.stride, pad, self.dilation, False, self.output_padding,
                               self.groups, self.algorithm)
        return rewrap(unbatch(out))


class _NativeConvTranspose(AlgorithmOption):
    """torch's ConvTransposeNd on the fused ops when its parameters are complex; see :class:`_NativeConv`."""

    def forward(self, input, output_size=None):
        if not self.weight.is_complex():
            return super().forward(input, output_size)
        z, rewrap = to_complex(input, type(self).__name__)
        n = len(self.kernel_size)
        if self.padding_mode != "zeros":
            raise ValueError(f"Only 'zeros' padding mode is supported for {type(self).__name__}")
        output_padding = self._output_padding(z, output_size, list(self.stride), list(self.padding),
                                              list(self.kernel_size), n, list(self.dilation))
        z, unbatch = _unbatched(self, z, n)
        out = ops.conv_complex(z, self.weight, self.bias, self.stride, self.padding, self.dilation, True,
                               output_padding, self.groups, self.algorithm)
        return rewrap(unbatch(out))


class Conv1d(_NativeConv, torch.nn.Conv1d):
    """torch.nn.Conv1d; with ``dtype=torch.complex64``/``complex128`` it runs the fused complex kernels
    (3M/4M GEMM-based, or the depthwise kernel for groups == channels). ``algorithm`` as for
    :class:`CplxConv1d`."""


class Conv2d(_NativeConv, torch.nn.Conv2d):
    """torch.nn.Conv2d on the fused complex kernels; see :class:`Conv1d`."""


class Conv3d(_NativeConv, torch.nn.Conv3d):
    """torch.nn.Conv3d on the fused complex kernels; see :class:`Conv1d`."""


class ConvTranspose1d(_NativeConvTranspose, torch.nn.ConvTranspose1d):
    """torch.nn.ConvTranspose1d (torch's argument order and defaults) on the fused complex kernels."""


class ConvTranspose2d(_NativeConvTranspose, torch.nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d on the fused complex kernels; see :class:`ConvTranspose1d`."""


class ConvTranspose3d(_NativeConvTranspose, torch.nn.ConvTranspose3d):
    """torch.nn.ConvTranspose3d on the fused complex kernels; see :class:`ConvTranspose1d`."""
