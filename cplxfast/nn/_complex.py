"""The complex parameter container whose state_dict layout matches cplxmodule's, and the base of
layers holding them. The interop with cplxmodule's Cplx lives in cplxfast._interop.
"""
import torch

from .._interop import to_complex  # noqa: F401  (the layers import it from here)

_COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def check_dtype(layer, z, real_param):
    """TypeError unless complex input z matches the precision of the layer's real parameter."""
    if z.dtype != _COMPLEX_OF.get(real_param.dtype):
        raise TypeError(
            f"{layer}: input is {z.dtype} but the layer's parameters are {real_param.dtype}; convert one "
            f"with .to() (complex64 goes with float32, complex128 with float64)"
        )


class CplxParameter(torch.nn.ParameterDict):
    """A complex parameter stored as two real Parameters ``real`` and ``imag``.

    Same layout as cplxmodule's CplxParameter: state_dict keys ``<name>.real``/``<name>.imag``,
    registered imag first (cplxmodule's order, which optimizer state_dicts are keyed by).

    The two Parameters are strided views of ONE interleaved complex buffer, so the ops can hand
    them to the backend's complex GEMM without building a complex copy (they detect the layout
    and fall back to a copy for any other). ``module.to()``/``.double()``/``.cuda()`` keep the
    layout (see ``_apply``).
    """

    def __init__(self, real, imag):
        if real.shape != imag.shape:
            raise ValueError(f"CplxParameter: real shape {tuple(real.shape)} != imag shape {tuple(imag.shape)}")
        super().__init__({"imag": torch.nn.Parameter(imag), "real": torch.nn.Parameter(real)})
        self._interleave()

    @classmethod
    def empty(cls, *shape, dtype=None, device=None):
        return cls(torch.empty(*shape, dtype=dtype, device=device), torch.empty(*shape, dtype=dtype, device=device))

    @property
    def shape(self):
        return self.real.shape

    def complex(self):
        """The parameter as one differentiable complex tensor."""
        return torch.complex(self.real, self.imag)

    def is_interleaved(self):
        re, im = self.real, self.imag
        return (
            re.shape == im.shape and re.stride() == im.stride() and re.untyped_storage().data_ptr() == im.untyped_storage().data_ptr()
            and im.storage_offset() == re.storage_offset() + 1
        )

    def _interleave(self):
        """Re-home real and imag as views of one interleaved complex buffer (values kept)."""
        re, im = self.real, self.imag
        if re.dtype not in (torch.float32, torch.float64) or re.dtype != im.dtype or self.is_interleaved():
            return
        with torch.no_grad():
            buf = torch.complex(re.detach(), im.detach())
        re.data, im.data = buf.real, buf.imag

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self._interleave()
        return result

    def extra_repr(self):
        return ", ".join(map(str, self.real.shape))


def _promote_real_checkpoint(module, state_dict, prefix, *args):
    """load_state_dict pre-hook: a plain real tensor stored under a complex parameter's name (a
    checkpoint of the real layer, e.g. torch.nn.Linear's ``weight``) loads as the real part, with
    the imaginary part zero."""
    for name, child in module.named_children():
        key = prefix + name
        if isinstance(child, CplxParameter) and key in state_dict and key + ".real" not in state_dict:
            real = state_dict.pop(key)
            state_dict[key + ".real"] = real
            state_dict[key + ".imag"] = torch.zeros_like(real)


class CplxModule(torch.nn.Module):
    """Base of layers with CplxParameters: checkpoints of the real layer load into them."""

    def __init__(self):
        super().__init__()
        self._register_load_state_dict_pre_hook(_promote_real_checkpoint, with_module=True)

    def _weight_mask(self):
        """The real mask the weight is multiplied by (masked layers), or None."""
        return None

    def _weight_and_bias_parts(self, z):
        """(weight.real, weight.imag, bias.real, bias.imag) Parameters (None for an absent bias),
        after checking that complex input z matches their precision.

        Plain dict lookups instead of nn.Module attribute access: this runs on every forward,
        and on a small layer the attribute path measured ~2 us of a ~200 us step."""
        modules = self._modules
        weight = modules["weight"]._parameters
        w_re = weight["real"]
        check_dtype(type(self).__name__, z, w_re)
        bias = modules.get("bias")
        if bias is None:
            return w_re, weight["imag"], None, None
        bias = bias._parameters
        return w_re, weight["imag"], bias["real"], bias["imag"]
