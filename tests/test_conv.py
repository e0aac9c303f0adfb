"""cplxfast.conv (1d/2d/3d, transposed, grouped, depthwise): reference, torch native complex conv,
cplxmodule, gradcheck, opcheck, accuracy, errors, modules, compile."""
import math

import pytest
import torch

from cplxfast import _reference as ref
from cplxfast import functional as F
from cplxfast import nn as cnn
from cplxfast import ops
from conftest import TOL, crandn, rel_err, requires_cuda

ALGOS = ["3m", "4m", "auto"]
DTYPES = [torch.complex64, torch.complex128]

# name: (input shape, weight shape, stride, padding, dilation, groups, transposed, output_padding)
GEOMETRIES = {
    "1d": ((2, 4, 11), (6, 4, 3), 2, 1, 1, 1, False, 0),
    "1d-grouped-dilated": ((2, 4, 13), (6, 2, 3), 1, 2, 2, 2, False, 0),
    "1d-depthwise-strided": ((3, 4, 20), (4, 1, 5), 2, 3, 1, 4, False, 0),
    "1d-depthwise-k9": ((2, 3, 30), (3, 1, 9), 1, 4, 1, 3, False, 0),
    "1d-depthwise-k9-strided-long": ((2, 3, 80), (3, 1, 9), 2, 4, 1, 3, False, 0),
    "2d": ((2, 4, 9, 8), (6, 2, 3, 3), (2, 1), 1, (1, 2), 2, False, 0),
    "2d-depthwise": ((2, 4, 9, 8), (4, 1, 3, 3), (1, 2), (2, 1), (2, 1), 4, False, 0),
    "2d-depthwise-wide": ((2, 3, 5, 70), (3, 1, 3, 3), (1, 2), 1, 1, 3, False, 0),
    "2d-depthwise-multiplier-2": ((2, 4, 7, 6), (8, 1, 3, 3), 1, 1, 1, 4, False, 0),
    "2d-1x1": ((3, 5, 4, 4), (7, 5, 1, 1), 1, 0, 1, 1, False, 0),
    "1d-1x1-one-output": ((2, 3, 9), (1, 3, 1), 1, 0, 1, 1, False, 0),
    "3d": ((2, 3, 4, 5, 6), (2, 3, 2, 3, 2), 1, (1, 0, 1), 1, 1, False, 0),
    "T1d": ((2, 4, 7), (4, 3, 3), 2, 1, 1, 1, True, 1),
    "T2d-grouped": ((2, 4, 5, 6), (4, 3, 3, 2), 2, 1, 1, 2, True, 1),
    "T2d-dilated": ((2, 3, 5, 4), (3, 2, 3, 3), (2, 3), (1, 2), 2, 1, True, (1, 0)),
    "T3d": ((1, 2, 3, 4, 3), (2, 2, 2, 2, 2), 2, 0, 1, 1, True, 0),
}


def ntuple(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def make(geometry, dtype, device, bias=True, seed=0):
    xs, ws, stride, padding, dilation, groups, transposed, output_padding = GEOMETRIES[geometry]
    torch.manual_seed(seed)
    x = crandn(*xs, dtype=dtype, device=device)
    w = crandn(*ws, dtype=dtype, device=device) / math.sqrt(math.prod(ws[1:]))
    c_out = ws[1] * groups if transposed else ws[0]
    b = crandn(c_out, dtype=dtype, device=device) if bias else None
    n = len(xs) - 2
    geo = dict(stride=ntuple(stride, n), padding=ntuple(padding, n), dilation=ntuple(dilation, n), groups=groups,
               transposed=transposed, output_padding=ntuple(output_padding, n))
    return x, w, b, geo


def ours(x, w, b, geo, algorithm):
    b_re, b_im = (None, None) if b is None else (b.real, b.imag)
    return ops.conv(x, w.real, w.imag, b_re, b_im, geo["stride"], geo["padding"], geo["dilation"],
                    geo["transposed"], geo["output_padding"], geo["groups"], algorithm)


def ours_complex(x, w, b, geo, algorithm):
    """The complex-weight op variant (native complex parameters; complex gradients)."""
    return ops.conv_complex(x, w, b, geo["stride"], geo["padding"], geo["dilation"], geo["transposed"],
                            geo["output_padding"], geo["groups"], algorithm)


ENTRIES = {"real parts": ours, "complex": ours_complex}


def reference(x, w, b, geo):
    return ref.conv(x, w, b, geo["stride"], geo["padding"], geo["dilation"], geo["groups"], geo["transposed"],
                    geo["output_padding"])


def channels_last(x):
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if x.dim() == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


# ------------------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_forward_backward_match_reference(device, algorithm, geometry, entry):
    x, w, b, geo = make(geometry, torch.complex128, device)
    args = [t.clone().requires_grad_() for t in (x, w, b)]
    ref_args = [t.clone().requires_grad_() for t in (x, w, b)]
    y, want = ENTRIES[entry](*args, geo, algorithm), reference(*ref_args, geo)
    assert y.shape == want.shape and y.dtype == x.dtype
    assert rel_err(y, want) < TOL[torch.complex128]
    g = crandn(*y.shape, device=device)
    y.backward(g)
    want.backward(g)
    for mine, theirs in zip(args, ref_args):
        assert rel_err(mine.grad, theirs.grad) < TOL[torch.complex128]


def assert_matches_wide_reference(y, want, args, wide, dtype):
    """y and the gradients of args (a float32/float64 run) against the complex128 reference want
    and the gradients of its leaves wide, for one random upstream gradient."""
    assert rel_err(y, want) < TOL[dtype]
    g = crandn(*y.shape, dtype=dtype, device=y.device)
    y.backward(g)
    want.backward(g.to(torch.complex128))
    for mine, theirs in zip(args, wide):
        assert rel_err(mine.grad, theirs.grad) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["1d", "2d", "2d-channels_last", "3d-channels_last", "large"])
