"""cplxfast.gaussian_reparam: the noise's distribution, repeatability, the float64 reference with
the same noise, gradcheck, opcheck, layouts, errors, compile, and CPU == CUDA noise."""
import math

import pytest
import torch

from cplxfast import _reference as ref
from cplxfast import ops
from conftest import crandn, requires_cuda

DTYPES = [torch.complex64, torch.complex128]
REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def noise(shape, dtype=torch.complex128, device="cpu", seed=0):
    """The noise the op draws for a tensor of this shape right after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    out, _ = ops.gaussian_reparam(torch.zeros(shape, dtype=dtype, device=device),
                                  torch.ones(shape, dtype=REAL[dtype], device=device))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_noise_is_complex_standard_normal(device, dtype):
    """Each part N(0, 1/2), uncorrelated, |e|^2 ~ Exp(1), uniform phase. Bounds: 6 standard errors
    of each statistic for n draws (a correct generator fails one with probability ~1e-8)."""
    n = 400_000
    e = noise((n,), dtype, device).to(torch.complex128).cpu()
    re, im = e.real, e.imag
    se_mean = math.sqrt(0.5 / n)  # sd of a part's sample mean
    se_var = math.sqrt(2 * 0.25 / n)  # sd of a part's sample variance (2 sigma^4 / n)
    for part in (re, im):
        assert abs(part.mean().item()) < 6 * se_mean
        assert abs(part.var().item() - 0.5) < 6 * se_var
    assert abs((re * im).mean().item()) < 6 * 0.5 / math.sqrt(n)
    r2 = e.abs().square()
    for t in (0.25, 1.0, 2.0, 4.0):  # P(|e|^2 > t) = exp(-t): binomial standard error
        p = math.exp(-t)
        assert abs((r2 > t).double().mean().item() - p) < 6 * math.sqrt(p * (1 - p) / n)
    angle = torch.angle(e)
    for q in range(4):  # each quadrant of the phase holds a quarter of the draws
        lo = -math.pi + q * math.pi / 2
        frac = ((angle >= lo) & (angle < lo + math.pi / 2)).double().mean().item()
        assert abs(frac - 0.25) < 6 * math.sqrt(0.25 * 0.75 / n)


def test_noise_repeats_with_the_seed_and_not_without(device):
    a, b = noise((1000,), device=device, seed=5), noise((1000,), device=device, seed=5)
    assert torch.equal(a, b)
    torch.manual_seed(5)
    mu, s2 = torch.zeros(1000, dtype=torch.complex128, device=device), torch.ones(1000, dtype=torch.float64,
                                                                                  device=device)
    first, rng1 = ops.gaussian_reparam(mu, s2)
    second, rng2 = ops.gaussian_reparam(mu, s2)  # the generator moved on
    assert not torch.equal(first, second) and not torch.equal(rng1, rng2)
    assert torch.equal(first, a)


def test_noise_does_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    a = noise((50_001,))
    try:
        torch.set_num_threads(1)
        b = noise((50_001,))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b)


def test_noise_of_an_element_depends_on_its_index_only():
    """A longer draw starts with the shorter one's noise (odd lengths: the last pair half used)."""
    assert torch.equal(noise((7,)), noise((12,))[:7])


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_with_the_same_noise(device, dtype):
    torch.manual_seed(1)
    mu = crandn(6, 9, dtype=dtype, device=device)
    s2 = torch.rand(6, 9, dtype=REAL[dtype], device=device) * 3
    s2[0, :3] = torch.tensor([0.0, 1e-9, 1e-8])  # below, at and above the floor
    s2[1, 0] = 5e-9
    mu.requires_grad_(), s2.requires_grad_()
    e = noise((6, 9), dtype, device, seed=2)
    torch.manual_seed(2)
    out, _ = ops.gaussian_reparam(mu, s2)
    expected = ref.gaussian_reparam(mu, s2, e)
    tol = 1e-6 if dtype == torch.complex64 else 1e-14
    torch.testing.assert_close(out.to(torch.complex128), expected, rtol=tol, atol=tol)
    g = crandn(6, 9, dtype=dtype, device=device)
    got = torch.autograd.grad(out, (mu, s2), g)
    want = torch.autograd.grad(expected, (mu, s2), g.to(torch.complex128))
    torch.testing.assert_close(got[0].to(torch.complex128), want[0].to(torch.complex128), rtol=tol, atol=tol)
    torch.testing.assert_close(got[1].to(torch.float64), want[1].to(torch.float64), rtol=10 * tol, atol=10 * tol)
    assert (got[1][0, :3] == 0).all() and got[1][1, 0] == 0  # clamp's gradient at and below the floor


