"""cplxfast.linear: forward, backward, gradcheck, opcheck, accuracy, errors, module, compile."""
import math

import pytest
import torch

import cplxfast
from cplxfast import _reference as ref
from cplxfast import functional as F
from cplxfast import ops
import cplxfast.nn as cnn
from cplxfast.nn import CplxLinear
from conftest import TOL, crandn, linear_real_parts, rel_err, requires_cuda

ALGOS = ["3m", "4m", "auto"]
DTYPES = [torch.complex64, torch.complex128]


# The two op variants: complex weight (functional.linear) and real parts (CplxLinear's).
ENTRIES = {"complex": F.linear, "real parts": linear_real_parts}


def make(batch, n_in, n_out, dtype, device, bias=True, seed=0):
    torch.manual_seed(seed)
    x = crandn(*batch, n_in, dtype=dtype, device=device)
    w = crandn(n_out, n_in, dtype=dtype, device=device) / math.sqrt(n_in)
    b = crandn(n_out, dtype=dtype, device=device) if bias else None
    return x, w, b


# ------------------------------------------------------------------------------ forward
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [(), (7,), (2, 3), (2500,)])  # 2500 rows: several 1024-row chunks
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("entry", ENTRIES)
def test_forward_matches_reference(device, algorithm, dtype, batch, bias, entry):
    x, w, b = make(batch, 33, 17, dtype, device, bias)
    y = ENTRIES[entry](x, w, b, algorithm)
    assert y.shape == (*batch, 17) and y.dtype == dtype and y.is_contiguous()
    assert rel_err(y, ref.linear(x, w, b)) < TOL[dtype]


def _noncontiguous_inputs(device, dtype):
    torch.manual_seed(1)
    base = crandn(40, 30, dtype=dtype, device=device)
    w = crandn(9, 30, dtype=dtype, device=device)
    return {
        "transposed": (crandn(30, 40, dtype=dtype, device=device).t(), w),
        "column-sliced": (crandn(40, 60, dtype=dtype, device=device)[:, ::2], w),
        "permuted-3d": (crandn(30, 4, 10, dtype=dtype, device=device).permute(1, 2, 0), w),
        "conj-view-input": (base.conj(), w),
        "conj-view-weight": (base, w.conj()),
        "transposed-weight": (base, crandn(30, 9, dtype=dtype, device=device).t()),
        "expanded": (crandn(1, 30, dtype=dtype, device=device).expand(40, 30), w),
        "neg-view": (torch._neg_view(base), w),
    }


