"""Variational dropout and automatic relevance determination layers (cplxmodule.nn.relevance,
with its extensions): the same names, signatures, parameters (``log_sigma2``), state_dict keys and
maths (SEMANTICS.md, "Sparsification layers"); the complex layers run on the fused ops.

Training forward of the Gaussian layers (the local reparametrisation trick):
    mu = layer(x),  s2 = layer'(|x|^2; exp(log_sigma2), no bias),  out = mu + e sqrt(max(s2, 1e-8))
with e complex standard normal (each part N(0, 1/2)) drawn in the kernel from torch's generator
(torch.manual_seed repeats it; the backward draws it again rather than storing it). The complex
linear and convolution layers run it as one fused op (``linear_gaussian``, ``conv_gaussian``): on
the 3M path |x|^2 comes out of the pass that splits x into planes and the noise is added where the
products are recombined, so mu is never written on its own; bilinear layers compute mu and s2,
then the fused ``gaussian_reparam`` noise. Eval forward: mu, the plain layer.

The utilities (penalties, named_penalties, named_relevance, compute_ard_masks) recognise
cplxmodule's layers as well as cplxfast's.
"""
import math

import torch
import torch.nn.functional as F

from .. import ops, special
from ._complex import to_complex
from .conv import CplxConv1d, CplxConv2d, CplxConv3d
from .linear import CplxBilinear, CplxLinear
from .sparsity import SparsityStats, _n_dropped_complex, count_kept, library_kinds

EULER_GAMMA = 0.5772156649015329

torch_expi = special.expi


class BaseARD(torch.nn.Module):
    """Base of the layers with a sparsifying penalty: ``penalty`` (a differentiable tensor, the
    KL divergence term of the ELBO, or the regulariser) and ``relevance(**kwargs)`` (a mask of the
    weight's shape: nonzero where an entry is kept)."""

    @property
    def penalty(self):
        raise NotImplementedError("Derived classes must compute their own penalty.")

    def relevance(self, **kwargs):
        raise NotImplementedError("Derived classes must implement a float mask of relevant coefficients.")


def _ard_kinds():
    return library_kinds(BaseARD, "cplxmodule.nn.relevance.base", "BaseARD")


def named_penalties(module, reduction="sum", prefix=""):
    """(name, penalty) of every layer with a penalty in ``module`` (each module once), reduced by
    "sum" (the ELBO's), "mean" or None (as is)."""
    if reduction is not None and reduction not in ("mean", "sum"):
        raise ValueError(f"`reduction` must be either `None`, `sum` or `mean`. Got {reduction}.")
    kinds = _ard_kinds()
    for name, mod in module.named_modules(prefix=prefix):
        if isinstance(mod, kinds):
            penalty = mod.penalty
            if reduction == "sum":
                penalty = penalty.sum()
            elif reduction == "mean":
                penalty = penalty.mean()
            yield name, penalty


def penalties(module, reduction="sum"):
    """The penalties of :func:`named_penalties`, without names."""
    for _, penalty in named_penalties(module, reduction=reduction):
        yield penalty


def named_relevance(module, prefix="", **kwargs):
    """(name, detached relevance mask) of every layer with a penalty; ``kwargs`` (threshold=, hard=)
    go to each layer's ``relevance``."""
    kinds = _ard_kinds()
    for name, mod in module.named_modules(prefix=prefix):
        if isinstance(mod, kinds):
            yield name, mod.relevance(**kwargs).detach()


def compute_ard_masks(module, *, prefix="", **kwargs):
    """{"<layer>.mask": relevance mask}: the masks for :func:`cplxfast.nn.masked.deploy_masks`."""
    if not isinstance(module, torch.nn.Module):
        return {}
    return {name + ("." if name else "") + "mask": mask for name, mask in named_relevance(module, prefix=prefix,
                                                                                           **kwargs)}


# ---- the Gaussian layers: log_sigma2, log_alpha, the reparametrised forward ---------------------------------------

def _abs2(z):
    """|z|^2 of a complex tensor (gradient 2 z, 0 at z = 0)."""
    return torch.abs(z).square()