def test_gradcheck(device):
    torch.manual_seed(0)
    mu = crandn(4, 5, device=device).requires_grad_()
    s2 = (torch.rand(4, 5, dtype=torch.float64, device=device) + 0.1).requires_grad_()

    def f(mu, s2):
        torch.manual_seed(11)  # the same noise on every evaluation
        return ops.gaussian_reparam(mu, s2)[0]

    assert torch.autograd.gradcheck(f, (mu, s2))


def test_opcheck(device):
    torch.manual_seed(0)
    mu, s2 = crandn(3, 4, device=device), torch.rand(3, 4, dtype=torch.float64, device=device)
    torch.library.opcheck(torch.ops.cplxfast.gaussian_reparam.default, (mu, s2),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))
    _, rng = ops.gaussian_reparam(mu, s2)
    torch.library.opcheck(torch.ops.cplxfast.gaussian_reparam_backward.default, (crandn(3, 4, device=device), s2, rng))


def test_rng_is_not_differentiable_and_double_backward_refuses(device):
    mu = crandn(3, device=device).requires_grad_()
    s2 = torch.rand(3, dtype=torch.float64, device=device).requires_grad_()
    out, rng = ops.gaussian_reparam(mu, s2)
    assert not rng.requires_grad and rng.dtype == torch.int64 and rng.device == mu.device
    (g,) = torch.autograd.grad(out.abs().sum(), s2, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


@pytest.mark.parametrize("layout", ["transposed", "channels_last", "strided"])
def test_layouts(device, layout):
    """Outputs keep s2's dense layout; the noise follows s2's memory order; a non-dense s2 is read
    contiguously. Either way the values equal the reference with the noise of that order."""
    torch.manual_seed(0)
    if layout == "transposed":
        mu, s2 = crandn(5, 7, device=device).t(), torch.rand(5, 7, dtype=torch.float64, device=device).t()
    elif layout == "channels_last":
        mu = crandn(2, 3, 4, 5, device=device).to(memory_format=torch.channels_last)
        s2 = torch.rand(2, 3, 4, 5, dtype=torch.float64, device=device).to(memory_format=torch.channels_last)
    else:
        mu, s2 = crandn(6, 8, device=device)[:, ::2], torch.rand(6, 8, dtype=torch.float64, device=device)[:, ::2]
    torch.manual_seed(4)
    out, _ = ops.gaussian_reparam(mu, s2)
    dense = s2.is_contiguous() or s2.is_contiguous(memory_format=torch.channels_last) or layout == "transposed"
    if dense:
        assert out.stride() == s2.stride()
    order = s2 if dense else s2.contiguous()
    flat = noise((s2.numel(),), device=device, seed=4)
    e = torch.empty_strided(order.shape, order.stride(), dtype=flat.dtype, device=device)
    e.as_strided((e.numel(),), (1,)).copy_(flat)  # element i of memory gets noise i
    torch.testing.assert_close(out, ref.gaussian_reparam(mu, s2, e).to(out.device), rtol=1e-14, atol=1e-14)


def test_lazily_negated_s2_is_read_with_its_sign(device):
    """s2 = -v as a neg-bit view (contiguous or transposed) gives what -v materialised in the same
    layout gives: the values -v (clamped to the floor), the noise in the same order."""
    mu = crandn(5, 7, device=device)
    v = torch.rand(5, 7, dtype=torch.float64, device=device) - 0.5
    for lazy, dense in ((torch._neg_view(v), -v), (torch._neg_view(v.t()), -v.t())):
        assert lazy.is_neg() and not dense.is_neg() and lazy.stride() == dense.stride()
        m = mu if lazy.shape == mu.shape else mu.t()
        torch.manual_seed(2)
        a, rng = ops.gaussian_reparam(m, lazy)
        torch.manual_seed(2)
        b, _ = ops.gaussian_reparam(m, dense)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        g = crandn(*m.shape, device=device)
        torch.testing.assert_close(ops.gaussian_reparam_backward(g, lazy, rng),
                                   ops.gaussian_reparam_backward(g, dense, rng), rtol=0, atol=0)


def test_errors():
    mu, s2 = crandn(3, 4), torch.rand(3, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="mu must be a complex"):
        ops.gaussian_reparam(mu.real, s2)
    with pytest.raises(RuntimeError, match="s2 must be a real"):
        ops.gaussian_reparam(mu, s2.float())
    with pytest.raises(RuntimeError, match="s2 has shape"):
        ops.gaussian_reparam(mu, s2[:2])
    _, rng = ops.gaussian_reparam(mu, s2)
    with pytest.raises(RuntimeError, match="rng must be"):
        ops.gaussian_reparam_backward(mu, s2, rng.float())


def test_empty(device):
    out, rng = ops.gaussian_reparam(crandn(0, 3, device=device), torch.ones(0, 3, dtype=torch.float64, device=device))
    assert out.shape == (0, 3) and rng.shape == (2,)
    assert ops.gaussian_reparam_backward(out, torch.ones(0, 3, dtype=torch.float64, device=device), rng).shape == (0, 3)


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    mu = crandn(4, 6, dtype=torch.complex64).requires_grad_()
    s2 = torch.rand(4, 6).requires_grad_()

    def f(mu, s2):
        return ops.gaussian_reparam(mu, s2)[0] * 2

    torch.manual_seed(3)
    eager = f(mu, s2)
    g_eager = torch.autograd.grad(eager.abs().sum(), (mu, s2))
    torch.manual_seed(3)
    compiled = torch.compile(f, fullgraph=True)(mu, s2)
    g_compiled = torch.autograd.grad(compiled.abs().sum(), (mu, s2))
    torch.testing.assert_close(compiled, eager)
    for a, b in zip(g_compiled, g_eager):
        torch.testing.assert_close(a, b)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_draws_the_cpu_noise_from_the_same_state(dtype):
    """Both backends run the same Philox on the same (seed, offset): equal bits, equal noise up to
    the last ulps of log/sin/cos."""
    torch.manual_seed(0)
    mu = crandn(1001, dtype=dtype, device="cuda")
    s2 = torch.rand(1001, dtype=REAL[dtype], device="cuda")
    out, rng = ops.gaussian_reparam(mu, s2)
    g = crandn(1001, dtype=dtype, device="cuda")
    grad_s2 = ops.gaussian_reparam_backward(g, s2, rng)
    cpu_grad = ops.gaussian_reparam_backward(g.cpu(), s2.cpu(), rng.cpu())
    tol = 1e-5 if dtype == torch.complex64 else 1e-12
    torch.testing.assert_close(grad_s2.cpu(), cpu_grad, rtol=tol, atol=tol)


# ---- the fused Gaussian layers: linear_gaussian, conv_gaussian ------------------------------------------------------
def noise_in_layout_of(s2, dtype, seed):
    """The noise the ops draw for outputs in s2's layout (its memory order) right after manual_seed(seed)."""
    torch.manual_seed(seed)
    return ops.gaussian_reparam(torch.zeros_like(s2, dtype=dtype), torch.ones_like(s2))[0]


def gaussian_params(weight_shape, dtype, device, bias=True, scale=1.0):
    """(weight_re, weight_im, bias_re, bias_im, log_sigma2), real, requiring grad; log_sigma2 spread
    over [-6, 0] so that s2 is neither negligible nor dominant."""
    real = REAL[dtype]
    w = [(torch.randn(weight_shape, dtype=real, device=device) * scale).requires_grad_() for _ in range(2)]
    b = [torch.randn(weight_shape[0], dtype=real, device=device).requires_grad_() if bias else None for _ in range(2)]
    ls2 = (torch.rand(weight_shape, dtype=real, device=device) * 6 - 6).requires_grad_()
    return w[0], w[1], b[0], b[1], ls2


def complex_or_none(re, im):
    return None if re is None else torch.complex(re, im)


def assert_matches_reference(out, s2, expected, expected_s2, inputs, dtype):
    tol = 2e-4 if dtype == torch.complex64 else 1e-10
    torch.testing.assert_close(s2.to(torch.float64), expected_s2, rtol=tol, atol=tol)
    torch.testing.assert_close(out.to(torch.complex128), expected, rtol=tol, atol=tol)
    g = crandn(*out.shape, dtype=dtype, device=out.device)
    wanted = [t for t in inputs if t is not None]
    got = torch.autograd.grad(out, wanted, g)
    want = torch.autograd.grad(expected, wanted, g.to(torch.complex128))
    for a, b in zip(got, want):
        torch.testing.assert_close(a.to(b.dtype), b, rtol=10 * tol, atol=10 * tol)


LINEAR_CASES = [((300, 530), 520, "3m"), ((2, 3, 7), 5, "3m"), ((5, 3), 7, "4m"), ((4, 6), 3, "auto"), ((0, 4), 3, "3m"),
                ((3, 4), 0, "3m"), ((3, 0), 2, "3m")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape,out_features,algorithm", LINEAR_CASES)
def test_linear_gaussian_matches_reference_with_the_same_noise(device, dtype, bias, x_shape, out_features, algorithm):
    """Every path (3M fused: the chunked planes, several chunks at 300 x 530 -> 520 on CPU; 4M: the
    plain layer, then the noise) against the float64 reference given the op's own noise, forward
    and gradients of x, the weight and bias parts and log_sigma2."""
    torch.manual_seed(0)
    K = x_shape[-1]
    x = crandn(*x_shape, dtype=dtype, device=device).requires_grad_()
    w_re, w_im, b_re, b_im, ls2 = gaussian_params((out_features, K), dtype, device, bias, scale=max(K, 1) ** -0.5)
    torch.manual_seed(7)
    out, s2, rng = ops.linear_gaussian(x, w_re, w_im, b_re, b_im, ls2, algorithm)
    assert out.shape == (*x_shape[:-1], out_features) and s2.shape == out.shape and s2.dtype == REAL[dtype]
    assert rng.dtype == torch.int64 and not s2.requires_grad and not rng.requires_grad
    e = noise_in_layout_of(s2, dtype, seed=7)
    expected = ref.linear_gaussian(x, torch.complex(w_re, w_im), complex_or_none(b_re, b_im), ls2, e)
    xr, xi = x.detach().to(torch.complex128).real, x.detach().to(torch.complex128).imag
    expected_s2 = (xr * xr + xi * xi) @ ls2.detach().double().exp().T
    assert_matches_reference(out, s2, expected, expected_s2, (x, w_re, w_im, b_re, b_im, ls2), dtype)


# (x shape, weight shape, stride, padding, dilation, groups, algorithm, channels_last)
CONV_CASES = [
    ((2, 6, 20), (4, 6, 3), [1], [1], [1], 1, "3m", False),
    ((2, 6, 9, 11), (6, 2, 3, 3), [2, 1], [1, 0], [1, 2], 3, "3m", True),
    ((2, 4, 9, 11), (4, 1, 3, 3), [1, 1], [1, 1], [1, 1], 4, "auto", False),  # depthwise: the fused direct kernel
    ((1, 3, 5, 6, 7), (2, 3, 3, 3, 3), [1, 1, 1], [1, 1, 1], [1, 1, 1], 1, "4m", False),
    ((2, 3, 5, 6, 7), (2, 3, 3, 3, 3), [1, 1, 1], [1, 0, 1], [1, 1, 1], 1, "3m", True),
    ((0, 3, 8), (2, 3, 3), [1], [1], [1], 1, "3m", False),
    ((2, 3, 5, 4), (1, 3, 3, 3), [1, 1], [1, 1], [1, 1], 1, "3m", True),  # one output channel: [B H W, 1] rows
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gaussian_matches_reference_with_the_same_noise(device, dtype, bias, case):
    x_shape, w_shape, stride, padding, dilation, groups, algorithm, channels_last = case
    torch.manual_seed(0)
    x = crandn(*x_shape, dtype=dtype, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    x.requires_grad_()
    fan_in = math.prod(w_shape[1:])
    w_re, w_im, b_re, b_im, ls2 = gaussian_params(w_shape, dtype, device, bias, scale=fan_in ** -0.5)
    torch.manual_seed(7)
    out, s2, rng = ops.conv_gaussian(x, w_re, w_im, b_re, b_im, ls2, stride, padding, dilation, groups, algorithm)
    assert out.stride() == s2.stride()  # one layout, the activations' (channels_last in, channels_last out)
    assert out.is_contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d) \
        if channels_last else out.is_contiguous()
    e = noise_in_layout_of(s2, dtype, seed=7)
    expected = ref.conv_gaussian(x, torch.complex(w_re, w_im), complex_or_none(b_re, b_im), ls2, e, stride, padding,
                                 dilation, groups)
    F = torch.nn.functional
    fn = (F.conv1d, F.conv2d, F.conv3d)[x.dim() - 3]
    xd = x.detach().to(torch.complex128)
    expected_s2 = fn(xd.real ** 2 + xd.imag ** 2, ls2.detach().double().exp(), None, stride, padding, dilation, groups)
    assert_matches_reference(out, s2, expected, expected_s2, (x, w_re, w_im, b_re, b_im, ls2), dtype)


def test_gaussian_ops_gradcheck(device):
    torch.manual_seed(0)
    x = crandn(3, 4, device=device).requires_grad_()
    params = gaussian_params((5, 4), torch.complex128, device)

    def linear(x, *params):
        torch.manual_seed(11)  # the same noise on every evaluation
        return ops.linear_gaussian(x, *params, "3m")[0]

    assert torch.autograd.gradcheck(linear, (x, *params))
    xc = crandn(2, 4, 5, 6, device=device).contiguous(memory_format=torch.channels_last).requires_grad_()
    cparams = gaussian_params((4, 2, 2, 3), torch.complex128, device, bias=False)

    def conv(x, *params):
        torch.manual_seed(12)
        return ops.conv_gaussian(x, *params, [1, 2], [1, 1], [1, 1], 2, "3m")[0]

    assert torch.autograd.gradcheck(conv, (xc, *cparams))


def test_gaussian_ops_opcheck(device):
    torch.manual_seed(0)
    x = crandn(3, 4, device=device)
    w_re, w_im, b_re, b_im, ls2 = (t.detach() for t in gaussian_params((5, 4), torch.complex128, device))
    utils = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(torch.ops.cplxfast.linear_gaussian.default, (x, w_re, w_im, b_re, b_im, ls2, "3m"),
                          test_utils=utils)
    _, s2, rng = ops.linear_gaussian(x, w_re, w_im, b_re, b_im, ls2, "3m")
    torch.library.opcheck(torch.ops.cplxfast.linear_gaussian_backward.default,
                          (crandn(3, 5, device=device), x, w_re, w_im, ls2, s2, rng, "3m", [True, True, True, True]))
    xc = crandn(2, 4, 6, 5, device=device)
    cw_re, cw_im, cb_re, cb_im, cls2 = (t.detach() for t in gaussian_params((3, 4, 3, 3), torch.complex128, device))
    conv_args = ([1, 1], [1, 0], [1, 1], 1, "3m")
    torch.library.opcheck(torch.ops.cplxfast.conv_gaussian.default, (xc, cw_re, cw_im, cb_re, cb_im, cls2, *conv_args),
                          test_utils=utils)
    out, s2, rng = ops.conv_gaussian(xc, cw_re, cw_im, cb_re, cb_im, cls2, *conv_args)
    torch.library.opcheck(torch.ops.cplxfast.conv_gaussian_backward.default,
                          (crandn(*out.shape, device=device), xc, cw_re, cw_im, cls2, s2, rng, *conv_args[:4], "3m",
                           [True, False, True, True]))


def test_gaussian_ops_draw_fresh_noise_and_refuse_double_backward(device):
    x = crandn(4, 3, device=device).requires_grad_()
    params = gaussian_params((2, 3), torch.complex128, device)
    first, _, rng1 = ops.linear_gaussian(x, *params, "3m")
    second, _, rng2 = ops.linear_gaussian(x, *params, "3m")
    assert not torch.equal(first, second) and not torch.equal(rng1, rng2)
    (g,) = torch.autograd.grad(first.abs().sum(), params[-1], create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


def test_gaussian_ops_errors():
    x = crandn(4, 3)
    w_re, w_im, b_re, b_im, ls2 = (t.detach() for t in gaussian_params((2, 3), torch.complex128, "cpu"))
    with pytest.raises(RuntimeError, match="log_sigma2 has shape"):
        ops.linear_gaussian(x, w_re, w_im, b_re, b_im, ls2.t(), "3m")
    with pytest.raises(RuntimeError, match="log_sigma2"):
        ops.linear_gaussian(x, w_re, w_im, b_re, b_im, ls2.float(), "3m")
    with pytest.raises(RuntimeError, match="log_sigma2 has shape"):
        ops.conv_gaussian(crandn(1, 3, 5), w_re[..., None], w_im[..., None], None, None, ls2, [1], [0], [1], 1, "3m")


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_gaussian_ops_match_cpu_given_the_same_products(dtype):
    """The CUDA ops against the CPU ones on the same inputs: the same mu and s2 (to rounding), and
    the CPU's backward of the CUDA forward's state gives the CUDA backward's gradients."""
    torch.manual_seed(0)
    x = crandn(64, 48, dtype=dtype)
    params = [t.detach() for t in gaussian_params((40, 48), dtype, "cpu", scale=48 ** -0.5)]
    out, s2, rng = ops.linear_gaussian(x.cuda(), *[p.cuda() for p in params], "3m")
    cpu_s2 = torch.nn.functional.linear(x.abs().square(), params[-1].exp())
    tol = 1e-4 if dtype == torch.complex64 else 1e-10
    torch.testing.assert_close(s2.cpu(), cpu_s2, rtol=tol, atol=tol)
    e = (out.cpu() - ops.linear(x, params[0], params[1], params[2], params[3], "3m")) / s2.cpu().clamp(1e-8).sqrt()
    g = crandn(64, 40, dtype=dtype)
    cpu_grad_s2 = ops.gaussian_reparam_backward(g, s2.cpu(), rng.cpu())
    torch.testing.assert_close(cpu_grad_s2, (g.conj() * e).real / (2 * s2.cpu().sqrt()), rtol=10 * tol, atol=10 * tol)
