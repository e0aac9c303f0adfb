"""``cplxfast.nn.convert(model)``: swap every layer of a live model that has a fused cplxfast twin
(cplxmodule's layers, torch's Linear/Conv*/ConvTranspose* with complex parameters, torchcvnn's and
complextorch's batch norms and modReLUs) for that twin, with the original library's maths, and
report the layers of those libraries it left as they were."""
import warnings

import torch

from . import activation, batchnorm, casting, complextorch_layers, conv, extra, linear, masked, relevance, torchcvnn_layers


def _conv_args(m):
    return dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                padding_mode=m.padding_mode)


def _conv(cls):
    def make(m):
        if m.padding_mode == "circular" and any(m.padding):
            warnings.warn(f"cplxfast.nn.convert: {type(m).__name__} with padding_mode='circular' follows torch's "
                          f"circular padding, which differs from cplxmodule's (see SEMANTICS.md): outputs change")
        return cls(m.in_channels, m.out_channels, m.kernel_size, **_conv_args(m))
    return make


def _conv_transpose(cls):
    def make(m):
        if m.padding_mode != "zeros":
            raise ValueError(f"cplxfast.nn.convert: {type(m).__name__} with padding_mode={m.padding_mode!r} has no "
                             f"cplxfast twin: transposed convolution takes zero padding only (as torch's)")
        args = _conv_args(m)
        return cls(m.in_channels, m.out_channels, m.kernel_size, args["stride"], args["padding"], args["dilation"],
                   m.output_padding, args["groups"], args["bias"])
    return make


def _real_conv(cls):
    return lambda m: cls(m.in_channels, m.out_channels, m.kernel_size, **_conv_args(m))


def _linear(cls):
    return lambda m: cls(m.in_features, m.out_features, bias=m.bias is not None)


def _bilinear(cls, complex_=True):
    if complex_:
        return lambda m: cls(m.in1_features, m.in2_features, m.out_features, bias=m.bias is not None,
                             conjugate=m.conjugate)
    return lambda m: cls(m.in1_features, m.in2_features, m.out_features, bias=m.bias is not None)


def _linear_l0(m):
    shape, out, inp = tuple(m.log_alpha.shape), m.out_features, m.in_features
    group = None if shape == (out, inp) else "input" if shape == (1, inp) else "output"
    return relevance.LinearL0(inp, out, bias=m.bias is not None, group=group)


def _sparsification_twins():
    """cplxmodule.nn.relevance (with its extensions) and cplxmodule.nn.masked, complex and real."""
    twins = {}
    for kind, make_complex, make_real in (
            ("Linear", _linear, _linear), ("Bilinear", _bilinear, lambda c: _bilinear(c, complex_=False)),
            ("Conv1d", _conv, _real_conv), ("Conv2d", _conv, _real_conv), ("Conv3d", _conv, _real_conv)):
        for suffix in ("VD", "ARD", "VDScaleFree", "VDApprox", "VDBogus"):
            twins[f"Cplx{kind}{suffix}"] = make_complex(getattr(relevance, f"Cplx{kind}{suffix}"))
        for suffix in ("VD", "ARD"):
            twins[f"{kind}{suffix}"] = make_real(getattr(relevance, f"{kind}{suffix}"))
        twins[f"Cplx{kind}Masked"] = make_complex(getattr(masked, f"Cplx{kind}Masked"))
        twins[f"{kind}Masked"] = make_real(getattr(masked, f"{kind}Masked"))
    twins["LinearL0"] = _linear_l0
    twins["LinearLASSO"] = _linear(relevance.LinearLASSO)
    return twins


def _batch_norm(cls):
    return lambda m: cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)


def _max_pool(cls):
    return lambda m: cls(m.kernel_size, m.stride, m.padding, m.dilation, getattr(m, "return_indices", False), m.ceil_mode)


def _cplx_type():
    from cplxmodule import Cplx
    return Cplx