class _Gaussian(BaseARD, SparsityStats):
    """log_sigma2 (a Parameter of the weight's shape, registered after the layer's own, initialised
    to -10), log_alpha and the relevance mask."""

    __sparsity_ignore__ = ("log_sigma2",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        w = self.weight if isinstance(self.weight, torch.Tensor) else self.weight.real
        self.log_sigma2 = torch.nn.Parameter(torch.empty_like(w, memory_format=torch.contiguous_format))
        self.reset_variational_parameters()

    def reset_variational_parameters(self):
        with torch.no_grad():
            self.log_sigma2.fill_(-10.0)

    def _weight_modulus(self):
        w = self.weight
        return abs(w) if isinstance(w, torch.Tensor) else torch.abs(torch.complex(w.real, w.imag))

    @property
    def log_alpha(self):
        """log(sigma^2 / |W|^2) = log_sigma2 - 2 log(|W| + 1e-12): the larger, the less relevant."""
        return self.log_sigma2 - 2 * torch.log(self._weight_modulus() + 1e-12)

    def relevance(self, *, threshold, **kwargs):
        """1 where log_alpha <= threshold (kept), else 0, in log_alpha's dtype."""
        with torch.no_grad():
            return torch.le(self.log_alpha, threshold).to(self.log_alpha)


class _LinearVariance:
    """s2 = F.linear(x^2, exp(log_sigma2)), x^2 = |x|^2 for complex x."""

    def _variance(self, x):
        return F.linear(self._square(x), torch.exp(self.log_sigma2))

    def _reparametrised(self, z):
        """The complex training forward in one fused op: |z|^2 from the pass that splits z, the noise
        added where the products are recombined (ops.linear_gaussian)."""
        w_re, w_im, b_re, b_im = self._weight_and_bias_parts(z)
        return ops.linear_gaussian(z, w_re, w_im, b_re, b_im, self.log_sigma2, self.algorithm)[0]


class _BilinearVariance:
    def _variance(self, x1, x2):
        return F.bilinear(self._square(x1), self._square(x2), torch.exp(self.log_sigma2))

    def _reparametrised(self, z1, z2):
        """No fused bilinear op: mu (one einsum), s2, then the fused noise."""
        return ops.gaussian_reparam(self._forward_complex(z1, z2), self._variance(z1, z2))[0]


class _ConvVariance:
    """The convolution's real twin on x^2 (same stride, padding, dilation, groups); zero padding only,
    as cplxmodule's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(f"Only `zeros` padding mode is supported. Got `{self.padding_mode}`.")

    def _variance(self, x):
        conv = (F.conv1d, F.conv2d, F.conv3d)[len(self.kernel_size) - 1]
        return conv(self._square(x), torch.exp(self.log_sigma2), None, self.stride, self.padding, self.dilation,
                    self.groups)

    def _reparametrised(self, z):
        """As _LinearVariance's, on ops.conv_gaussian (the padding as the layer's own forward gives it)."""
        z, pad, w_re, w_im, b_re, b_im = self._conv_operands(z)
        return ops.conv_gaussian(z, w_re, w_im, b_re, b_im, self.log_sigma2, self.stride, pad, self.dilation,
                                 self.groups, self.algorithm)[0]


_VARIANCES = {"Linear": _LinearVariance, "Bilinear": _BilinearVariance, "Conv1d": _ConvVariance,
              "Conv2d": _ConvVariance, "Conv3d": _ConvVariance}
KINDS = tuple(_VARIANCES)


class _CplxGaussian(_Gaussian):
    """The complex layers: in training, the kind's fused reparametrised forward (mu, s2 and the
    noise); in eval, the plain layer."""

    _square = staticmethod(_abs2)

    def forward(self, *inputs):
        zs, rewraps = zip(*(to_complex(x, type(self).__name__) for x in inputs))
        return rewraps[0](self._reparametrised(*zs) if self.training else self._forward_complex(*zs))

    def sparsity(self, *, threshold, **kwargs):
        return _n_dropped_complex(self.weight, count_kept(self.relevance(threshold=threshold)))


class _RealGaussian(_Gaussian):
    """The real layers, plain PyTorch: torch.randn_like noise (cplxmodule's, bit for bit)."""

    @staticmethod
    def _square(x):
        return x * x

    def forward(self, *inputs):
        mu = super().forward(*inputs)
        if not self.training:
            return mu
        s2 = self._variance(*inputs)
        return mu + torch.randn_like(s2) * torch.sqrt(torch.clamp(s2, 1e-8))

    def sparsity(self, *, threshold, **kwargs):
        return [(id(self.weight), self.weight.numel() - count_kept(self.relevance(threshold=threshold)))]


def _layer(name, penalty, kind, gaussian, layer, doc):
    """The class cplxmodule calls ``name``: the penalty, the kind's variance, the Gaussian forward, the layer."""
    return type(name, (penalty, _VARIANCES[kind], gaussian, layer), {"__doc__": doc, "__module__": __name__})


# ---- penalties -----------------------------------------------------------------------------------------------------

class _CplxVD:
    @property
    def penalty(self):
        """The exact KL divergence of complex VD: gamma - log_alpha - Ei(-exp(-log_alpha))
        (:func:`cplxfast.special.cplx_vd_penalty`: on the device, no cancellation)."""
        return special.cplx_vd_penalty(self.log_alpha)


class _CplxARD:
    @property
    def penalty(self):
        """The empirical-Bayes ARD penalty of complex layers: softplus(-log_alpha)."""
        return F.softplus(-self.log_alpha)


class _CplxVDScaleFree:
    @property
    def penalty(self):
        """KL divergence to the scale-free prior: log|W| - log_sigma2 - Ei(-|W|^2 / sigma^2) / 2."""
        log_abs_w = torch.log(self._weight_modulus() + 1e-12)
        return log_abs_w - self.log_sigma2 - 0.5 * torch_expi(-torch.exp(2 * log_abs_w - self.log_sigma2))


class _CplxVDApprox:
    @property
    def penalty(self):
        """Softplus-sigmoid approximation of the complex VD divergence (cplxmodule's constants)."""
        n_log_alpha = -self.log_alpha
        return F.softplus(n_log_alpha) + 0.57810 * torch.sigmoid(1.36526 * n_log_alpha - 1.45926)


class _BogusExpi(torch.autograd.Function):
    """Zeros forward, the gradient of Ei backward (cplxmodule's bogus_expi)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x) / x


class _CplxVDBogus:
    @property
    def penalty(self):
        """-log_alpha - 0 forward, with the gradient of the exact divergence."""
        log_alpha = self.log_alpha
        return -log_alpha - _BogusExpi.apply(-torch.exp(-log_alpha))


# ---- the complex layers --------------------------------------------------------------------------------------------

_CPLX_LAYERS = {"Linear": CplxLinear, "Bilinear": CplxBilinear, "Conv1d": CplxConv1d, "Conv2d": CplxConv2d,
                "Conv3d": CplxConv3d}
_CPLX_PENALTIES = {"VD": _CplxVD, "ARD": _CplxARD, "VDScaleFree": _CplxVDScaleFree, "VDApprox": _CplxVDApprox,
                   "VDBogus": _CplxVDBogus}


def _cplx_layer(kind, penalty):
    name = f"Cplx{kind}{penalty}"
    doc = (f"cplxmodule's {name}: :class:`cplxfast.nn.Cplx{kind}` (same signature) with ``log_sigma2``, the "
           f"reparametrised training forward and the {penalty} penalty (see the module docstring).")
    return _layer(name, _CPLX_PENALTIES[penalty], kind, _CplxGaussian, _CPLX_LAYERS[kind], doc)


CplxLinearVD, CplxBilinearVD, CplxConv1dVD, CplxConv2dVD, CplxConv3dVD = (_cplx_layer(k, "VD") for k in KINDS)
CplxLinearARD, CplxBilinearARD, CplxConv1dARD, CplxConv2dARD, CplxConv3dARD = (_cplx_layer(k, "ARD") for k in KINDS)
(CplxLinearVDScaleFree, CplxBilinearVDScaleFree, CplxConv1dVDScaleFree, CplxConv2dVDScaleFree,
 CplxConv3dVDScaleFree) = (_cplx_layer(k, "VDScaleFree") for k in KINDS)
CplxLinearVDApprox, CplxBilinearVDApprox, CplxConv1dVDApprox, CplxConv2dVDApprox, CplxConv3dVDApprox = (
    _cplx_layer(k, "VDApprox") for k in KINDS)
CplxLinearVDBogus, CplxBilinearVDBogus, CplxConv1dVDBogus, CplxConv2dVDBogus, CplxConv3dVDBogus = (
    _cplx_layer(k, "VDBogus") for k in KINDS)


# ---- the real layers (plain PyTorch) -------------------------------------------------------------------------------

class _RealVD:
    @property
    def penalty(self):
        """Molchanov et al.'s approximation of the real VD divergence (their constants)."""
        n_log_alpha = -self.log_alpha
        return F.softplus(n_log_alpha) / 2 + 0.63576 * torch.sigmoid(1.48695 * n_log_alpha - 1.87320)


class _RealARD:
    @property
    def penalty(self):
        """The ARD penalty of arXiv:1811.00596: softplus(-log_alpha) / 2."""
        return 0.5 * F.softplus(-self.log_alpha)


_REAL_LAYERS = {"Linear": torch.nn.Linear, "Bilinear": torch.nn.Bilinear, "Conv1d": torch.nn.Conv1d,
                "Conv2d": torch.nn.Conv2d, "Conv3d": torch.nn.Conv3d}


def _real_layer(kind, penalty):
    name = f"{kind}{penalty}"
    doc = f"cplxmodule's {name}: torch.nn.{kind} with ``log_sigma2``, the reparametrised training forward and the " \
          f"{penalty} penalty."
    return _layer(name, {"VD": _RealVD, "ARD": _RealARD}[penalty], kind, _RealGaussian, _REAL_LAYERS[kind], doc)


LinearVD, BilinearVD, Conv1dVD, Conv2dVD, Conv3dVD = (_real_layer(k, "VD") for k in KINDS)
LinearARD, BilinearARD, Conv1dARD, Conv2dARD, Conv3dARD = (_real_layer(k, "ARD") for k in KINDS)


class LinearL0(torch.nn.Linear, BaseARD, SparsityStats):
    """L0-regularised linear layer (Louizos et al. 2018), cplxmodule's: hard-concrete gates with
    parameter ``log_alpha`` (shape [out, in], [1, in] for group="input", [out, 1] for group="output"),
    one gate sample per batch for the elementwise gates."""

    __sparsity_ignore__ = ("log_alpha",)
    beta, gamma, zeta = 0.66, -0.1, 1.1

    def __init__(self, in_features, out_features, bias=True, group=None):
        super().__init__(in_features, out_features, bias=bias)
        shape = {"input": (1, in_features), "output": (out_features, 1)}.get(group, (out_features, in_features))
        self.log_alpha = torch.nn.Parameter(torch.empty(*shape))
        self.reset_variational_parameters()

    def reset_variational_parameters(self):
        with torch.no_grad():
            self.log_alpha.fill_(-2.197)  # log p - log(1 - p) for a gate closed with p = 0.9

    @property
    def penalty(self):
        """P(gate != 0) = sigmoid(-beta log(-gamma / zeta) - log_alpha)."""
        return torch.sigmoid(-self.beta * math.log(-self.gamma / self.zeta) - self.log_alpha)

    def gate(self, logit=None):
        """The hard-concrete gate clamp((zeta - gamma) s + gamma, 0, 1), s = sigmoid((logit - log_alpha) /
        beta), or sigmoid(-log_alpha) for logit None (eval)."""
        s = torch.sigmoid(-self.log_alpha) if logit is None else torch.sigmoid((logit - self.log_alpha) / self.beta)
        return torch.clamp((self.zeta - self.gamma) * s + self.gamma, 0, 1)

    def forward(self, input):
        n, m = self.log_alpha.shape
        if self.training:
            if n == 1 or m == 1:
                u = torch.rand(*input.shape[:-1], n, m, dtype=input.dtype, device=input.device)
            else:
                u = torch.rand_like(self.log_alpha)
            mask = self.gate(torch.log(u) - torch.log(1 - u))
        else:
            mask = self.gate(None)
        if n == 1:
            output = F.linear(input * mask.squeeze(-2), self.weight)
        elif m == 1:
            output = F.linear(input, self.weight) * mask.squeeze(-1)
        else:
            output = F.linear(input, self.weight * mask)
        if self.bias is not None:
            output += self.bias
        return output

    def relevance(self, *, hard, **kwargs):
        with torch.no_grad():
            gate = self.gate(None)
            return (torch.gt(gate, 0) if hard else gate).to(self.weight).expand_as(self.weight)

    def sparsity(self, *, hard, **kwargs):
        return [(id(self.weight), self.weight.numel() - count_kept(self.relevance(hard=hard)))]


class LinearLASSO(torch.nn.Linear, BaseARD, SparsityStats):
    """torch.nn.Linear with the LASSO penalty |W|; relevance: log(|W| + 1e-20) >= threshold."""

    @property
    def penalty(self):
        return abs(self.weight)

    def relevance(self, *, threshold, **kwargs):
        with torch.no_grad():
            return torch.ge(torch.log(abs(self.weight) + 1e-20), threshold)

    def sparsity(self, *, threshold, **kwargs):
        return [(id(self.weight), self.weight.numel() - count_kept(self.relevance(threshold=threshold)))]


__all__ = [
    "BaseARD", "BilinearARD", "BilinearVD", "Conv1dARD", "Conv1dVD", "Conv2dARD", "Conv2dVD", "Conv3dARD", "Conv3dVD",
    "CplxBilinearARD", "CplxBilinearVD", "CplxBilinearVDApprox", "CplxBilinearVDBogus", "CplxBilinearVDScaleFree",
    "CplxConv1dARD", "CplxConv1dVD", "CplxConv1dVDApprox", "CplxConv1dVDBogus", "CplxConv1dVDScaleFree",
    "CplxConv2dARD", "CplxConv2dVD", "CplxConv2dVDApprox", "CplxConv2dVDBogus", "CplxConv2dVDScaleFree",
    "CplxConv3dARD", "CplxConv3dVD", "CplxConv3dVDApprox", "CplxConv3dVDBogus", "CplxConv3dVDScaleFree",
    "CplxLinearARD", "CplxLinearVD", "CplxLinearVDApprox", "CplxLinearVDBogus", "CplxLinearVDScaleFree", "LinearARD",
    "LinearL0", "LinearLASSO", "LinearVD", "compute_ard_masks", "named_penalties", "named_relevance", "penalties",
    "torch_expi",
]