def test_small_pointwise_convolution(device, dtype, case):
    """1x1 convolutions: "auto" takes the complex GEMM over the channels on the CPU (small ones), 3M
    above that and on CUDA. Every layout, a bias and a weight mask, against the reference."""
    shapes = {"1d": ((3, 5, 17), 7), "2d": ((2, 6, 5, 4), 3), "2d-channels_last": ((2, 6, 5, 4), 3),
              "3d-channels_last": ((2, 4, 3, 2, 5), 6), "large": ((2, 256, 3), 256)}
    xs, c_out = shapes[case]
    torch.manual_seed(4)
    x = crandn(*xs, dtype=dtype, device=device)
    if case.endswith("channels_last"):
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    n = x.dim() - 2
    w = crandn(c_out, xs[1], *(1,) * n, dtype=dtype, device=device) / math.sqrt(xs[1])
    b = crandn(c_out, dtype=dtype, device=device)
    mask = (torch.rand(w.shape, device=device) > 0.3).to(w.real.dtype)
    geo = dict(stride=(1,) * n, padding=(0,) * n, dilation=(1,) * n, groups=1, transposed=False, output_padding=(0,) * n)
    args = [t.clone().requires_grad_() for t in (x, w, b)]
    y = ops.conv(args[0], args[1].real, args[1].imag, args[2].real, args[2].imag, geo["stride"], geo["padding"],
                 geo["dilation"], False, geo["output_padding"], 1, "auto", weight_mask=mask)
    wide = [t.detach().to(torch.complex128).requires_grad_() for t in (x, w, b)]
    masked = torch.complex(wide[1].real * mask.double(), wide[1].imag * mask.double())
    want = reference(wide[0], masked, wide[2], geo)
    assert y.is_contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d) \
        if case.endswith("channels_last") else y.is_contiguous()
    assert_matches_wide_reference(y, want, args, wide, dtype)
    assert torch.all(args[1].grad[mask == 0] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", ["1d-depthwise-k9", "1d-depthwise-k9-strided-long", "2d-depthwise-wide"])
def test_depthwise_rows_longer_than_the_lanes(device, dtype, geometry):
    """The fused depthwise kernel's row loops (16 float lanes per dot product of the weight gradient,
    strides 1 and 2 compiled apart) on rows of 30-40 outputs, in both precisions, with a bias."""
    x, w, b, geo = make(geometry, dtype, device)
    args = [t.clone().requires_grad_() for t in (x, w, b)]
    wide = [t.to(torch.complex128).requires_grad_() for t in (x, w, b)]
    assert_matches_wide_reference(ours(*args, geo, "auto"), reference(*wide, geo), args, wide, dtype)


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("geometry", ["2d", "2d-depthwise", "3d", "T2d-grouped", "T3d"])
def test_channels_last_input(device, algorithm, geometry):
    """channels_last in, channels_last out (as torch's conv), same values and gradients."""
    x, w, b, geo = make(geometry, torch.complex128, device)
    xc = channels_last(x).requires_grad_()
    y = ours(xc, w, b, geo, algorithm)
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    assert y.is_contiguous(memory_format=fmt)
    assert rel_err(y, reference(x, w, b, geo)) < TOL[torch.complex128]
    g = crandn(*y.shape, device=device)
    y.backward(g)
    xr = x.clone().requires_grad_()
    reference(xr, w, b, geo).backward(g)
    assert xc.grad.is_contiguous(memory_format=fmt)
    assert rel_err(xc.grad, xr.grad) < TOL[torch.complex128]


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("geometry", ["2d", "2d-depthwise"])
@pytest.mark.parametrize("case", ["conj-input", "conj-weight", "sliced-input", "neg-view", "permuted"])
def test_strided_and_lazy_inputs(device, algorithm, geometry, case):
    x, w, b, geo = make(geometry, torch.complex64, device)
    if case == "conj-input":
        x = x.conj()
    elif case == "conj-weight":
        w = w.conj()
    elif case == "sliced-input":
        x = crandn(2, 4, 9, 16, dtype=x.dtype, device=device)[..., ::2]
        assert not x.is_contiguous()
    elif case == "neg-view":
        x = torch._neg_view(x)
    elif case == "permuted":
        x = crandn(9, 2, 8, 4, dtype=x.dtype, device=device).permute(1, 3, 0, 2)
    x.requires_grad_()
    y = ours(x, w, b, geo, algorithm)
    assert rel_err(y, reference(x, w, b, geo)) < TOL[torch.complex64]
    g = crandn(*y.shape, dtype=y.dtype, device=device)
    (gx,) = torch.autograd.grad(y, x, g)
    (want,) = torch.autograd.grad(reference(x, w, b, geo), x, g.to(torch.complex128))
    assert rel_err(gx, want) < TOL[torch.complex64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", ["1d-depthwise-k9", "2d", "T2d-grouped"])
def test_single_and_double_precision(device, dtype, geometry):
    x, w, b, geo = make(geometry, dtype, device)
    for algorithm in ALGOS:
        assert rel_err(ours(x, w, b, geo, algorithm), reference(x, w, b, geo)) < TOL[dtype]


# ------------------------------------------------------------------------------ torch native complex conv
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, (2, 1), "same", "valid"])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv2d_module_matches_torch_native_complex(device, padding_mode, padding, groups):
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(4, 8, (3, 2), padding=padding, dilation=(1, 2), groups=groups, padding_mode=padding_mode,
                             dtype=torch.complex128, device=device)
    mine = cnn.CplxConv2d(4, 8, (3, 2), padding=padding, dilation=(1, 2), groups=groups, padding_mode=padding_mode,
                          dtype=torch.float64, device=device)
    with torch.no_grad():
        mine.weight.real.copy_(theirs.weight.real), mine.weight.imag.copy_(theirs.weight.imag)
        mine.bias.real.copy_(theirs.bias.real), mine.bias.imag.copy_(theirs.bias.imag)
    x = crandn(2, 4, 7, 9, device=device)
    assert rel_err(mine(x), theirs(x)) < TOL[torch.complex128]


