"""cplxfast.modrelu: forward, backward, gradcheck, opcheck, broadcasting, strides, z = 0, NaN,
errors, modules, cplxmodule interop, compile."""
import math
import subprocess
import sys

import pytest
import torch

from cplxfast import _reference as ref
from cplxfast import functional as F
from cplxfast import ops
from cplxfast.nn import CplxAdaptiveModReLU, CplxModReLU, ModReLU
from conftest import TOL, crandn, environment_with_vector_bytes, rel_err, run_again_with_32_byte_vectors

DTYPES = [torch.complex64, torch.complex128]
REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}

# (input shape, threshold shape): scalar, per channel, trailing, whole trailing block, and a
# threshold broadcast in the middle of its block ([C, 1, W]).
CASES = [
    ((4, 3, 5, 6), (1,)),
    ((4, 3, 5, 6), (3, 1, 1)),
    ((4, 3, 5, 6), (6,)),
    ((4, 3, 5, 6), (3, 5, 6)),
    ((4, 3, 5, 6), (3, 1, 6)),
    ((7, 9), (9,)),
    ((11,), (1,)),
    ((2, 3, 4), (1, 1, 1)),
]


def make(shape, tau_shape, dtype, device, seed=0):
    torch.manual_seed(seed)
    z = crandn(*shape, dtype=dtype, device=device)
    tau = 0.5 * torch.randn(*tau_shape, dtype=REAL[dtype], device=device)
    return z, tau


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,tau_shape", CASES)
def test_forward_matches_reference(device, dtype, shape, tau_shape):
    z, tau = make(shape, tau_shape, dtype, device)
    out = ops.modrelu(z, tau)
    assert out.shape == z.shape and out.dtype == dtype
    assert rel_err(out, ref.modrelu(z, tau)) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,tau_shape", CASES)
def test_backward_matches_reference(device, dtype, shape, tau_shape):
    z, tau = make(shape, tau_shape, dtype, device)
    g = crandn(*shape, dtype=dtype, device=device)
    zl, tl = z.clone().requires_grad_(), tau.clone().requires_grad_()
    ops.modrelu(zl, tl).backward(g)
    zr, tr = z.detach().clone().requires_grad_(), tau.detach().clone().requires_grad_()
    ref.modrelu(zr, tr).backward(g)
    assert zl.grad.dtype == dtype and tl.grad.shape == tau.shape and tl.grad.dtype == tau.dtype
    assert rel_err(zl.grad, zr.grad) < TOL[dtype]
    assert rel_err(tl.grad, tr.grad) < (1e-5 if dtype == torch.complex64 else 1e-12)


def _strided_inputs(device, dtype):
    torch.manual_seed(2)
    base = crandn(4, 3, 5, 6, dtype=dtype, device=device)
    return {
        "channels_last": base.to(memory_format=torch.channels_last),
        "transposed": crandn(4, 3, 6, 5, dtype=dtype, device=device).transpose(-1, -2),
        "sliced": crandn(4, 3, 5, 12, dtype=dtype, device=device)[..., ::2],
        "conj-view": base.conj(),
        "expanded": crandn(1, 3, 5, 6, dtype=dtype, device=device).expand(4, 3, 5, 6),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["channels_last", "transposed", "sliced", "conj-view", "expanded"])
@pytest.mark.parametrize("tau_shape", [(3, 1, 1), (1,), (5, 6)])
def test_strided_inputs(device, dtype, case, tau_shape):
    z = _strided_inputs(device, dtype)[case]
    tau = 0.5 * torch.randn(*tau_shape, dtype=REAL[dtype], device=device)
    out = ops.modrelu(z, tau)
    assert rel_err(out, ref.modrelu(z, tau)) < TOL[dtype]
    assert out.stride() == torch.empty_like(z).stride()  # layout as the fake kernel says
    g = crandn(*z.shape, dtype=dtype, device=device).to(memory_format=torch.channels_last)
    gz, gt = ops.modrelu_backward(g, z, tau)
    zr, tr = z.detach().clone().requires_grad_(), tau.clone().requires_grad_()
    ref.modrelu(zr, tr).backward(g)
    assert rel_err(gz, zr.grad) < TOL[dtype]
    assert rel_err(gt, tr.grad) < (1e-5 if dtype == torch.complex64 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 5, 37, 41), (3, 64, 20, 30)])
