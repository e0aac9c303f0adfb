"""``cplxfast.nn.convert(model)``: swap every cplxmodule layer of a live model, and every torch
nn.Linear with complex parameters, for its cplxfast twin."""
import warnings

import torch

from . import activation, batchnorm, casting, conv, extra, linear


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


def _batch_norm(cls):
    return lambda m: cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)


def _max_pool(cls):
    return lambda m: cls(m.kernel_size, m.stride, m.padding, m.dilation, getattr(m, "return_indices", False), m.ceil_mode)


def _cplx_type():
    from cplxmodule import Cplx
    return Cplx


# cplxmodule class name -> builder of the cplxfast twin (weights are loaded from the original).
TWINS = {
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
}


def _is_cplxmodule(m):
    return type(m).__module__.startswith("cplxmodule.")


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


def _twin_of(m):
    name = type(m).__name__
    if name in TWINS:
        twin = TWINS[name](m)
    elif name.startswith("CplxSplitLayer"):
        return _promoted_split_layer(m)
    else:
        return None
    tensors = [t for t in (*m.parameters(recurse=False), *m.buffers(recurse=False)) if t.is_floating_point()]
    tensors += [t for c in m.children() for t in c.parameters()]
    if tensors:
        twin = twin.to(device=tensors[0].device, dtype=tensors[0].dtype)
    twin.load_state_dict(m.state_dict(), strict=True)
    twin.train(m.training)
    return twin


def _twin_for(m):
    """The cplxfast twin of a cplxmodule layer or of torch's complex nn.Linear, else None."""
    return _twin_of(m) if _is_cplxmodule(m) else _native_complex_twin(m)


def convert(model):
    """Swap every cplxmodule layer in ``model`` for its cplxfast twin, in place, and return the model
    (or the twin, when ``model`` itself is a cplxmodule layer).

    Weights, buffers (batch-norm running statistics) and train/eval mode carry over; the state_dict
    keys stay the same, so checkpoints load both ways. A model whose forward passes cplxmodule Cplx
    objects between layers keeps working: every layer returns the kind it was given, and the
    real-to-complex layers (RealToCplx, AsTypeCplx) are set to produce Cplx (set their
    ``cplx_type = None`` to have them produce native complex tensors instead). Containers
    (including cplxmodule's CplxSequential) are kept, with their children converted. torch's own
    ``nn.Linear`` layers with complex parameters become :class:`cplxfast.nn.Linear` in place (same
    object and Parameters); torch's other layers stay as they are.
    """
    twin = _twin_for(model)
    if twin is not None:
        return twin
    for name, child in model.named_children():
        twin = _twin_for(child)
        if twin is None:
            convert(child)
        elif twin is not child:
            setattr(model, name, twin)
    return model