@pytest.mark.parametrize("kind", ["1d", "3d", "T1d", "T2d", "T3d"])
def test_other_modules_match_torch_native_complex(device, kind):
    torch.manual_seed(0)
    n = int(kind[-2])
    transposed = kind.startswith("T")
    torch_cls = getattr(torch.nn, f"ConvTranspose{n}d" if transposed else f"Conv{n}d")
    our_cls = getattr(cnn, f"CplxConvTranspose{n}d" if transposed else f"CplxConv{n}d")
    kw = dict(stride=2, padding=1, dilation=1, groups=2)
    theirs = torch_cls(4, 6, 3, **kw, bias=True, dtype=torch.complex128, device=device)
    mine = our_cls(4, 6, 3, **kw, bias=True, dtype=torch.float64, device=device)
    with torch.no_grad():
        mine.weight.real.copy_(theirs.weight.real), mine.weight.imag.copy_(theirs.weight.imag)
        mine.bias.real.copy_(theirs.bias.real), mine.bias.imag.copy_(theirs.bias.imag)
    x = crandn(2, 4, *(5,) * n, device=device)
    if transposed:  # output_size picks the output padding, as in torch
        size = [2 * s for s in x.shape[2:]]
        assert rel_err(mine(x, output_size=size), theirs(x, output_size=size)) < TOL[torch.complex128]
    assert rel_err(mine(x), theirs(x)) < TOL[torch.complex128]


# ------------------------------------------------------------------------------ autograd machinery
@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("geometry", ["1d-depthwise-strided", "2d", "T1d"])
def test_gradcheck(device, algorithm, geometry, entry):
    x, w, b, geo = make(geometry, torch.complex128, device)
    if x.dim() == 4:
        x = x[:1, :, :5, :4]
    args = [t.clone().requires_grad_() for t in (x, w, b)]
    assert torch.autograd.gradcheck(lambda x, w, b: ENTRIES[entry](x, w, b, geo, algorithm), args)