def test_channels_last_threshold_gradient_over_many_rows(device, dtype, shape):
    """Many rows per channel: the per-channel float sums are flushed to double every few rows,
    and with 7 x 37 x 41 rows of 5 the threads' halves start in the middle of a row."""
    torch.manual_seed(3)
    z = crandn(*shape, dtype=dtype, device=device).to(memory_format=torch.channels_last)
    g = crandn(*shape, dtype=dtype, device=device).to(memory_format=torch.channels_last)
    tau = 0.5 * torch.rand(shape[1], 1, 1, dtype=REAL[dtype], device=device)
    gz, gt = ops.modrelu_backward(g, z, tau)
    zr, tr = z.detach().to(torch.complex128).requires_grad_(), tau.double().requires_grad_()
    ref.modrelu(zr, tr).backward(g.to(torch.complex128))
    assert rel_err(gz, zr.grad) < TOL[dtype]
    assert rel_err(gt, tr.grad) < (1e-5 if dtype == torch.complex64 else 1e-12)


def test_channels_last_output_stays_channels_last(device):
    z = crandn(2, 8, 4, 4, dtype=torch.complex64, device=device).to(memory_format=torch.channels_last)
    out = ops.modrelu(z, torch.zeros(8, 1, 1, device=device))
    assert out.is_contiguous(memory_format=torch.channels_last)


def _away_from_kink(shape, tau_shape, device):
    """Moduli in [0.5, 1.5], |tau| <= 0.2: no element sits near |z| = tau, where modReLU has a kink."""
    torch.manual_seed(4)
    phase = torch.rand(*shape, dtype=torch.float64, device=device) * 2 * math.pi
    modulus = 0.5 + torch.rand(*shape, dtype=torch.float64, device=device)
    z = torch.polar(modulus, phase)
    tau = 0.4 * torch.rand(*tau_shape, dtype=torch.float64, device=device) - 0.2
    return z, tau


@pytest.mark.parametrize("shape,tau_shape", [((2, 3, 4), (3, 1)), ((5,), (1,)), ((2, 3, 4), (2, 1, 4))])
def test_gradcheck(device, shape, tau_shape):
    z, tau = _away_from_kink(shape, tau_shape, device)
    assert torch.autograd.gradcheck(ops.modrelu, (z.requires_grad_(), tau.requires_grad_()))


def test_gradient_where_scale_is_zero():
    """Where 1 - tau/|z| <= 0 the output and both gradients are 0."""
    z = torch.tensor([0.1 + 0.1j, 0.3 - 0.2j], dtype=torch.complex128, requires_grad=True)
    tau = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    out = ops.modrelu(z, tau)
    assert torch.equal(out, torch.zeros_like(out))
    out.abs().sum().backward()
    assert torch.equal(z.grad, torch.zeros_like(z)) and torch.equal(tau.grad, torch.zeros_like(tau))


@pytest.mark.parametrize("tau_value", [-0.3, 0.0, 0.2])
def test_exact_zero_input(device, tau_value):
    """z = 0: output 0; gradient as cplxmodule computes it (the factor relu(1 - tau/1e-5), which is
    0 for tau >= 1e-5 and large for tau < 0), and the threshold gradient 0."""
    z = torch.zeros(3, dtype=torch.complex128, device=device, requires_grad=True)
    tau = torch.full((1,), tau_value, dtype=torch.float64, device=device, requires_grad=True)
    g = torch.tensor([1 + 2j, -1j, 0.5], dtype=torch.complex128, device=device)
    out = ops.modrelu(z, tau)
    assert torch.equal(out, torch.zeros_like(out))
    out.backward(g)
    factor = max(0.0, 1 - tau_value / 1e-5)
    torch.testing.assert_close(z.grad, g * factor)
    assert tau.grad.item() == 0