# cplxmodule class name -> builder of the cplxfast twin (weights are loaded from the original).
CPLXMODULE_TWINS = {
    "CplxLinear": lambda m: linear.CplxLinear(m.in_features, m.out_features, bias=m.bias is not None),
    "CplxBilinear": lambda m: linear.CplxBilinear(m.in1_features, m.in2_features, m.out_features,
                                                  bias=m.bias is not None, conjugate=m.conjugate),
    "CplxConv1d": _conv(conv.CplxConv1d), "CplxConv2d": _conv(conv.CplxConv2d), "CplxConv3d": _conv(conv.CplxConv3d),
    "CplxConvTranspose1d": _conv_transpose(conv.CplxConvTranspose1d),
    "CplxConvTranspose2d": _conv_transpose(conv.CplxConvTranspose2d),
    "CplxConvTranspose3d": _conv_transpose(conv.CplxConvTranspose3d),
    "CplxBatchNorm1d": _batch_norm(batchnorm.CplxBatchNorm1d), "CplxBatchNorm2d": _batch_norm(batchnorm.CplxBatchNorm2d),
    "CplxBatchNorm3d": _batch_norm(batchnorm.CplxBatchNorm3d),
    "CplxModReLU": lambda m: activation.CplxModReLU(m.threshold if isinstance(m.threshold, float) else None),
    "CplxAdaptiveModReLU": lambda m: activation.CplxAdaptiveModReLU(*m.dim),
    "CplxPhaseShift": lambda m: extra.CplxPhaseShift(*m.phi.shape),
    "CplxDropout": lambda m: extra.CplxDropout(m.p, m.inplace),
    "CplxMaxPool1d": _max_pool(extra.CplxMaxPool1d), "CplxMaxPool2d": _max_pool(extra.CplxMaxPool2d),
    "CplxMaxPool3d": _max_pool(extra.CplxMaxPool3d),
    "CplxIdentity": lambda m: extra.CplxIdentity(),
    "CplxReal": lambda m: casting.CplxReal(), "CplxImag": lambda m: casting.CplxImag(),
    "CplxModulus": lambda m: casting.CplxModulus(), "CplxAngle": lambda m: casting.CplxAngle(),
    "AsTypeCplx": lambda m: casting.AsTypeCplx(cplx_type=_cplx_type()),
    "InterleavedRealToCplx": lambda m: casting.RealToCplx(m.copy, m.dim, cplx_type=_cplx_type()),
    "CplxToInterleavedReal": lambda m: casting.CplxToReal(m.dim),
    **_sparsification_twins(),
}


def _torchcvnn_max_pool(m):
    warnings.warn("cplxfast.nn.convert: torchcvnn's MaxPool2d reads every plane's maxima from the first plane "
                  "(wrong for N * C > 1); its cplxfast twin pools each plane: outputs change where N * C > 1")
    p = m.m
    return torchcvnn_layers.MaxPool2d(p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode, m.return_indices)


def _torchcvnn_layer_norm(m):
    if not m.elementwise_affine or m.bias is None:
        return None  # torchcvnn's own fails without them: nothing exact to convert to
    return torchcvnn_layers.LayerNorm(m.normalized_shape, m.eps)


def _complextorch_mod_relu(m):
    bias = m.activation_mag.bias
    return complextorch_layers.modReLU(float(bias), learnable=isinstance(bias, torch.nn.Parameter))


# torchcvnn 0.10.0 class name -> builder of the cplxfast twin (SEMANTICS.md, "torchcvnn").
TORCHCVNN_TWINS = {
    "BatchNorm1d": _batch_norm(torchcvnn_layers.BatchNorm1d),
    "BatchNorm2d": _batch_norm(torchcvnn_layers.BatchNorm2d),
    "LayerNorm": _torchcvnn_layer_norm,
    "modReLU": lambda m: torchcvnn_layers.modReLU(),
    "MaxPool2d": _torchcvnn_max_pool,
}

# complextorch 2.1.1 class name -> builder of the cplxfast twin (SEMANTICS.md, "complextorch").
COMPLEXTORCH_TWINS = {
    "BatchNorm1d": _batch_norm(complextorch_layers.BatchNorm1d),
    "BatchNorm2d": _batch_norm(complextorch_layers.BatchNorm2d),
    "BatchNorm3d": _batch_norm(complextorch_layers.BatchNorm3d),
    "modReLU": _complextorch_mod_relu,
    "AdaptiveModReLU": lambda m: complextorch_layers.AdaptiveModReLU(m.activation_mag.num_features),
}

# Layers of those libraries that only call a torch layer they hold (which convert() swaps).
DELEGATING = {
    "complextorch": {"Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"},
}

LIBRARIES = {"cplxmodule": CPLXMODULE_TWINS, "torchcvnn": TORCHCVNN_TWINS, "complextorch": COMPLEXTORCH_TWINS}


def _library(m):
    """The complex-layer library m's class comes from ("cplxmodule", "torchcvnn", "complextorch"), or None."""
    top = type(m).__module__.split(".")[0]
    return top if top in LIBRARIES else None


def _promoted_split_layer(m):
    """cplxmodule's CplxToCplx[RealModule] instance -> cplxfast's, sharing its state."""
    base = next(b for b in type(m).__mro__[1:] if not b.__module__.startswith("cplxmodule") and
                issubclass(b, torch.nn.Module) and b is not torch.nn.Module)
    twin = object.__new__(extra.CplxToCplx[base])
    twin.__dict__.update(m.__dict__)
    return twin


