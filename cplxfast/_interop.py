"""Interop between native complex tensors and cplxmodule-style (real, imag) objects.

cplxmodule is never imported here: a `Cplx` is recognised by its `.real`/`.imag` tensors.
"""
import torch


def to_complex(input, layer):
    """(complex tensor, rewrap) for a complex tensor or any object with .real/.imag tensors.

    ``rewrap(out)`` returns the output in the kind the input came in: a complex tensor, or an
    object of the input's type built from (out.real, out.imag) (e.g. cplxmodule's Cplx).

    Zero-copy interop: the parts a layer hands back in a Cplx are views of its complex output, and
    remember it (``_wrap``); when such a Cplx comes in, its complex tensor is used as it is. A Cplx
    of other tensors (the result of Cplx arithmetic between layers other than the sums and
    differences of layer outputs, which _backed keeps whole; a transpose of the parts; a cplxmodule
    layer's output) is combined with one ``torch.complex`` copy.
    """
    if isinstance(input, torch.Tensor):
        if not input.is_complex():
            raise TypeError(
                f"{layer}: expected a complex tensor (complex64/complex128) or a Cplx, got a real "
                f"{input.dtype} tensor; build one with torch.complex(re, im) or cplxmodule.Cplx(re, im)"
            )
        return input, _identity
    re, im = parts_of(input, layer)
    kind = type(input)
    z = _viewed_complex(re, im)
    if z is None:
        if re.shape != im.shape:
            raise ValueError(f"{layer}: the real part has shape {tuple(re.shape)} but the imaginary part {tuple(im.shape)}")
        z = _combined(re, im)
    return z, lambda out: _wrap(kind, out)


def _combined(re, im):
    """torch.complex(re, im), contiguous where re is dense in no standard memory format: parts
    transposed between layers (a model's head over time steps) give a contiguous tensor, not a
    transposed one that the next layer would copy again (the linear layer's reshape does)."""
    if torch.compiler.is_compiling() or re.is_contiguous() or any(
            re.dim() == n and re.is_contiguous(memory_format=fmt)
            for n, fmt in ((4, torch.channels_last), (5, torch.channels_last_3d))):
        return torch.complex(re, im)
    return _Combine.apply(re, im)


class _Combine(torch.autograd.Function):
    """torch.complex(re, im) into a fresh contiguous tensor (autograd takes no out= argument)."""

    @staticmethod
    def forward(ctx, re, im):
        return torch.complex(re, im, out=re.new_empty(re.shape, dtype=re.dtype.to_complex()))

    @staticmethod
    def backward(ctx, grad):
        return grad.real, grad.imag


def parts_of(obj, layer):
    """(obj.real, obj.imag) of a complex tensor (views), a Cplx or a CplxParameter; TypeError unless
    both are tensors."""
    re, im = getattr(obj, "real", None), getattr(obj, "imag", None)
    if not (isinstance(re, torch.Tensor) and isinstance(im, torch.Tensor)):
        raise TypeError(f"{layer}: expected a complex tensor or a Cplx (an object with .real and .imag tensors), "
                        f"got {type(obj).__name__}")
    return re, im


# Attribute of a real-part view made by _wrap: (its imaginary-part view, the complex tensor).
_VIEW_OF = "_cplxfast_view_of"


def _wrap(kind, out):
    """kind(out.real, out.imag), the parts remembering the complex tensor they view; of a subclass
    of kind whose sums and differences of such objects are taken on the complex tensors
    (_backed)."""
    if torch.compiler.is_compiling():
        return kind(out.real, out.imag)
    re, im = _Parts.apply(out) if out.requires_grad else (out.real, out.imag)
    setattr(re, _VIEW_OF, (im, out))
    return _backed(kind)(re, im)


_BACKED = {}