def test_nan_propagates():
    z = crandn(2, 5, dtype=torch.complex64)
    z[0, 1] = complex(float("nan"), 0)
    tau = torch.tensor([0.1])
    out = ops.modrelu(z, tau)
    assert torch.isnan(out[0, 1]).all() and not torch.isnan(out[1]).any()
    torch.testing.assert_close(out, ref.modrelu(z, tau).to(out.dtype), equal_nan=True)
    g = crandn(2, 5, dtype=torch.complex64)
    gz, gt = ops.modrelu_backward(g, z, tau)
    assert torch.isnan(gz[0, 1]).all() and not torch.isnan(gz[1]).any() and torch.isnan(gt).all()
    g[1, 2] = complex(0, float("inf"))  # Inf in the gradient does not hang or crash either
    ops.modrelu_backward(g, z, tau)


@pytest.mark.parametrize("eps", [1e-5, 0.0])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_special_value_stays_with_its_element(device, memory_format, eps):
    """A NaN in z is that element's NaN and its channel's NaN threshold gradient; every other
    element and channel gets what it gets without it. (The CPU kernels do a stretch of elements
    with a special value again element by element, its threshold gradients from scratch: a
    gradient counted twice, or a NaN leaking into a neighbour, fails here.)"""
    torch.manual_seed(7)
    z = crandn(3, 5, 6, 7, dtype=torch.complex64, device=device).contiguous(memory_format=memory_format)
    tau = 0.5 * torch.rand(5, 1, 1, device=device)
    g = crandn(*z.shape, dtype=torch.complex64, device=device)
    bad = z.clone()
    bad[1, 2, 3, 4] = complex(float("nan"), 0.5)
    out_clean, out_bad = ops.modrelu(z, tau, eps), ops.modrelu(bad, tau, eps)
    (gz_clean, gt_clean), (gz_bad, gt_bad) = (ops.modrelu_backward(g, x, tau, eps=eps) for x in (z, bad))
    at = torch.zeros(z.shape, dtype=torch.bool, device=device)
    at[1, 2, 3, 4] = True
    assert torch.isnan(torch.view_as_real(out_bad[at])).all() and torch.isnan(torch.view_as_real(gz_bad[at])).all()
    torch.testing.assert_close(out_bad[~at], out_clean[~at], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gz_bad[~at], gz_clean[~at], rtol=1e-6, atol=1e-6)
    assert torch.isnan(gt_bad[2]).all()
    others = torch.arange(5, device=device) != 2
    torch.testing.assert_close(gt_bad[others], gt_clean[others], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_infinite_gradient_where_the_output_is_zero(device, memory_format):
    """Where 1 - tau / |z| <= 0 both gradients are 0 (modrelu_math::grads, as the CUDA kernels
    compute it), an infinite upstream gradient included, and the other elements are untouched."""
    torch.manual_seed(8)
    z = crandn(2, 4, 24, 24, dtype=torch.complex64, device=device).contiguous(memory_format=memory_format)
    tau = torch.full((4, 1, 1), 0.5, device=device)
    z[0, 1, 21, 21] = 0.1 + 0.2j  # |z| < tau: out = 0; element 525 of its plane, past a float partial sum's 512
    g = crandn(*z.shape, dtype=torch.complex64, device=device)
    gz_clean, gt_clean = ops.modrelu_backward(g, z, tau)
    g[0, 1, 21, 21] = complex(float("inf"), float("-inf"))
    gz, gt = ops.modrelu_backward(g, z, tau)
    assert gz[0, 1, 21, 21] == 0
    torch.testing.assert_close(gz, gz_clean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gt, gt_clean, rtol=1e-5, atol=1e-5)


def test_large_gradient_on_a_large_modulus(device):
    """complex64 with |g| |z| past float's range, |g| and |z|^2 within it: the gradient to z is the
    float64 reference's, finite (the maths divides by |z| before it multiplies by g, as
    modrelu_math does)."""
    z = torch.tensor([1e10, 0.6 + 0.8j, 1e10j], dtype=torch.complex64, device=device)
    g = torch.tensor([1e30j, 1e30, -1e30], dtype=torch.complex64, device=device)
    tau = torch.tensor([0.5], device=device)
    gz, gt = ops.modrelu_backward(g, z, tau)
    zr, tr = z.to(torch.complex128).requires_grad_(), tau.double().requires_grad_()
    ref.modrelu(zr, tr).backward(g.to(torch.complex128))
    assert torch.isfinite(torch.view_as_real(gz)).all()
    assert rel_err(gz, zr.grad) < TOL[torch.complex64]
    torch.testing.assert_close(gt.double(), tr.grad, rtol=1e-5, atol=0)


def test_empty_input(device):
    z = crandn(0, 3, 4, dtype=torch.complex64, device=device).requires_grad_()
    tau = torch.randn(3, 1, device=device, requires_grad=True)
    out = ops.modrelu(z, tau)
    assert out.shape == (0, 3, 4)
    out.sum().abs().backward()
    assert z.grad.shape == z.shape and torch.equal(tau.grad, torch.zeros_like(tau))


def test_double_backward_raises_clear_error():
    z, tau = _away_from_kink((4,), (1,), "cpu")
    z.requires_grad_()
    (gz,) = torch.autograd.grad(ops.modrelu(z, tau).abs().sum(), z, create_graph=True)
    with pytest.raises(RuntimeError, match="modrelu_backward: double backward is not supported"):
        gz.abs().sum().backward()


def test_opcheck(device):
    for dtype in DTYPES:
        for shape, tau_shape in [((2, 3, 4), (3, 1)), ((5,), (1,))]:
            z, tau = make(shape, tau_shape, dtype, device)
            for zz in (z, z.transpose(0, -1)):
                torch.library.opcheck(torch.ops.cplxfast.modrelu.default, (zz.clone().requires_grad_(), tau.clone().requires_grad_()))
                for mask in ([True, True], [True, False], [False, True]):
                    torch.library.opcheck(torch.ops.cplxfast.modrelu_backward.default, (torch.randn_like(zz), zz, tau, mask))
        cl = crandn(2, 3, 4, 4, dtype=dtype, device=device).to(memory_format=torch.channels_last)
        torch.library.opcheck(torch.ops.cplxfast.modrelu.default, (cl, torch.rand(3, 1, 1, dtype=REAL[dtype], device=device)))


def test_bad_input_errors():
    z = crandn(2, 3, 4, dtype=torch.complex64)
    cases = [
        ((z, torch.zeros(5, 1)), r"threshold of shape \[5, 1\] does not broadcast against the input of shape \[2, 3, 4\]"),
        ((z, torch.zeros(1, 1, 1, 1)), "has more dims than the input"),
        ((z.real, torch.zeros(1)), "input must be a complex64 or complex128 tensor"),
        ((z, torch.zeros(1, dtype=torch.float64)), "threshold must be a real Float tensor"),
        ((z, torch.zeros(1, dtype=torch.complex64)), "threshold must be a real Float tensor"),
        ((z.abs().int(), torch.zeros(1)), "input must be a complex64 or complex128 tensor"),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message) as info:
            ops.modrelu(*args)
        assert "cplxfast.modrelu" in str(info.value)
    with pytest.raises(RuntimeError, match="grad has shape"):
        ops.modrelu_backward(crandn(2, 3, dtype=torch.complex64), z, torch.zeros(1))


def test_functional_float_threshold():
    z = crandn(3, 4, dtype=torch.complex128)
    torch.testing.assert_close(F.modrelu(z, 0.25), ref.modrelu(z, torch.tensor([0.25], dtype=torch.float64)))


# ------------------------------------------------------------------------------ modules
def test_module_parameters():
    fixed = CplxModReLU(0.3)
    assert fixed.threshold == 0.3 and list(fixed.state_dict()) == []
    torch.manual_seed(0)
    for value in (None, 1):
        learnable = CplxModReLU(value)
        assert isinstance(learnable.threshold, torch.nn.Parameter) and learnable.threshold.shape == (1,)
        assert 0 <= learnable.threshold.item() < 0.25
        assert list(learnable.state_dict()) == ["threshold"]
    adaptive = CplxAdaptiveModReLU(64, 1, 1)
    assert adaptive.threshold.shape == (64, 1, 1) and list(adaptive.state_dict()) == ["threshold"]
    assert abs(adaptive.threshold.std().item() - 0.02) < 0.01
    assert CplxAdaptiveModReLU().threshold.shape == (1,)
    assert repr(CplxAdaptiveModReLU(64, 1, 1)) == "CplxAdaptiveModReLU(64, 1, 1)"
    arjovsky = ModReLU(8)
    assert torch.equal(arjovsky.bias, torch.zeros(8)) and list(arjovsky.state_dict()) == ["bias"]


def test_modules_compute_modrelu(device):
    z = crandn(2, 8, 3, 3, dtype=torch.complex64, device=device)
    torch.testing.assert_close(CplxModReLU(0.4)(z), ref.modrelu(z, torch.tensor([0.4])).to(z.dtype).to(device))
    adaptive = CplxAdaptiveModReLU(8, 1, 1).to(device)
    torch.testing.assert_close(adaptive(z), ref.modrelu(z, adaptive.threshold.detach()).to(z.dtype))
    arjovsky = ModReLU(8).to(device)
    with torch.no_grad():
        arjovsky.bias.copy_(torch.linspace(-0.5, 0.5, 8))
    torch.testing.assert_close(arjovsky(z), ref.modrelu(z, -arjovsky.bias.detach().view(8, 1, 1)).to(z.dtype))
    # Arjovsky's form: relu(|z| + b) z / |z|
    b = arjovsky.bias.detach().view(8, 1, 1)
    torch.testing.assert_close(arjovsky(z), torch.relu(z.abs() + b) * z / z.abs(), rtol=1e-5, atol=1e-6)
    channels_last = ModReLU(3, dim=-1).to(device)
    assert channels_last(crandn(2, 4, 3, dtype=torch.complex64, device=device)).shape == (2, 4, 3)
    with pytest.raises(ValueError, match="ModReLU: expected 8 channels on dim 1"):
        arjovsky(crandn(2, 5, dtype=torch.complex64, device=device))
    assert CplxModReLU(0.3)(z.to(torch.complex128)).dtype == torch.complex128  # float threshold follows the input


def test_module_errors():
    with pytest.raises(TypeError, match="CplxAdaptiveModReLU: expected a complex tensor"):
        CplxAdaptiveModReLU(3)(torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="does not broadcast"):
        CplxAdaptiveModReLU(5, 1, 1)(crandn(2, 3, 4, 4, dtype=torch.complex64))


@pytest.mark.cplxmodule
@pytest.mark.parametrize("kind", ["fixed", "learnable", "adaptive"])
@pytest.mark.parametrize("tau_sign", [1.0, -1.0])
def test_matches_cplxmodule(kind, tau_sign):
    import cplxmodule.nn as theirs_nn
    from cplxmodule import Cplx

    import cplxfast.nn as ours_nn

    torch.manual_seed(0)
    if kind == "fixed":
        theirs, ours = theirs_nn.CplxModReLU(0.7 * tau_sign), ours_nn.CplxModReLU(0.7 * tau_sign)
    elif kind == "learnable":
        theirs, ours = theirs_nn.CplxModReLU(None), ours_nn.CplxModReLU(None)
    else:
        theirs, ours = theirs_nn.CplxAdaptiveModReLU(4, 1, 1), ours_nn.CplxAdaptiveModReLU(4, 1, 1)
    if kind != "fixed":
        with torch.no_grad():
            theirs.threshold.copy_(tau_sign * (0.2 + torch.rand_like(theirs.threshold)))
        ours.load_state_dict(theirs.state_dict(), strict=True)
    re, im = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    re[0, 0, 0, 0] = im[0, 0, 0, 0] = 0.0  # an exact zero
    x_theirs = Cplx(re.clone().requires_grad_(), im.clone().requires_grad_())
    x_ours = Cplx(re.clone().requires_grad_(), im.clone().requires_grad_())
    y_theirs, y_ours = theirs(x_theirs), ours(x_ours)
    assert isinstance(y_ours, Cplx)
    torch.testing.assert_close(y_ours.real, y_theirs.real)
    torch.testing.assert_close(y_ours.imag, y_theirs.imag)
    g_re, g_im = torch.randn_like(re), torch.randn_like(im)
    torch.autograd.backward([y_theirs.real, y_theirs.imag], [g_re, g_im])
    torch.autograd.backward([y_ours.real, y_ours.imag], [g_re, g_im])
    torch.testing.assert_close(x_ours.real.grad, x_theirs.real.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_ours.imag.grad, x_theirs.imag.grad, rtol=1e-4, atol=1e-4)
    if kind != "fixed":
        torch.testing.assert_close(ours.threshold.grad, theirs.threshold.grad, rtol=1e-4, atol=1e-4)


def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    model = torch.nn.Sequential(CplxAdaptiveModReLU(4, 1), ModReLU(4), CplxModReLU(0.1))
    z = crandn(3, 4, 6, dtype=torch.complex64)
    eager = model(z)
    eager.abs().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True)(z)
    out.abs().sum().backward()
    torch.testing.assert_close(out, eager)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g)


