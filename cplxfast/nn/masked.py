"""Layers with a fixed sparsity mask (cplxmodule.nn.masked): the same names, signatures,
parameters, ``mask`` buffer, state_dict keys and maths, on the fused ops for the complex ones.

A layer's ``mask`` is None (the layer is not sparse yet, and its forward raises, as cplxmodule's
does) or a tensor of the weight's shape, dtype and device (a broadcastable mask is expanded and
copied when it is set). It is set by assignment, ``mask_()``, :func:`deploy_masks` or a state_dict
holding ``<layer>.mask``; a None mask has no state_dict key. The forward uses W * mask, so entries
where the mask is zero get zero gradient; the complex layers pass the mask to the fused ops, which
apply it where they read the weight (no masked copy of it per step).
"""
import torch
import torch.nn.functional as F

from .conv import CplxConv1d, CplxConv2d, CplxConv3d
from .linear import CplxBilinear, CplxLinear
from .sparsity import SparsityStats, _n_dropped_complex, count_kept, library_kinds


class BaseMasked(torch.nn.Module):
    """Base of the masked layers: the ``mask`` buffer, ``is_sparse`` and ``mask_``. Place it after the
    layer class among the bases (its ``__init__`` registers the buffer)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("mask", None)

    @property
    def is_sparse(self):
        """Whether the layer has a mask."""
        return isinstance(self.mask, torch.Tensor)

    def _weight_like(self):
        """A tensor with the weight's dtype and device (a complex layer's real part)."""
        w = self.weight
        return w if isinstance(w, torch.Tensor) else w.real

    def mask_(self, mask):
        """Set (a tensor, broadcast to the weight's shape, moved to its device and dtype, detached) or
        remove (None) the mask; returns the layer."""
        if mask is not None and not isinstance(mask, torch.Tensor):
            raise TypeError(f"`mask` must be either a Tensor or `None`. Got {type(mask).__name__}.")
        if mask is not None:
            like = self._weight_like()
            mask = mask.detach().to(like.device, like.dtype).expand(like.shape).contiguous()
            self.register_buffer("mask", mask)
        elif self.is_sparse:
            del self.mask
            self.register_buffer("mask", None)
        return self

    def __setattr__(self, name, value):
        if name != "mask":
            return super().__setattr__(name, value)
        self.mask_(value)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """The mask key, when present, sets (or with None removes) the mask; when absent, a strict load
        reports it missing and a non-strict one keeps the current mask."""
        key = prefix + "mask"
        super()._load_from_state_dict({k: v for k, v in state_dict.items() if k != key}, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys, error_msgs)
        reported = key in missing_keys  # torch reports a registered (non-None) mask buffer as missing
        if key in state_dict:
            if reported:
                missing_keys.remove(key)
            self.mask_(state_dict[key])
        elif strict:
            if not reported:
                missing_keys.append(key)
        elif reported:
            missing_keys.remove(key)

    def _checked_mask(self):
        if not self.is_sparse:
            raise RuntimeError(f"`{type(self).__name__}` has no sparsity mask. Please, either set a mask attribute, "
                               f"or call `deploy_masks()`.")
        return self.mask


class _RealMasked(BaseMasked, SparsityStats):
    __sparsity_ignore__ = ("mask",)

    @property
    def weight_masked(self):
        """weight * mask (RuntimeError without a mask)."""
        return self.weight * self._checked_mask()

    def sparsity(self, *, hard=True, **kwargs):
        kept = count_kept(torch.gt(self.mask, 0) if hard else self.mask) if self.is_sparse else self.weight.numel()
        return [(id(self.weight), float(self.weight.numel()) - kept)]


class _CplxMasked(BaseMasked, SparsityStats):
    """The complex layers: the fused ops take the mask (``weight_mask``) and apply it in the passes
    that already read the weight and write its gradient, so no masked copy of the weight is made
    (CplxBilinear, plain PyTorch, multiplies the parts)."""

    __sparsity_ignore__ = ("mask",)

    @property
    def weight_masked(self):
        """The masked weight as a complex tensor (RuntimeError without a mask)."""
        mask = self._checked_mask()
        return torch.complex(self.weight.real * mask, self.weight.imag * mask)

    def _weight_mask(self):
        return self._checked_mask()

    def sparsity(self, *, hard=True, **kwargs):
        weight = self.weight
        kept = count_kept(torch.gt(self.mask, 0) if hard else self.mask) if self.is_sparse else weight.real.numel()
        return _n_dropped_complex(weight, kept)


class LinearMasked(_RealMasked, torch.nn.Linear):
    """torch.nn.Linear with weight * mask."""

    def forward(self, input):
        return F.linear(input, self.weight_masked, self.bias)


class BilinearMasked(_RealMasked, torch.nn.Bilinear):
    """torch.nn.Bilinear with weight * mask."""

    def forward(self, input1, input2):
        return F.bilinear(input1, input2, self.weight_masked, self.bias)


class _RealConvMasked(_RealMasked):
    def forward(self, input):
        # cplxmodule's: zero padding whatever padding_mode says.
        return self._conv(input, self.weight_masked, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1dMasked(_RealConvMasked, torch.nn.Conv1d):
    """torch.nn.Conv1d with weight * mask."""
    _conv = staticmethod(F.conv1d)


class Conv2dMasked(_RealConvMasked, torch.nn.Conv2d):
    """torch.nn.Conv2d with weight * mask."""
    _conv = staticmethod(F.conv2d)


class Conv3dMasked(_RealConvMasked, torch.nn.Conv3d):
    """torch.nn.Conv3d with weight * mask."""
    _conv = staticmethod(F.conv3d)


class CplxLinearMasked(_CplxMasked, CplxLinear):
    """:class:`cplxfast.nn.CplxLinear` with W * mask."""


class CplxBilinearMasked(_CplxMasked, CplxBilinear):
    """:class:`cplxfast.nn.CplxBilinear` with W * mask."""


class CplxConv1dMasked(_CplxMasked, CplxConv1d):
    """:class:`cplxfast.nn.CplxConv1d` with W * mask."""


class CplxConv2dMasked(_CplxMasked, CplxConv2d):
    """:class:`cplxfast.nn.CplxConv2d` with W * mask."""


class CplxConv3dMasked(_CplxMasked, CplxConv3d):
    """:class:`cplxfast.nn.CplxConv3d` with W * mask."""


def _masked_kinds():
    return library_kinds(BaseMasked, "cplxmodule.nn.masked.base", "BaseMasked")


def is_sparse(module):
    """Whether ``module`` is a masked layer (cplxfast's or cplxmodule's) with a mask set."""
    return isinstance(module, _masked_kinds()) and module.is_sparse


def named_masks(module, prefix=""):
    """(name, mask or None) of every masked layer in ``module``."""
    kinds = _masked_kinds()
    for name, mod in module.named_modules(prefix=prefix):
        if isinstance(mod, kinds):
            yield name, mod.mask


def deploy_masks(module, *, state_dict=None, prefix="", reset=False):
    """Set the masks of ``module``'s masked layers from ``state_dict`` ({"<layer>.mask": tensor or None},
    as :func:`cplxfast.nn.relevance.compute_ard_masks` makes); with ``reset``, layers without an entry
    lose their mask. Returns ``module``."""
    if not isinstance(state_dict, dict) or not isinstance(module, torch.nn.Module):
        return module
    kinds = _masked_kinds()
    for name, mod in module.named_modules(prefix=prefix):
        if isinstance(mod, kinds):
            key = name + ("." if name else "") + "mask"
            if key in state_dict:
                mod.mask = state_dict[key]
            elif reset:
                mod.mask = None
    return module


def binarize_masks(state_dict, masks):
    """(state_dict with every weight that has a mask multiplied by it, -0 cleared to +0; the masks as
    0/1 of their dtype): soft masks folded into the weights."""
    with torch.no_grad():
        out = {}
        for name, tensor in state_dict.items():
            if "weight" in name:
                key = name.rsplit("weight", 1)[0] + "mask"
                if key in masks:
                    tensor = tensor * masks[key].to(tensor)
                    tensor[abs(tensor) == 0] = 0
            out[name] = tensor
        return out, {name: torch.ne(mask, 0).to(mask) for name, mask in masks.items()}


__all__ = [
    "BaseMasked", "BilinearMasked", "Conv1dMasked", "Conv2dMasked", "Conv3dMasked", "CplxBilinearMasked",
    "CplxConv1dMasked", "CplxConv2dMasked", "CplxConv3dMasked", "CplxLinearMasked", "LinearMasked", "binarize_masks",
    "deploy_masks", "is_sparse", "named_masks",
]