# torch layer with complex parameters -> the cplxfast subclass that runs it on the fused ops.
NATIVE_TWINS = {
    torch.nn.Linear: linear.Linear,
    torch.nn.Conv1d: conv.Conv1d, torch.nn.Conv2d: conv.Conv2d, torch.nn.Conv3d: conv.Conv3d,
    torch.nn.ConvTranspose1d: conv.ConvTranspose1d, torch.nn.ConvTranspose2d: conv.ConvTranspose2d,
    torch.nn.ConvTranspose3d: conv.ConvTranspose3d,
}


def _native_complex_twin(m):
    """torch's Linear/Conv*/ConvTranspose* with complex parameters becomes its cplxfast subclass in
    place: the same object, Parameters, hooks and mode (optimizer states stay attached), only its
    class changes. Other torch layers (and real ones) are left as they are."""
    cls = NATIVE_TWINS.get(type(m))
    if cls is not None and m.weight.is_complex():
        m.__class__ = cls
        m.algorithm = None
        return m
    return None


def _twin_of(m, library):
    name = type(m).__name__
    if name in LIBRARIES[library]:
        twin = LIBRARIES[library][name](m)  # None: this configuration has no exact twin
        if twin is None:
            return None
    elif library == "cplxmodule" and name.startswith("CplxSplitLayer"):
        return _promoted_split_layer(m)
    else:
        return None
    # The twin takes the original's device and, tensor by tensor, its dtypes (a float64 model stays
    # float64; complex tensors stay complex), then its values.
    own = dict((*m.named_parameters(), *m.named_buffers()))
    twin.to(device=next(iter(own.values())).device if own else None)
    for key, t in (*twin.named_parameters(), *twin.named_buffers()):
        if key in own and own[key].dtype != t.dtype:
            t.data = t.data.to(own[key].dtype)
    state = m.state_dict()
    if isinstance(twin, masked.BaseMasked):
        state["mask"] = m.mask  # None (not sparse yet) has no state_dict key; the twin's load wants one
    twin.load_state_dict(state, strict=True)
    twin.train(m.training)
    return twin


def _twin_for(m):
    """The cplxfast twin of a layer from cplxmodule, torchcvnn or complextorch, or of torch's
    complex Linear/Conv*/ConvTranspose*; else None."""
    library = _library(m)
    return _twin_of(m, library) if library else _native_complex_twin(m)


def _is_container(m):
    return isinstance(m, (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)) or \
        type(m).__name__ in DELEGATING.get(_library(m), ())


def _convert(module, prefix, left):
    for name, child in module.named_children():
        twin = _twin_for(child)
        if twin is None:
            if _library(child) and not _is_container(child):
                left.append(f"{prefix}{name} ({type(child).__module__}.{type(child).__name__})")
            _convert(child, f"{prefix}{name}.", left)
        elif twin is not child:
            setattr(module, name, twin)


def convert(model, *, left="warn"):
    """Swap every layer of ``model`` that has a fused cplxfast twin for that twin, in place, and return
    the model (or the twin, when ``model`` itself is such a layer).

    - cplxmodule's layers become their cplxfast drop-ins; a model whose forward passes cplxmodule
      Cplx objects between layers keeps working: every layer returns the kind it was given, and
      the real-to-complex layers (RealToCplx, AsTypeCplx) are set to produce Cplx (set their
      ``cplx_type = None`` to have them produce native complex tensors instead).
    - torch's ``Linear``, ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` with complex parameters
      become :class:`cplxfast.nn.Linear`, :class:`cplxfast.nn.Conv2d`, ... in place (the same
      object and Parameters, so optimizers built before keep working); torch's other layers stay.
    - torchcvnn's BatchNorm1d/2d, modReLU and MaxPool2d become :mod:`cplxfast.nn.torchcvnn_layers`,
      complextorch's BatchNorm1d/2d/3d, modReLU and AdaptiveModReLU become
      :mod:`cplxfast.nn.complextorch_layers`: each library's own maths (covariance, eps, init,
      modulus floor), parameters and state_dict.

    Weights, buffers (running statistics) and train/eval mode carry over and the state_dict keys
    stay the same, so checkpoints load both ways. Containers are kept, with their children
    converted. Layers of cplxmodule, torchcvnn or complextorch that have no exact twin stay as they
    were; ``left`` says what to do about them: "warn" (one warning naming them), "raise"
    (ValueError) or "ignore".
    """
    if left not in ("warn", "raise", "ignore"):
        raise ValueError(f"convert: left must be 'warn', 'raise' or 'ignore', got {left!r}")
    twin = _twin_for(model)
    if twin is not None:
        return twin
    remaining = []
    if _library(model) and not _is_container(model):
        remaining.append(f"the model itself ({type(model).__module__}.{type(model).__name__})")
    _convert(model, "", remaining)
    if remaining and left != "ignore":
        message = (f"cplxfast.nn.convert left {len(remaining)} layer(s) as they were (no exact cplxfast twin; their "
                   f"maths is unchanged): " + ", ".join(remaining))
        if left == "raise":
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    return model