# ------------------------------------------------------------------------------ the modulus floor eps
def _near_zero(dtype, device):
    """Moduli spanning exact zeros, the floors 1e-12 and 1e-5 and ordinary values, with thresholds of
    both signs (positive-bias modReLU: tau < 0)."""
    torch.manual_seed(5)
    modulus = torch.tensor([0.0, 3e-13, 2e-12, 4e-6, 2e-5, 0.05, 0.4, 1.3, 0.0, 7e-6], dtype=torch.float64)
    z = torch.polar(modulus, torch.rand(10, dtype=torch.float64) * 6.2).repeat(3, 1).to(dtype).to(device)
    tau = torch.tensor([[-0.3], [0.0], [0.2]], dtype=REAL[dtype], device=device)
    return z, tau


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [1e-5, 1e-12, 0.0])
def test_eps_forward_and_backward_match_reference(device, dtype, eps):
    z, tau = _near_zero(dtype, device)
    g = crandn(*z.shape, dtype=dtype, device=device)
    zl, tl = z.clone().requires_grad_(), tau.clone().requires_grad_()
    out = ops.modrelu(zl, tl, eps)
    out.backward(g)
    zr, tr = z.clone().requires_grad_(), tau.clone().requires_grad_()
    want = ref.modrelu(zr, tr, eps)
    want.backward(g)
    tol = 1e-5 if dtype == torch.complex64 else 1e-12
    torch.testing.assert_close(out.to(torch.complex128), want, rtol=tol, atol=tol)
    torch.testing.assert_close(zl.grad.to(torch.complex128), zr.grad.to(torch.complex128), rtol=tol, atol=tol)
    torch.testing.assert_close(tl.grad.double(), tr.grad.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_eps_zero_gradient_stays_finite_for_tiny_and_huge_moduli(device, dtype):
    """eps = 0 (torchcvnn's form; its zero bias is tau = -0.0): moduli down to 1e-18 and up to
    1e18, where |z|^-3 leaves float's range, give the reference's finite gradients, also for g = 0.
    (Below ~1e-19, |z|^2 is subnormal in float and |z| loses digits, as before.)"""
    torch.manual_seed(6)
    modulus = torch.tensor([1e-14, 1e-18, 3e-13, 1e13, 1e18, 0.7], dtype=torch.float64)
    z = torch.polar(modulus, torch.rand(6, dtype=torch.float64) * 6.2).repeat(3, 1).to(dtype).to(device)
    tau = torch.tensor([[-0.0], [-0.3], [0.2]], dtype=REAL[dtype], device=device)
    g = crandn(*z.shape, dtype=dtype, device=device)
    g[:, 2] = 0
    zl, tl = z.clone().requires_grad_(), tau.clone().requires_grad_()
    ops.modrelu(zl, tl, 0.0).backward(g)
    zr, tr = z.clone().requires_grad_(), tau.clone().requires_grad_()
    ref.modrelu(zr, tr, 0.0).backward(g)
    assert torch.isfinite(zl.grad).all() and torch.isfinite(tl.grad).all()
    tol = 1e-5 if dtype == torch.complex64 else 1e-12
    torch.testing.assert_close(zl.grad.to(torch.complex128), zr.grad.to(torch.complex128), rtol=tol, atol=tol)
    torch.testing.assert_close(tl.grad.double(), tr.grad.double(), rtol=tol, atol=tol)


def test_eps_zero_is_the_polar_form_at_the_origin(device):
    """eps = 0: relu(|z| - tau) z/|z|, and relu(-tau) + 0i at z = 0 (torch.angle(0) = 0), with zero
    gradient to z there and -Re(g) to tau where tau < 0."""
    z = torch.zeros(2, 3, dtype=torch.complex128, device=device, requires_grad=True)
    tau = torch.tensor([[-0.25], [0.5]], dtype=torch.float64, device=device, requires_grad=True)
    out = ops.modrelu(z, tau, 0.0)
    torch.testing.assert_close(out, torch.tensor([[0.25] * 3, [0.0] * 3], dtype=torch.complex128, device=device))
    g = torch.full((2, 3), 2 - 1j, dtype=torch.complex128, device=device)
    out.backward(g)
    assert torch.equal(z.grad, torch.zeros_like(z))
    torch.testing.assert_close(tau.grad, torch.tensor([[-6.0], [0.0]], dtype=torch.float64, device=device))
    x = torch.polar(torch.tensor([0.7, 2e-30], dtype=torch.float64), torch.tensor([1.0, -2.0], dtype=torch.float64))
    torch.testing.assert_close(ops.modrelu(x.to(device), torch.tensor([-0.1], dtype=torch.float64, device=device), 0.0),
                               torch.polar(x.abs() + 0.1, x.angle()).to(device))


@pytest.mark.parametrize("eps", [1e-12, 0.0])
def test_eps_gradcheck_and_opcheck(device, eps):
    z, tau = _away_from_kink((2, 3, 4), (3, 1), device)
    assert torch.autograd.gradcheck(lambda a, b: ops.modrelu(a, b, eps),
                                    (z.clone().requires_grad_(), tau.clone().requires_grad_()))
    torch.library.opcheck(torch.ops.cplxfast.modrelu.default, (z.clone().requires_grad_(), tau.clone().requires_grad_(), eps))
    torch.library.opcheck(torch.ops.cplxfast.modrelu_backward.default, (torch.randn_like(z), z, tau, [True, True], eps))


def test_eps_must_be_finite_and_non_negative():
    z = crandn(3, dtype=torch.complex64)
    for eps in (-1e-5, float("nan"), float("inf")):
        with pytest.raises(RuntimeError, match="eps .* must be finite and >= 0"):
            ops.modrelu(z, torch.zeros(1), eps)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_threshold_gradient_of_a_partial_last_chunk(device, memory_format):
    """The CPU kernels run chunks of 8 or 16 values and pad the last one with zeros. A padded lane must
    not reach the threshold's gradient: with a tiny eps (1/eps overflows float) and tau = 0 it
    would compute NaN there, while every real element's gradient is finite."""
    torch.manual_seed(5)
    z = crandn(3, 5, 7, 3, dtype=torch.complex64, device=device).contiguous(memory_format=memory_format)
    tau = torch.zeros(5, 1, 1, device=device)
    g = crandn(*z.shape, dtype=torch.complex64, device=device)
    gz, gt = ops.modrelu_backward(g, z, tau, eps=1e-39)
    zr, tr = z.detach().to(torch.complex128).requires_grad_(), tau.double().requires_grad_()
    ref.modrelu(zr, tr, eps=1e-39).backward(g.to(torch.complex128))
    assert torch.isfinite(gt).all()
    assert rel_err(gz, zr.grad) < TOL[torch.complex64]
    assert rel_err(gt, tr.grad) < 1e-5


@pytest.mark.parametrize("eps", [1e-5, 0.0])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_complex64_error_is_a_few_ulps_over_thirty_decades(device, memory_format, eps):
    """Element by element, complex64 within a few float ulps of the float64 reference for moduli
    and thresholds from 1e-15 to 1e15 (the AVX-512 kernels take 1 / |z| from an approximate
    reciprocal square root and a Newton step, the others from a square root and a division): out
    within 8 ulps of |z| + |tau|, grad_z within 16 of |g| (1 + |tau| / |z|), the most the maths
    scales g by (measured: 3 and 7). A 14-bit reciprocal square root alone would be ~1000 off."""
    torch.manual_seed(11)
    shape = (4, 24, 9, 11)
    modulus = 10.0 ** (30 * torch.rand(shape, dtype=torch.float64) - 15)
    z = torch.polar(modulus, 6.3 * torch.rand(shape, dtype=torch.float64)).to(torch.complex64)
    z = z.to(device).contiguous(memory_format=memory_format)
    tau = (10.0 ** (30 * torch.rand(24, 1, 1) - 15) * torch.randn(24, 1, 1).sign()).to(device)
    g = crandn(*shape, dtype=torch.complex64, device=device)
    out = ops.modrelu(z, tau, eps)
    gz, gt = ops.modrelu_backward(g, z, tau, eps=eps)
    zr, tr = z.to(torch.complex128).requires_grad_(), tau.double().requires_grad_()
    want = ref.modrelu(zr, tr, eps)
    want.backward(g.to(torch.complex128))
    ulp, a, t = 2.0 ** -24, z.abs().double(), tau.abs().double()
    assert ((out.to(torch.complex128) - want.detach()).abs() <= 8 * ulp * (a + t)).all()
    assert ((gz.to(torch.complex128) - zr.grad).abs() <= 16 * ulp * g.abs().double() * (1 + t / a)).all()
    # grad_tau: per channel, a sum of -Re(g conj(u)) with |u| = 1 over the channel's live elements
    assert ((gt.double() - tr.grad).abs() <= 1e-6 * g.abs().double().sum((0, 2, 3)).view(24, 1, 1)).all()


def test_the_32_byte_cpu_kernels_too():
    """This file's tests again with the 32-byte CPU kernels (conftest.py)."""
    run_again_with_32_byte_vectors(__file__)


def test_vector_width_setting_is_checked():
    result = subprocess.run(
        [sys.executable, "-c", "import torch, cplxfast; torch.ops.cplxfast.modrelu(torch.ones(4, dtype=torch.complex64), "
                               "torch.zeros(1), 1e-5)"],
        env=environment_with_vector_bytes("128"), capture_output=True, text=True)
    assert result.returncode != 0
    assert "CPLXFAST_VECTOR_BYTES must be 32 or 64" in result.stderr