@pytest.mark.parametrize("algorithm", ["3m", "4m"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["transposed", "column-sliced", "permuted-3d", "conj-view-input",
                                  "conj-view-weight", "transposed-weight", "expanded", "neg-view"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_forward_strided_inputs(device, algorithm, dtype, case, entry):
    x, w = _noncontiguous_inputs(device, dtype)[case]
    b = crandn(9, dtype=dtype, device=device)
    assert rel_err(ENTRIES[entry](x, w, b, algorithm), ref.linear(x, w, b)) < TOL[dtype]


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("entry", ENTRIES)
def test_empty_batch_and_zero_features(device, algorithm, entry):
    linear = ENTRIES[entry]
    x, w, b = make((0,), 8, 5, torch.complex64, device)
    y = linear(x.requires_grad_(), w.requires_grad_(), b.requires_grad_(), algorithm)
    assert y.shape == (0, 5)
    y.sum().abs().backward()
    assert x.grad.shape == (0, 8) and torch.equal(w.grad, torch.zeros_like(w))
    assert torch.equal(b.grad, torch.zeros_like(b))
    # in_features == 0: the output is the bias alone
    x0, w0, b0 = make((4,), 0, 3, torch.complex128, device)
    assert torch.allclose(linear(x0, w0, b0, algorithm), b0.expand(4, 3))


# ------------------------------------------------------------------------------ backward
@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [(6,), (2, 5), (2500,)])
@pytest.mark.parametrize("entry", ENTRIES)
def test_backward_matches_reference(device, algorithm, dtype, batch, entry):
    x, w, b = make(batch, 21, 13, dtype, device)
    g = crandn(*batch, 13, dtype=dtype, device=device)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ENTRIES[entry](*leaves, algorithm).backward(g)
    ref_leaves = [t.detach().clone().to(torch.complex128).requires_grad_() for t in (x, w, b)]
    ref.linear(*ref_leaves).backward(g.to(torch.complex128))
    for got, want in zip(leaves, ref_leaves):
        assert got.grad.dtype == dtype and got.grad.shape == got.shape
        assert rel_err(got.grad, want.grad) < TOL[dtype]


@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True), (True, True, False)])
@pytest.mark.parametrize("algorithm", ["3m", "4m"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_backward_output_mask(device, algorithm, mask, entry):
    x, w, _ = make((50,), 12, 7, torch.complex128, device)
    g = crandn(50, 7, device=device)
    if entry == "complex":
        got = ops.linear_complex_backward(g, x, w, algorithm, mask)
    else:
        gx, gw_re, gw_im, gb_re, gb_im = ops.linear_backward(g, x, w.real, w.imag, algorithm, mask)
        got = [gx, (gw_re, gw_im), (gb_re, gb_im)]
    want = [g @ w.conj(), g.T @ x.conj(), g.sum(0)]
    for grads, on, expected in zip(got, mask, want):
        if not on:
            assert grads is None or grads == (None, None)
        elif isinstance(grads, tuple):
            assert grads[0].dtype == torch.float64 and grads[0].is_contiguous() and grads[1].is_contiguous()
            assert rel_err(torch.complex(*grads), expected) < 1e-12
        else:
            assert grads.dtype == torch.complex128 and grads.is_contiguous()
            assert rel_err(grads, expected) < 1e-12


@pytest.mark.parametrize("algorithm", ["3m", "4m"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_only_weight_requires_grad(device, algorithm, entry):
    x, w, b = make((10,), 6, 4, torch.complex128, device)
    w.requires_grad_()
    ENTRIES[entry](x, w, b, algorithm).abs().sum().backward()
    w_ref = w.detach().clone().requires_grad_()
    ref.linear(x, w_ref, b).abs().sum().backward()
    assert rel_err(w.grad, w_ref.grad) < 1e-12


@pytest.mark.parametrize("algorithm", ["3m", "4m"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("entry", ENTRIES)
def test_gradcheck(device, algorithm, bias, entry):
    linear = ENTRIES[entry]
    x, w, b = make((3, 4), 5, 3, torch.complex128, device, bias)
    args = [t.requires_grad_() for t in (x, w, b) if t is not None]
    fn = (lambda x, w, b: linear(x, w, b, algorithm)) if bias else (lambda x, w: linear(x, w, None, algorithm))
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("entry", ENTRIES)
def test_double_backward_raises_clear_error(device, entry):
    x, w, b = make((4,), 5, 3, torch.complex128, device)
    x.requires_grad_()
    y = ENTRIES[entry](x, w, b, "3m")
    (gx,) = torch.autograd.grad(y.abs().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        gx.abs().sum().backward()


# ------------------------------------------------------------------------------ opcheck
def _opcheck_samples(device):
    samples = []
    for dtype in DTYPES:
        x, w, b = make((2, 5), 6, 4, dtype, device)
        samples.append((x, w, b))
        samples.append((x.transpose(0, 1), w, None))  # non-contiguous input
        samples.append((crandn(6, 5, dtype=dtype, device=device).t(), w.conj().resolve_conj(), b))
    return samples


@pytest.mark.parametrize("algorithm", ["3m", "4m", "auto"])
def test_opcheck_forward(device, algorithm):
    for x, w, b in _opcheck_samples(device):
        for requires_grad in (False, True):
            parts = [x, w.real, w.imag] + ([b.real, b.imag] if b is not None else [None, None])
            args = [t.clone().requires_grad_(requires_grad) if t is not None else None for t in parts]
            torch.library.opcheck(torch.ops.cplxfast.linear.default, (*args, algorithm))
        # the real parts as strided views of a complex tensor, the way functional.linear passes them
        torch.library.opcheck(torch.ops.cplxfast.linear.default, (x, w.real, w.imag, None, None, algorithm))


@pytest.mark.parametrize("algorithm", ["3m", "4m", "auto"])
def test_opcheck_complex_forward(device, algorithm):
    for x, w, b in _opcheck_samples(device):
        for requires_grad in (False, True):
            args = [t.clone().requires_grad_(requires_grad) if t is not None else None for t in (x, w, b)]
            torch.library.opcheck(torch.ops.cplxfast.linear_complex.default, (*args, algorithm))


@pytest.mark.parametrize("algorithm", ["3m", "4m"])
@pytest.mark.parametrize("mask", [[True, True, True], [True, False, False], [False, True, True]])
def test_opcheck_complex_backward(device, algorithm, mask):
    for x, w, _ in _opcheck_samples(device):
        g = crandn(*x.shape[:-1], w.shape[0], dtype=x.dtype, device=device)
        torch.library.opcheck(
            torch.ops.cplxfast.linear_complex_backward.default, (g, x, w, algorithm, mask),
            test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"),
        )


@pytest.mark.parametrize("mask", [[True, True, True], [True, False, False], [False, True, True]])
def test_opcheck_backward(device, mask):
    for x, w, _ in _opcheck_samples(device):
        g = crandn(*x.shape[:-1], w.shape[0], dtype=x.dtype, device=device)
        torch.library.opcheck(
            torch.ops.cplxfast.linear_backward.default, (g, x, w.real.clone(), w.imag.clone(), "3m", mask),
            test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"),
        )


@pytest.mark.parametrize("algorithm", ["3m", "4m"])
def test_weight_parts_interleaved_but_misaligned(device, algorithm):
    """(re, im) as adjacent strided views of one real buffer that look interleaved but whose pairs are
    not 2 * sizeof(T) aligned (an odd offset, an odd row stride): read element by element, on CUDA
    as on the CPU (the host decides whether whole-pair accesses are allowed)."""
    torch.manual_seed(0)
    x = crandn(5, 6, dtype=torch.complex64, device=device)
    odd_offset = torch.randn(1 + 3 * 12, device=device)[1:].view(3, 6, 2)
    odd_rows = torch.randn(3, 13, device=device)
    for w_re, w_im in [(odd_offset[..., 0], odd_offset[..., 1]), (odd_rows[:, 0:12:2], odd_rows[:, 1:12:2])]:
        assert w_im.data_ptr() == w_re.data_ptr() + 4 and w_re.stride(1) == 2
        b = torch.randn(1 + 2 * 3, device=device)[1:].view(3, 2)
        y = ops.linear(x, w_re, w_im, b[:, 0], b[:, 1], algorithm)
        want = ref.linear(x, torch.complex(w_re, w_im), torch.complex(b[:, 0], b[:, 1]))
        assert rel_err(y, want) < TOL[torch.complex64]


# ------------------------------------------------------------------------------ 3M accuracy
def _accuracy_case(device, near_real):
    torch.manual_seed(3)
    x = crandn(256, 512, dtype=torch.complex64, device=device)
    w = crandn(128, 512, dtype=torch.complex64, device=device) / math.sqrt(512)
    if near_real:  # imaginary parts 1e-4 of the real parts
        x = torch.complex(x.real, 1e-4 * x.imag)
        w = torch.complex(w.real, 1e-4 * w.imag)
    return x, w


def _imag_rel_err(y, want):
    return ((y.imag.double().cpu() - want.imag.cpu()).norm() / want.imag.cpu().norm()).item()


def test_accuracy_ordinary_data(device):
    x, w = _accuracy_case(device, near_real=False)
    want = ref.linear(x, w)
    for algorithm in ("3m", "4m"):
        y = F.linear(x, w, None, algorithm)
        assert rel_err(y, want) < 1e-6
        assert _imag_rel_err(y, want) < 1e-6


def test_accuracy_near_real_data(device):
    """3M's imaginary part loses componentwise accuracy when |Im| << |Re|; 4M does not."""
    x, w = _accuracy_case(device, near_real=True)
    want = ref.linear(x, w)
    err_3m = _imag_rel_err(F.linear(x, w, None, "3m"), want)
    err_4m = _imag_rel_err(F.linear(x, w, None, "4m"), want)
    assert err_4m < 1e-6  # tight: componentwise accurate
    assert err_3m < 1e-2  # the documented 3M bound on near-real fp32 data (measured ~2.4e-3)
    assert err_3m > 100 * err_4m  # the loss this test guards against is real, not hypothetical
    assert rel_err(F.linear(x, w, None, "3m"), want) < 1e-6  # still normwise accurate


@requires_cuda
def test_tf32_follows_matmul_flag_and_auto_takes_4m_under_it():
    """torch.backends.cuda.matmul.allow_tf32 (False by default) is followed as torch's matmuls follow
    it. Under TF32, 3M's imaginary part (a difference of products as large as the real part) loses
    |Re| / |Im| times TF32's 2^-11, so "auto" takes 4M for complex64 on CUDA while TF32 is allowed."""
    torch.manual_seed(6)
    x = crandn(8192, 512, dtype=torch.complex64, device="cuda")  # large: "auto" is 3m without TF32
    w = crandn(512, 512, dtype=torch.complex64, device="cuda") / math.sqrt(512)
    assert torch.equal(F.linear(x, w, None, "auto"), F.linear(x, w, None, "3m"))
    torch.backends.cuda.matmul.allow_tf32 = True
    assert torch.equal(F.linear(x, w, None, "auto"), F.linear(x, w, None, "4m"))
    xs, ws = torch.complex(x.real, 1e-2 * x.imag)[:512], torch.complex(w.real, 1e-2 * w.imag)
    want = ref.linear(xs, ws)
    imag_3m = _imag_rel_err(F.linear(xs, ws, None, "3m"), want)
    imag_4m = _imag_rel_err(F.linear(xs, ws, None, "4m"), want)
    assert rel_err(F.linear(xs, ws, None, "3m"), want) < 5e-3 and imag_4m < 5e-3
    assert imag_3m > 3 * imag_4m


# ------------------------------------------------------------------------------ errors
def test_bad_input_errors(device):
    x, w, b = make((4,), 6, 3, torch.complex64, device)
    cases = [
        ((x.real, w, b), "input must be a complex64 or complex128 tensor"),
        ((x[:, :5], w, b), "input has 5 features in its last dimension but weight expects in_features=6"),
        ((x, w.to(torch.complex128), b), "weight has dtype ComplexDouble but the input has dtype ComplexFloat"),
        ((x, w, b.to(torch.complex128)), "bias has dtype ComplexDouble but the input has dtype ComplexFloat"),
        ((x, w.real, b), "weight must be a complex64 or complex128 tensor, got Float"),
        ((x, w, b[:2]), r"bias must have shape \[3\]"),
        ((x, w[0], b), "weight must be 2-D"),
        ((x.abs().to(torch.int32), w, b), "input must be a complex64 or complex128"),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message) as info:
            F.linear(*args, "3m")
        assert "cplxfast.linear" in str(info.value)
    with pytest.raises(RuntimeError, match="cplxfast.linear: weight_re must be a real Float tensor .* got Double"):
        ops.linear(x, w.real.double(), w.imag.double())
    with pytest.raises(RuntimeError, match="weight_re has shape \\[3, 6\\] but weight_im has shape \\[3, 5\\]"):
        ops.linear(x, w.real, w.imag[:, :5])
    with pytest.raises(RuntimeError, match="give both bias_re and bias_im, or neither"):
        ops.linear(x, w.real, w.imag, b.real, None)
    with pytest.raises(RuntimeError, match='algorithm must be "auto", "3m" or "4m"'):
        torch.ops.cplxfast.linear(x, w.real, w.imag, b.real, b.imag, "5m")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        F.linear(x, w, b, "fast")


@requires_cuda
def test_device_mismatch_error():
    x, w, b = make((4,), 6, 3, torch.complex64, "cpu")
    with pytest.raises(RuntimeError, match="weight is on cuda:0 but the input is on cpu"):
        F.linear(x, w.cuda(), None, "3m")
    with pytest.raises(RuntimeError, match="weight_re is on cuda:0 but the input is on cpu"):
        ops.linear(x, w.real.cuda(), w.imag.cuda())


def test_backward_bad_grad_shape():
    x, w, _ = make((4,), 6, 3, torch.complex64, "cpu")
    with pytest.raises(RuntimeError, match=r"cplxfast.linear_backward: grad has shape \[4, 2\]"):
        ops.linear_backward(crandn(4, 2, dtype=torch.complex64), x, w.real, w.imag, "3m")
    with pytest.raises(RuntimeError, match=r"cplxfast.linear_complex_backward: grad has shape \[4, 2\]"):
        ops.linear_complex_backward(crandn(4, 2, dtype=torch.complex64), x, w, "3m")


# ------------------------------------------------------------------------------ algorithm choice
def _near_real(device):
    torch.manual_seed(5)
    x = crandn(64, 300, dtype=torch.complex64, device=device)
    w = crandn(40, 300, dtype=torch.complex64, device=device)
    return torch.complex(x.real, 1e-4 * x.imag), torch.complex(w.real, 1e-4 * w.imag)


def test_algorithm_global_per_layer_per_call(device):
    x, w = _near_real(device)
    y3, y4 = F.linear(x, w, None, "3m"), F.linear(x, w, None, "4m")
    assert not torch.equal(y3, y4)  # the two algorithms are distinguishable on this data
    assert cplxfast.get_default_algorithm() == "auto"
    with cplxfast.default_algorithm("3m"):
        assert torch.equal(F.linear(x, w), y3)
        assert torch.equal(F.linear(x, w, None, "4m"), y4)  # per call beats global
        layer = CplxLinear(300, 40, bias=False, algorithm="4m").to(device)
        with torch.no_grad():
            layer.weight.real.copy_(w.real)
            layer.weight.imag.copy_(w.imag)
        assert torch.equal(layer(x), y4)  # per layer beats global
        layer.algorithm = None
        assert torch.equal(layer(x), y3)  # a layer without a choice follows the global default
    assert cplxfast.get_default_algorithm() == "auto"
    cplxfast.set_default_algorithm("4m")
    try:
        assert torch.equal(F.linear(x, w), y4)
    finally:
        cplxfast.set_default_algorithm("auto")
    with pytest.raises(ValueError):
        cplxfast.set_default_algorithm("3M")


def test_auto_uses_backend_gemm_for_small_and_3m_for_large():
    small_x, small_w = _near_real("cpu")
    assert torch.equal(F.linear(small_x, small_w, None, "auto"), F.linear(small_x, small_w, None, "4m"))
    torch.manual_seed(6)
    x = crandn(1024, 512, dtype=torch.complex64)
    w = crandn(512, 512, dtype=torch.complex64)
    x, w = torch.complex(x.real, 1e-4 * x.imag), torch.complex(w.real, 1e-4 * w.imag)
    assert torch.equal(F.linear(x, w, None, "auto"), F.linear(x, w, None, "3m"))
    tall, narrow = crandn(4096, 128, dtype=torch.complex64), crandn(128, 128, dtype=torch.complex64)
    tall, narrow = torch.complex(tall.real, 1e-4 * tall.imag), torch.complex(narrow.real, 1e-4 * narrow.imag)
    assert torch.equal(F.linear(tall, narrow, None, "auto"), F.linear(tall, narrow, None, "3m"))


# ------------------------------------------------------------------------------ module
def test_module_parameters_and_state_dict_layout():
    layer = CplxLinear(5, 3)
    assert [n for n, _ in layer.named_parameters()] == ["weight.imag", "weight.real", "bias.imag", "bias.real"]
    sd = layer.state_dict()
    assert list(sd) == ["weight.imag", "weight.real", "bias.imag", "bias.real"]
    assert sd["weight.real"].shape == (3, 5) and sd["bias.imag"].shape == (3,)
    assert [n for n, _ in CplxLinear(5, 3, bias=False).named_parameters()] == ["weight.imag", "weight.real"]
    assert CplxLinear(5, 3, bias=False).bias is None


def test_module_init_distributions():
    torch.manual_seed(0)
    layer = CplxLinear(400, 300)
    # kaiming_uniform with a' = sqrt(1 + 2*5) = sqrt(11): bound = sqrt(6 / ((1 + 11) fan_in))
    w_bound = math.sqrt(6 / (12 * 400))
    # cplxmodule's bias bound uses its swapped 2-D fan: 1/sqrt(out_features)
    b_bound = 1 / math.sqrt(300)
    for part, bound in ((layer.weight.real, w_bound), (layer.weight.imag, w_bound),
                        (layer.bias.real, b_bound), (layer.bias.imag, b_bound)):
        assert part.abs().max() <= bound
        assert part.abs().max() > 0.95 * bound
        assert abs(part.std().item() - bound / math.sqrt(3)) < 0.1 * bound


def test_module_complex_and_cplx_like_io(device):
    layer = CplxLinear(6, 4).to(device)
    z = crandn(3, 6, dtype=torch.complex64, device=device)
    y = layer(z)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.complex64 and y.shape == (3, 4)
    w = torch.complex(layer.weight.real, layer.weight.imag)
    b = torch.complex(layer.bias.real, layer.bias.imag)
    assert rel_err(y, ref.linear(z, w, b)) < TOL[torch.complex64]

    class Pair:  # any object with .real/.imag tensors, e.g. cplxmodule's Cplx
        def __init__(self, real, imag):
            self.real, self.imag = real, imag

    out = layer(Pair(z.real, z.imag))
    assert isinstance(out, Pair)
    assert torch.equal(out.real, y.real) and torch.equal(out.imag, y.imag)


def test_module_errors():
    layer = CplxLinear(6, 4)
    with pytest.raises(TypeError, match="CplxLinear: expected a complex tensor .* got a real torch.float32 tensor"):
        layer(torch.randn(2, 6))
    with pytest.raises(TypeError, match="CplxLinear: input is torch.complex128 but the layer's parameters are torch.float32"):
        layer(crandn(2, 6))
    with pytest.raises(RuntimeError, match="input has 5 features"):
        layer(crandn(2, 5, dtype=torch.complex64))
    with pytest.raises(TypeError, match="CplxLinear: expected a complex tensor or a Cplx"):
        layer([1, 2, 3])


def test_module_float64_parameters():
    layer = CplxLinear(6, 4, dtype=torch.float64)
    z = crandn(3, 6)
    w = torch.complex(layer.weight.real, layer.weight.imag)
    b = torch.complex(layer.bias.real, layer.bias.imag)
    assert rel_err(layer(z), ref.linear(z, w, b)) < 1e-12


# ------------------------------------------------------------------------------ cplxmodule
@pytest.mark.cplxmodule
@pytest.mark.parametrize("bias", [True, False])
def test_matches_cplxmodule_forward_and_gradients(bias):
    from cplxmodule import Cplx
    from cplxmodule.nn import CplxLinear as TheirLinear

    torch.manual_seed(0)
    theirs, ours = TheirLinear(16, 8, bias=bias), CplxLinear(16, 8, bias=bias)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    re, im = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    x_theirs = Cplx(re.clone().requires_grad_(), im.clone().requires_grad_())
    x_ours = Cplx(re.clone().requires_grad_(), im.clone().requires_grad_())
    y_theirs, y_ours = theirs(x_theirs), ours(x_ours)
    assert isinstance(y_ours, Cplx)
    torch.testing.assert_close(y_ours.real, y_theirs.real, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y_ours.imag, y_theirs.imag, rtol=1e-5, atol=1e-5)
    g_re, g_im = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    ((y_theirs.real * g_re).sum() + (y_theirs.imag * g_im).sum()).backward()
    ((y_ours.real * g_re).sum() + (y_ours.imag * g_im).sum()).backward()
    theirs_params, ours_params = dict(theirs.named_parameters()), dict(ours.named_parameters())
    assert list(theirs_params) == list(ours_params)
    for name in theirs_params:
        torch.testing.assert_close(ours_params[name].grad, theirs_params[name].grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_ours.real.grad, x_theirs.real.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_ours.imag.grad, x_theirs.imag.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.cplxmodule
def test_checkpoint_round_trip_with_cplxmodule():
    from cplxmodule.nn import CplxLinear as TheirLinear

    theirs, ours = TheirLinear(7, 3), CplxLinear(7, 3)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    back = TheirLinear(7, 3)
    back.load_state_dict(ours.state_dict(), strict=True)
    for (k1, v1), (k2, v2) in zip(theirs.state_dict().items(), back.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    # optimizer state is keyed by parameter order, which matches too
    opt_theirs = torch.optim.Adam(theirs.parameters())
    opt_ours = torch.optim.Adam(ours.parameters())
    assert [p.shape for p in opt_theirs.param_groups[0]["params"]] == [p.shape for p in opt_ours.param_groups[0]["params"]]


# ------------------------------------------------------------------------------ torch.compile
def test_torch_compile_fullgraph_forward_backward():
    torch.manual_seed(0)
    model = torch.nn.Sequential(CplxLinear(12, 16), CplxLinear(16, 4, algorithm="4m"))
    x = crandn(8, 12, dtype=torch.complex64)
    eager = model(x)
    eager.abs().sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)  # inductor: a graph break would raise
    out = compiled(x)
    out.abs().sum().backward()
    torch.testing.assert_close(out, eager)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g)


def test_cplx_parameter_keeps_one_interleaved_buffer():
    """CplxLinear's real and imag Parameters are views of one complex buffer (so "4m" needs no
    copy of the weight); .to()/.double() and load_state_dict keep that layout and the values."""
    layer = CplxLinear(6, 4)
    assert layer.weight.is_interleaved() and layer.bias.is_interleaved()
    w = layer.weight.complex().detach().clone()
    assert torch.equal(w.real, layer.weight.real) and torch.equal(w.imag, layer.weight.imag)
    layer = layer.double()
    assert layer.weight.real.dtype == torch.float64 and layer.weight.is_interleaved()
    torch.testing.assert_close(layer.weight.complex().detach(), w.to(torch.complex128))
    other = CplxLinear(6, 4)
    layer.load_state_dict(other.state_dict())
    assert layer.weight.is_interleaved()
    assert torch.equal(layer.weight.real, other.weight.real.double())
    # gradients still reach both Parameters
    layer(crandn(3, 6)).abs().sum().backward()
    assert layer.weight.real.grad is not None and layer.weight.imag.grad is not None


# ------------------------------------------------------------------------------ torch's nn.Linear, complex
@pytest.mark.parametrize("bias", [True, False])
def test_native_complex_linear_matches_torch_and_converts_in_place(device, bias):
    """cplxfast.nn.Linear is torch.nn.Linear with complex parameters on the fused ops: same
    parameters and state_dict, same outputs and gradients; convert() swaps torch's layer in place,
    keeping its Parameter objects (an optimizer built before keeps working)."""
    torch.manual_seed(0)
    theirs = torch.nn.Linear(12, 7, bias=bias, dtype=torch.complex64, device=device)
    ours = cnn.Linear(12, 7, bias=bias, dtype=torch.complex64, device=device)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(ours.parameters(), theirs.parameters()))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = crandn(3, 5, 12, dtype=torch.complex64, device=device)
    g = crandn(3, 5, 7, dtype=torch.complex64, device=device)
    results = []
    for layer in (theirs, ours):
        xg = x.clone().requires_grad_()
        y = layer(xg)
        results.append((y.detach(), torch.autograd.grad(y, [xg, *layer.parameters()], g)))
    (y0, g0), (y1, g1) = results
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    model = torch.nn.Sequential(theirs, torch.nn.Linear(7, 2, device=device))  # the real layer stays torch's
    params = list(model.parameters())
    assert cnn.convert(model) is model
    assert type(model[0]) is cnn.Linear and type(model[1]) is torch.nn.Linear
    assert all(p is q for p, q in zip(model.parameters(), params))
    torch.testing.assert_close(model[0](x), y0, rtol=1e-5, atol=1e-5)
    assert cnn.convert(torch.nn.Linear(3, 2, dtype=torch.complex128)).__class__ is cnn.Linear
    real = cnn.Linear(4, 3)  # real parameters: torch's own layer
    torch.testing.assert_close(real(torch.ones(2, 4)), torch.nn.functional.linear(torch.ones(2, 4), real.weight, real.bias))


def test_native_complex_linear_compiles_fullgraph():
    torch.manual_seed(0)
    layer = cnn.Linear(8, 4, dtype=torch.complex64)
    x = crandn(3, 8, dtype=torch.complex64)
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), layer(x))