def _backed(kind):
    """A subclass of the Cplx type `kind` for the objects that _wrap makes: where both operands of
    +, +=, -, -= (or the one of unary -) are such objects, the result is taken on their complex
    tensors and wrapped again, so the next layer takes it without a copy; kind's own arithmetic
    adds the parts into two new tensors, which the next layer combines with a copy (the residual
    adds of bench/bench_e2e.py's model: three copies per step). Exact: a complex sum or difference
    is that of the parts, element for element, and broadcasts and promotes as they do. The rest is
    kind's, which builds `type(self)(re, im)`: this class, with parts it does not know about, and
    kind's arithmetic. isinstance(obj, kind) holds (type(obj) is kind does not); pickled as kind."""
    cls = _BACKED.get(kind)
    if cls is not None:
        return cls

    def binary(fallback, op):
        def method(u, v):
            zu, zv = _backing(u), _backing(v)
            return fallback(u, v) if zu is None or zv is None else _wrap(kind, op(zu, zv))
        return method

    def unary(fallback, op):
        def method(u):
            z = _backing(u)
            return fallback(u) if z is None else _wrap(kind, op(z))
        return method

    ops = {"__add__": (binary, torch.add), "__sub__": (binary, torch.sub), "__neg__": (unary, torch.neg)}
    # += and -= only where kind's are its + and - (cplxmodule's are): an in-place one stays kind's.
    ops.update({f"__i{name}__": ops[f"__{name}__"] for name in ("add", "sub")
                if getattr(kind, f"__i{name}__", None) is getattr(kind, f"__{name}__", False)})
    methods = {name: make(getattr(kind, name), op) for name, (make, op) in ops.items() if hasattr(kind, name)}
    try:
        cls = type(kind.__name__, (kind,), {
            "__slots__": (), "__module__": kind.__module__, "__qualname__": kind.__qualname__,
            "__reduce__": lambda self: (kind, (self.real, self.imag)), **methods})
    except TypeError:  # a type that takes no subclass: its own arithmetic
        cls = kind
    _BACKED[kind] = cls
    return cls


def _backing(obj):
    """The complex tensor that the parts of an object made by _wrap view, else None."""
    if isinstance(obj, torch.Tensor):
        return None
    re, im = getattr(obj, "real", None), getattr(obj, "imag", None)
    return _viewed_complex(re, im) if isinstance(re, torch.Tensor) else None


class _Parts(torch.autograd.Function):
    """(z.real, z.imag), views of z, whose gradients go back to z as one torch.complex(grad_re,
    grad_im). Through torch's own views each part's gradient became a zero-filled complex tensor
    with that part copied in, and the two were added: what a Cplx used in arithmetic between layers
    (a residual add) cost in the backward (bench/RESULTS.md, 2026-12-07). Being views made in a
    custom Function, the parts cannot be changed in place while z requires grad."""

    @staticmethod
    def forward(ctx, z):
        ctx.set_materialize_grads(False)
        ctx.layout = (z.shape, z.stride(), z.dtype)
        return z.real, z.imag

    @staticmethod
    def backward(ctx, grad_re, grad_im):
        if grad_re is None and grad_im is None:
            return None
        whole = _complex_viewed_by(grad_re, grad_im)
        if whole is not None:  # the parts of one complex gradient (torch.complex's backward gives those)
            return whole
        if grad_re is None:
            grad_re = torch.zeros_like(grad_im)
        if grad_im is None:
            grad_im = torch.zeros_like(grad_re)
        if torch.is_grad_enabled():  # create_graph: the differentiable form
            return torch.complex(grad_re, grad_im)
        # In z's layout: the gradients of parts that were transposed between layers come
        # transposed, and the layer that made z would copy its gradient into its own layout.
        shape, stride, dtype = ctx.layout
        return torch.complex(grad_re, grad_im, out=grad_re.new_empty_strided(shape, stride, dtype=dtype))


def _viewed_complex(re, im):
    """The complex tensor whose .real/.imag views re and im are (made by _wrap), else None."""
    if torch.compiler.is_compiling():
        return None
    tag = getattr(re, _VIEW_OF, None)
    if tag is None or tag[0] is not im:
        return None
    return tag[1]


def _identity(out):
    return out


def _complex_viewed_by(re, im):
    """The complex tensor whose .real and .imag re and im are, else None."""
    if re is None or im is None:
        return None
    whole = re._base
    if whole is None or im._base is not whole or not whole.is_complex() or whole.shape != re.shape:
        return None
    for part, view in ((re, whole.real), (im, whole.imag)):
        if part.data_ptr() != view.data_ptr() or part.stride() != view.stride():
            return None
    return whole