@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True), (True, True, False)])
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("geometry", ["2d", "2d-depthwise"])
def test_backward_output_mask(device, algorithm, mask, geometry):
    x, w, b, geo = make(geometry, torch.complex128, device)
    y = reference(x, w, b, geo)
    g = crandn(*y.shape, device=device)
    full = ops.conv_backward(g, x, w.real, w.imag, geo["stride"], geo["padding"], geo["dilation"], False,
                             geo["output_padding"], geo["groups"], algorithm)
    part = ops.conv_backward(g, x, w.real, w.imag, geo["stride"], geo["padding"], geo["dilation"], False,
                             geo["output_padding"], geo["groups"], algorithm, mask)
    wanted = [mask[0], mask[1], mask[1], mask[2], mask[2]]
    for want, f, p in zip(wanted, full, part):
        if want:
            torch.testing.assert_close(p, f)
        else:
            assert p is None


def test_double_backward_raises_clear_error(device):
    x, w, b, geo = make("2d", torch.complex128, device)
    x.requires_grad_()
    (gx,) = torch.autograd.grad(ours(x, w, b, geo, "3m").abs().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        gx.abs().sum().backward()


def _opcheck_samples(device):
    for geometry in ("1d-depthwise-strided", "2d", "T2d-grouped", "2d-1x1", "1d-1x1-one-output"):
        for dtype in DTYPES:
            x, w, b, geo = make(geometry, dtype, device)
            yield x, w, b, geo
            yield channels_last(x), w, None, geo
            yield x.conj(), w, b, geo


@pytest.mark.parametrize("algorithm", ALGOS)
def test_opcheck_forward(device, algorithm):
    for x, w, b, geo in _opcheck_samples(device):
        parts = [x, w.real.clone(), w.imag.clone()] + ([b.real.clone(), b.imag.clone()] if b is not None else [None, None])
        args = (*parts, list(geo["stride"]), list(geo["padding"]), list(geo["dilation"]), geo["transposed"],
                list(geo["output_padding"]), geo["groups"], algorithm)
        torch.library.opcheck(torch.ops.cplxfast.conv.default, args)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_opcheck_backward(device, algorithm):
    for x, w, _, geo in _opcheck_samples(device):
        y = reference(x, w, None, geo).to(x.dtype)
        g = channels_last(crandn(*y.shape, dtype=x.dtype, device=device))
        args = (g, x, w.real.clone(), w.imag.clone(), list(geo["stride"]), list(geo["padding"]),
                list(geo["dilation"]), geo["transposed"], list(geo["output_padding"]), geo["groups"], algorithm,
                [True, True, True])
        torch.library.opcheck(torch.ops.cplxfast.conv_backward.default, args,
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("algorithm", ALGOS)
def test_opcheck_complex_weight_ops(device, algorithm):
    for x, w, b, geo in _opcheck_samples(device):
        geometry = (list(geo["stride"]), list(geo["padding"]), list(geo["dilation"]), geo["transposed"],
                    list(geo["output_padding"]), geo["groups"], algorithm)
        torch.library.opcheck(torch.ops.cplxfast.conv_complex.default, (x, w, b, *geometry))
        y = reference(x, w, None, geo).to(x.dtype)
        g = channels_last(crandn(*y.shape, dtype=x.dtype, device=device))
        torch.library.opcheck(torch.ops.cplxfast.conv_complex_backward.default, (g, x, w, *geometry, [True, True, True]),
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_complex_weight_gets_one_complex_gradient():
    """functional conv with complex Parameters runs the complex-weight op: the weight's and bias's
    gradients are complex tensors of their shapes, equal to the parts op's."""
    torch.manual_seed(0)
    x = crandn(2, 4, 9, 8, dtype=torch.complex64)
    w = torch.nn.Parameter(crandn(6, 4, 3, 3, dtype=torch.complex64) / 6)
    b = torch.nn.Parameter(crandn(6, dtype=torch.complex64))
    y = F.conv2d(x, w, b, padding=1)
    assert y.grad_fn.name().startswith("torch::autograd::CppNode")
    y.abs().sum().backward()
    wr, wi = w.detach().real.clone().requires_grad_(), w.detach().imag.clone().requires_grad_()
    br, bi = b.detach().real.clone().requires_grad_(), b.detach().imag.clone().requires_grad_()
    ops.conv(x, wr, wi, br, bi, [1, 1], [1, 1], [1, 1], False, [0, 0], 1).abs().sum().backward()
    torch.testing.assert_close(w.grad, torch.complex(wr.grad, wi.grad))
    torch.testing.assert_close(b.grad, torch.complex(br.grad, bi.grad))


# ------------------------------------------------------------------------------ edge cases and errors
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("geometry", ["2d", "2d-depthwise", "T1d"])
def test_empty_batch(device, algorithm, geometry):
    x, w, b, geo = make(geometry, torch.complex64, device)
    x = x[:0].clone().requires_grad_()
    w.requires_grad_(), b.requires_grad_()
    y = ours(x, w, b, geo, algorithm)
    assert y.shape[0] == 0
    y.abs().sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


def test_padding_around_an_empty_input_gives_the_bias(device):
    x = crandn(2, 3, 0, device=device)
    w, b = crandn(4, 3, 1, device=device), crandn(4, device=device)
    y = F.conv1d(x, w, b, padding=1)
    assert y.shape == (2, 4, 2)
    torch.testing.assert_close(y, b.view(1, 4, 1).expand(2, 4, 2))


def test_bad_input_errors(device):
    x = crandn(2, 4, 8, 8, device=device)
    w = crandn(6, 4, 3, 3, device=device)
    with pytest.raises(RuntimeError, match="input has 4 channels but the weight"):
        F.conv2d(x, crandn(6, 3, 3, 3, device=device))
    with pytest.raises(RuntimeError, match="not divisible by groups"):
        F.conv2d(x, crandn(6, 1, 3, 3, device=device), groups=3)
    with pytest.raises(RuntimeError, match="out_channels=6 is not divisible by groups=4"):
        F.conv2d(x, crandn(6, 1, 3, 3, device=device), groups=4)
    with pytest.raises(RuntimeError, match="larger than the padded input"):
        F.conv2d(crandn(2, 4, 2, 8, device=device), w)
    with pytest.raises(ValueError, match="expected a 4-D input"):
        F.conv2d(crandn(2, 4, 8, device=device), w)
    with pytest.raises(RuntimeError, match="expects a 4-D input"):
        ops.conv(crandn(2, 4, 8, device=device), w.real, w.imag, None, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
    with pytest.raises(RuntimeError, match="stride must be >= 1"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(RuntimeError, match="output_padding must be smaller than stride or dilation"):
        F.conv_transpose2d(x, crandn(4, 2, 3, 3, device=device), stride=2, output_padding=2)
    with pytest.raises(RuntimeError, match="must be a real"):
        ops.conv(x, w.real.float(), w.imag.float(), None, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
    with pytest.raises(RuntimeError, match="complex64 or complex128"):
        ops.conv(x.real, w.real, w.imag, None, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
    with pytest.raises(RuntimeError, match=r"bias must have shape \[6\]"):
        F.conv2d(x, w, crandn(5, device=device))
    with pytest.raises(RuntimeError, match="algorithm must be"):
        torch.ops.cplxfast.conv(x, w.real, w.imag, None, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, "5m")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        F.conv2d(x, w, padding=1, padding_mode="mirror")
    with pytest.raises(ValueError, match="not supported for strided convolutions"):
        F.conv2d(x, w, padding="same", stride=2)
    with pytest.raises(TypeError, match="expected a complex tensor"):
        F.conv2d(x.real, w)


def test_backward_bad_grad_shape():
    x = crandn(2, 4, 8)
    w = crandn(6, 4, 3)
    with pytest.raises(RuntimeError, match="grad has shape"):
        ops.conv_backward(crandn(2, 6, 7), x, w.real, w.imag, [1], [0], [1], False, [0], 1)


def test_depthwise_with_an_empty_kernel(device):
    """A kernel dimension of size 0: the output is the bias, gradients are zero or empty (and no
    kernel is launched on an empty grid)."""
    x = crandn(2, 3, 5, dtype=torch.complex64, device=device).requires_grad_()
    w = torch.zeros(3, 1, 0, dtype=torch.complex64, device=device, requires_grad=True)
    b = crandn(3, dtype=torch.complex64, device=device).requires_grad_()
    y = F.conv1d(x, w, b, groups=3)
    assert y.shape == (2, 3, 6)
    torch.testing.assert_close(y, b.detach().view(1, 3, 1).expand(2, 3, 6))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, torch.zeros_like(x)) and w.grad.shape == w.shape
    torch.testing.assert_close(b.grad, torch.full_like(b, 12))


# ------------------------------------------------------------------------------ 3M accuracy
def test_accuracy_near_real_data(device):
    """As for linear: 3M loses componentwise accuracy on nearly real data, 4M (and depthwise) do not."""
    torch.manual_seed(3)
    x = crandn(4, 32, 16, 16, dtype=torch.complex64, device=device)
    w = crandn(32, 32, 3, 3, dtype=torch.complex64, device=device) / math.sqrt(32 * 9)
    x, w = torch.complex(x.real, 1e-4 * x.imag), torch.complex(w.real, 1e-4 * w.imag)
    want = ref.conv(x, w, None, 1, 1)

    def imag_err(algorithm):
        y = F.conv2d(x, w, padding=1, algorithm=algorithm)
        return ((y.imag.double() - want.imag).norm() / want.imag.norm()).item()

    err_3m, err_4m = imag_err("3m"), imag_err("4m")
    assert err_4m < 1e-5
    assert err_3m > 10 * err_4m


@requires_cuda
def test_tf32_follows_cudnn_flag_and_costs_3m_its_imaginary_part():
    """cuDNN's TF32 (torch.backends.cudnn.allow_tf32, True by default in torch) is followed as torch's
    own convolutions follow it: with it off, complex64 convolution is fp32-exact (the tolerance of
    every other test); with it on (10-bit mantissa products on Ampere and later), 4M stays
    componentwise accurate to TF32's precision while 3M's imaginary part, a difference of products
    of the size of the real part, loses about |Re| / |Im| times more: on nearly real data it is
    no longer accurate at all. torch's native complex conv (a 3M composite) behaves alike."""
    torch.manual_seed(4)
    x = crandn(4, 32, 16, 16, dtype=torch.complex64, device="cuda")
    w = crandn(32, 32, 3, 3, dtype=torch.complex64, device="cuda") / math.sqrt(32 * 9)
    x, w = torch.complex(x.real, 1e-2 * x.imag), torch.complex(w.real, 1e-2 * w.imag)
    want = ref.conv(x, w, None, 1, 1)

    def errors(algorithm):
        y = F.conv2d(x, w, padding=1, algorithm=algorithm)
        return rel_err(y, want), ((y.imag.double() - want.imag).norm() / want.imag.norm()).item()

    torch.backends.cudnn.allow_tf32 = False
    assert errors("3m")[0] < TOL[torch.complex64] and errors("4m")[0] < TOL[torch.complex64]
    torch.backends.cudnn.allow_tf32 = True
    (norm_3m, imag_3m), (norm_4m, imag_4m) = errors("3m"), errors("4m")
    assert norm_3m < 5e-3 and norm_4m < 5e-3  # TF32: ~2^-11 per operand, normwise
    assert imag_4m < 5e-3  # 4M: componentwise too
    assert imag_3m > 3 * imag_4m  # 3M's imaginary part: the cancellation TF32 makes visible
    torch_err = rel_err(torch.nn.functional.conv2d(x, w, padding=1), want)
    assert norm_3m < 4 * torch_err + TOL[torch.complex64]  # no worse than torch's own complex conv


# ------------------------------------------------------------------------------ modules
@pytest.mark.cplxmodule
def test_module_signatures_parameters_and_state_dict_match_cplxmodule():
    from cplxmodule import nn as theirs_nn

    cases = [("CplxConv1d", (4, 6, 3), dict(stride=2, padding=1, groups=2)),
             ("CplxConv2d", (4, 6, (3, 2)), dict(dilation=2, bias=False)),
             ("CplxConv3d", (2, 4, 2), {}),
             ("CplxConvTranspose1d", (4, 6, 3), dict(stride=2, output_padding=1, groups=2)),
             ("CplxConvTranspose2d", (4, 6, 3), dict(bias=True)),
             ("CplxConvTranspose3d", (2, 4, 2), {})]
    for name, args, kwargs in cases:
        theirs, mine = getattr(theirs_nn, name)(*args, **kwargs), getattr(cnn, name)(*args, **kwargs)
        assert [(k, v.shape) for k, v in theirs.state_dict().items()] == [(k, v.shape) for k, v in mine.state_dict().items()]
        assert [n for n, _ in theirs.named_parameters()] == [n for n, _ in mine.named_parameters()]
        mine.load_state_dict(theirs.state_dict(), strict=True)
        for attr in ("kernel_size", "stride", "padding", "dilation", "output_padding", "groups", "padding_mode"):
            assert getattr(mine, attr) == getattr(theirs, attr), (name, attr)


def test_module_init_distribution():
    torch.manual_seed(0)
    layer = cnn.CplxConv2d(64, 32, 3)
    fan_in = 64 * 9
    # kaiming_uniform with a = sqrt(1 + 2 * 5): bound sqrt(6 / ((1 + 11) fan_in)) per part
    bound = math.sqrt(6 / (12 * fan_in))
    for part in (layer.weight.real, layer.weight.imag):
        assert part.abs().max() <= bound and part.abs().max() > 0.9 * bound
    for part in (layer.bias.real, layer.bias.imag):
        assert part.abs().max() <= 1 / math.sqrt(fan_in)


@pytest.mark.cplxmodule
@pytest.mark.parametrize("name,shape,kwargs", [
    ("CplxConv1d", (2, 4, 16), dict(kernel_size=3, stride=2, padding=1, groups=2)),
    ("CplxConv2d", (2, 4, 9, 8), dict(kernel_size=(3, 2), dilation=(1, 2), padding=1)),
    ("CplxConv2d", (2, 4, 9, 8), dict(kernel_size=3, groups=4, padding=1)),  # depthwise
    ("CplxConv2d", (2, 4, 9, 8), dict(kernel_size=3, stride=2, padding=(1, 2), groups=2)),
    ("CplxConv3d", (1, 4, 5, 4, 6), dict(kernel_size=2)),
])
def test_matches_cplxmodule_forward_and_gradients(name, shape, kwargs):
    """cplxmodule's padding_mode="circular" is not torch's (SEMANTICS.md); circular is checked against
    torch's native complex conv above."""
    from cplxmodule import Cplx
    from cplxmodule import nn as theirs_nn

    torch.manual_seed(0)
    out_ch = 4 if kwargs.get("groups", 1) == 4 else 6
    theirs = getattr(theirs_nn, name)(4, out_ch, **kwargs)
    mine = getattr(cnn, name)(4, out_ch, **kwargs)
    mine.load_state_dict(theirs.state_dict(), strict=True)
    re, im = torch.randn(*shape), torch.randn(*shape)
    x_theirs = Cplx(re.clone().requires_grad_(), im.clone().requires_grad_())
    x_mine = Cplx(re.clone().requires_grad_(), im.clone().requires_grad_())
    y_theirs, y_mine = theirs(x_theirs), mine(x_mine)
    assert isinstance(y_mine, Cplx)
    torch.testing.assert_close(y_mine.real, y_theirs.real, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y_mine.imag, y_theirs.imag, rtol=1e-4, atol=1e-5)
    g_re, g_im = torch.randn_like(y_theirs.real), torch.randn_like(y_theirs.real)
    ((y_theirs.real * g_re).sum() + (y_theirs.imag * g_im).sum()).backward()
    ((y_mine.real * g_re).sum() + (y_mine.imag * g_im).sum()).backward()
    theirs_params, mine_params = dict(theirs.named_parameters()), dict(mine.named_parameters())
    for pname in theirs_params:
        torch.testing.assert_close(mine_params[pname].grad, theirs_params[pname].grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_mine.real.grad, x_theirs.real.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x_mine.imag.grad, x_theirs.imag.grad, rtol=1e-4, atol=1e-5)


def test_module_errors():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        cnn.CplxConv2d(3, 6, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        cnn.CplxConv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match='only "zeros" padding_mode'):
        cnn.CplxConvTranspose2d(4, 6, 3, padding_mode="circular")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        cnn.CplxConv1d(4, 6, 3, padding_mode="wrap")
    layer = cnn.CplxConv2d(4, 6, 3)
    with pytest.raises(ValueError, match="expected a 4-D input"):
        layer(crandn(2, 4, 8, dtype=torch.complex64))
    with pytest.raises(TypeError, match="input is torch.complex128 but the layer's parameters are torch.float32"):
        layer(crandn(2, 4, 8, 8))
    with pytest.raises(TypeError, match="expected a complex tensor"):
        layer(torch.randn(2, 4, 8, 8))


def test_transposed_module_output_size():
    layer = cnn.CplxConvTranspose2d(4, 2, 3, stride=2, padding=1)
    x = crandn(1, 4, 5, 5, dtype=torch.complex64)
    assert layer(x).shape == (1, 2, 9, 9)
    assert layer(x, output_size=[10, 10]).shape == (1, 2, 10, 10)
    with pytest.raises(ValueError):
        layer(x, output_size=[12, 12])


def test_algorithm_per_layer_and_repr():
    layer = cnn.CplxConv2d(4, 4, 3, groups=4, padding=1, algorithm="3m")
    assert "algorithm='3m'" in repr(layer) and "groups=4" in repr(layer)
    x = crandn(1, 4, 6, 6, dtype=torch.complex64)
    y3 = layer(x)
    layer.algorithm = "4m"
    torch.testing.assert_close(layer(x), y3, rtol=1e-5, atol=1e-5)


def test_torch_compile_fullgraph_forward_backward():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        cnn.CplxConv1d(4, 8, 5, padding=2), cnn.CplxConv1d(8, 8, 3, groups=8, padding=1),
        cnn.CplxConvTranspose1d(8, 2, 4, stride=2, padding=1),
    )
    x = crandn(2, 4, 16, dtype=torch.complex64)
    eager = model(x)
    eager.abs().sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True)(x)
    out.abs().sum().backward()
    torch.testing.assert_close(out, eager)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g)


# ------------------------------------------------------------------------------ torch's Conv*/ConvTranspose*, complex
NATIVE_CASES = [
    ("Conv1d", (2, 6, 17), dict(out_channels=4, kernel_size=3, padding="same", padding_mode="reflect")),
    ("Conv1d", (6, 17), dict(out_channels=6, kernel_size=5, groups=6, padding=2)),  # unbatched, depthwise
    ("Conv2d", (2, 6, 9, 8), dict(out_channels=4, kernel_size=3, stride=2, padding=1, groups=2)),
    ("Conv2d", (2, 6, 9, 8), dict(out_channels=6, kernel_size=3, padding=2, dilation=2, padding_mode="circular",
                                  bias=False)),
    ("Conv3d", (1, 4, 5, 6, 5), dict(out_channels=3, kernel_size=(2, 3, 2), padding=(1, 0, 1))),
    ("ConvTranspose1d", (2, 6, 7), dict(out_channels=4, kernel_size=3, stride=2, padding=1, output_padding=1)),
    ("ConvTranspose2d", (6, 5, 4), dict(out_channels=4, kernel_size=3, stride=2, groups=2)),  # unbatched
    ("ConvTranspose3d", (1, 4, 3, 4, 3), dict(out_channels=2, kernel_size=2, stride=2, dilation=1)),
]


@pytest.mark.parametrize("name,shape,kwargs", NATIVE_CASES, ids=[f"{c[0]}-{len(c[1])}D" for c in NATIVE_CASES])
def test_native_complex_conv_matches_torch_and_converts_in_place(device, name, shape, kwargs):
    """cplxfast.nn.Conv*/ConvTranspose* are torch's layers with complex parameters on the fused ops:
    same parameters and state_dict, same outputs and gradients (torch's padding modes and unbatched
    inputs included); convert() swaps torch's layer in place, keeping its Parameter objects."""
    torch.manual_seed(0)
    kwargs = dict(kwargs, dtype=torch.complex64, device=device)
    theirs = getattr(torch.nn, name)(_in_channels(shape, name), **kwargs)
    ours = getattr(cnn, name)(_in_channels(shape, name), **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = crandn(*shape, dtype=torch.complex64, device=device)
    results = []
    for layer in (theirs, ours):
        xg = x.clone().requires_grad_()
        y = layer(xg)
        g = torch.ones_like(y) + 0.5j * torch.arange(y.numel(), device=device).view(y.shape).cos()
        results.append((y.detach(), torch.autograd.grad(y, [xg, *layer.parameters()], g)))
    (y0, g0), (y1, g1) = results
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    params = list(theirs.parameters())
    assert cnn.convert(theirs) is theirs and type(theirs) is getattr(cnn, name)
    assert all(p is q for p, q in zip(theirs.parameters(), params))
    torch.testing.assert_close(theirs(x), y0, rtol=1e-5, atol=1e-5)


def _in_channels(shape, name):
    n = int(name[-2])
    return shape[0] if len(shape) == n + 1 else shape[1]


def test_native_complex_conv_transpose_output_size_and_errors():
    torch.manual_seed(0)
    layer = cnn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, dtype=torch.complex64)
    x = crandn(2, 3, 4, 5, dtype=torch.complex64)
    torch.testing.assert_close(layer(x, output_size=[8, 10]), torch.nn.ConvTranspose2d.forward(layer, x, [8, 10]),
                               rtol=1e-5, atol=1e-5)
    assert layer(x[0], output_size=[2, 8, 10]).shape == (2, 8, 10)
    with pytest.raises(ValueError, match="output size"):
        layer(x, output_size=[12, 10])
    with pytest.raises(ValueError, match="4-D"):
        cnn.Conv2d(3, 2, 3, dtype=torch.complex64)(crandn(2, dtype=torch.complex64))
    real = cnn.Conv2d(3, 2, 3)  # real parameters: torch's own layer
    xr = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(real(xr), torch.nn.functional.conv2d(xr, real.weight, real.bias))


def test_native_complex_conv_takes_cplx_and_algorithm():
    """A Cplx in, a Cplx out (cplxmodule models mixing torch's complex conv); algorithm per layer."""
    torch.manual_seed(0)
    layer = cnn.Conv1d(4, 3, 3, dtype=torch.complex64, algorithm="4m")
    assert layer.algorithm == "4m"
    x = crandn(2, 4, 9, dtype=torch.complex64)

    class Parts:  # any object with .real/.imag tensors stands for a Cplx
        def __init__(self, real, imag):
            self.real, self.imag = real, imag

    out = layer(Parts(x.real, x.imag))
    assert isinstance(out, Parts)
    torch.testing.assert_close(torch.complex(out.real, out.imag), layer(x))


def test_native_complex_conv_compiles_fullgraph():
    torch.manual_seed(0)
    layer = cnn.Conv2d(4, 4, 3, padding=1, dtype=torch.complex64)
    x = crandn(2, 4, 6, 6, dtype=torch.complex64)
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), layer(x))
