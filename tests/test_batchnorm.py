"""cplxfast.batch_norm: forward/backward vs reference (train and eval), gradcheck, opcheck, layouts,
statistics, accuracy with a large mean, errors, modules, cplxmodule interop, compile."""
import pytest
import torch

from cplxfast import _reference as ref
from cplxfast import ops
from cplxfast.nn import CplxBatchNorm1d, CplxBatchNorm2d, CplxBatchNorm3d
from conftest import TOL, crandn, rel_err, run_again_with_32_byte_vectors

DTYPES = [torch.complex64, torch.complex128]
REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}
SHAPES = [(8, 3), (4, 3, 7), (4, 3, 5, 6), (2, 3, 2, 3, 4)]


def make(shape, dtype, device, affine=True, seed=0):
    torch.manual_seed(seed)
    z = crandn(*shape, dtype=dtype, device=device) * 1.5 + (0.5 - 0.25j)
    # correlated real and imaginary parts, so the whitening is not diagonal
    z = torch.complex(z.real, 0.6 * z.real + 0.8 * z.imag)
    C, real = shape[1], REAL[dtype]
    W = torch.eye(2, dtype=real, device=device).unsqueeze(-1) + 0.3 * torch.randn(2, 2, C, dtype=real, device=device)
    b = torch.randn(2, C, dtype=real, device=device)
    return (z, W, b) if affine else (z, None, None)


def running_stats(C, dtype, device, seed=1):
    torch.manual_seed(seed)
    real = REAL[dtype]
    mean = torch.randn(2, C, dtype=real, device=device)
    A = torch.randn(C, 2, 2, dtype=real, device=device)
    cov = (A @ A.transpose(1, 2) + torch.eye(2, dtype=real, device=device)).permute(1, 2, 0).contiguous()
    return mean, cov


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_training_forward_and_statistics(device, dtype, shape, affine):
    z, W, b = make(shape, dtype, device, affine)
    out, mean, cov = ops.batch_norm(z, W, b, None, None, True, 1e-5)
    want, want_mean, want_cov = ref.batch_norm(z, W, b)
    assert out.shape == z.shape and out.dtype == dtype
    assert rel_err(out, want) < TOL[dtype]
    assert mean.dtype == REAL[dtype] and mean.shape == (2, shape[1]) and cov.shape == (2, 2, shape[1])
    torch.testing.assert_close(mean.double(), want_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cov.double(), want_cov, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_eval_forward_uses_running_statistics(device, dtype, shape):
    z, W, b = make(shape, dtype, device)
    rm, rv = running_stats(shape[1], dtype, device)
    out, mean, cov = ops.batch_norm(z, W, b, rm, rv, False, 1e-5)
    assert mean.numel() == 0 and cov.numel() == 0
    assert rel_err(out, ref.batch_norm(z, W, b, rm, rv, training=False)[0]) < TOL[dtype]


def _backward_case(device, dtype, shape, training, affine=True, layout=None):
    z, W, b = make(shape, dtype, device, affine)
    if layout is not None:
        z = layout(z)
    rm, rv = running_stats(shape[1], dtype, device)
    stats = (None, None) if training else (rm, rv)
    g = crandn(*shape, dtype=dtype, device=device)
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (z, W, b)]
    ops.batch_norm(leaves[0], leaves[1], leaves[2], *stats, training, 1e-5)[0].backward(g)
    ref_leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (z, W, b)]
    ref.batch_norm(*ref_leaves, *stats, training=training)[0].backward(g)
    for got, want in zip(leaves, ref_leaves):
        if got is not None:
            assert got.grad.dtype == got.dtype and got.grad.shape == got.shape
            assert rel_err(got.grad, want.grad) < (1e-4 if dtype == torch.complex64 else 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_backward_matches_reference(device, dtype, shape, training):
    _backward_case(device, dtype, shape, training)


@pytest.mark.parametrize("training", [True, False])
def test_backward_without_affine(device, training):
    _backward_case(device, torch.complex128, (4, 3, 5), training, affine=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["channels_last", "channels_last_3d", "transposed", "conj"])
def test_layouts(device, dtype, training, layout):
    shape = (2, 3, 2, 3, 4) if layout == "channels_last_3d" else (4, 3, 5, 6)
    fn = {
        "channels_last": lambda t: t.to(memory_format=torch.channels_last),
        "channels_last_3d": lambda t: t.to(memory_format=torch.channels_last_3d),
        "transposed": lambda t: t.transpose(-1, -2).contiguous().transpose(-1, -2),
        "conj": lambda t: t.conj().resolve_conj().conj(),  # a lazily conjugated tensor
    }[layout]
    _backward_case(device, dtype, shape, training, layout=fn)
    z, W, b = make(shape, dtype, device)
    out = ops.batch_norm(fn(z), W, b, None, None, True, 1e-5)[0]
    assert out.stride() == torch.empty_like(fn(z)).stride()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(6, 37, 13, 11), (3, 5, 29, 31)])
def test_sizes_that_split_the_kernels_blocks(device, dtype, channels_last, shape):
    # The CPU sum loops work in chunks of 8 elements, blocks of 512 elements (runs) or 512 rows
    # (channels_last) and tasks of 16384 elements: these shapes give odd channel counts, runs and
    # rows with tails, runs longer than a block, and tasks that start and end inside a run or a row.
    layout = (lambda t: t.contiguous(memory_format=torch.channels_last)) if channels_last else None
    for training in (True, False):
        _backward_case(device, dtype, shape, training, layout=layout)
    z, W, b = make(shape, dtype, device)
    z = layout(z) if layout else z
    out, mean, cov = ops.batch_norm(z, W, b, None, None, True, 1e-5)
    want, want_mean, want_cov = ref.batch_norm(z, W, b)
    assert rel_err(out, want) < TOL[dtype]
    torch.testing.assert_close(mean.double(), want_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cov.double(), want_cov, rtol=1e-5, atol=1e-6)


def test_gradcheck(device):
    z, W, b = make((3, 2, 4), torch.complex128, device)
    fn = lambda z, W, b: ops.batch_norm(z, W, b, None, None, True, 1e-5)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z.requires_grad_(), W.requires_grad_(), b.requires_grad_()))
    rm, rv = running_stats(2, torch.complex128, device)
    fn_eval = lambda z, W, b: ops.batch_norm(z, W, b, rm, rv, False, 1e-5)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn_eval, (z, W, b))


def test_opcheck(device):
    for dtype in DTYPES:
        z, W, b = make((4, 3, 5), dtype, device)
        rm, rv = running_stats(3, dtype, device)
        for zz in (z, z.transpose(0, 2).contiguous().transpose(0, 2)):
            torch.library.opcheck(torch.ops.cplxfast.batch_norm.default,
                                  (zz.clone().requires_grad_(), W.clone().requires_grad_(), b.clone().requires_grad_(), None, None, True, 1e-5))
            torch.library.opcheck(torch.ops.cplxfast.batch_norm.default, (zz, W, b, rm, rv, False, 1e-5))
            torch.library.opcheck(torch.ops.cplxfast.batch_norm.default, (zz, None, None, None, None, True, 1e-5))
            _, mean, cov = ops.batch_norm(zz, W, b, None, None, True, 1e-5)
            for mask in ([True, True, True], [True, False, False], [False, True, True]):
                torch.library.opcheck(torch.ops.cplxfast.batch_norm_backward.default, (torch.randn_like(zz), zz, W, mean, cov, True, mask))
                torch.library.opcheck(torch.ops.cplxfast.batch_norm_backward.default, (torch.randn_like(zz), zz, W, rm, rv, False, mask))


def test_large_mean_fp32_accuracy(device):
    torch.manual_seed(0)
    z = (1e3 + 1e3j) + crandn(64, 4, 32, dtype=torch.complex64, device=device)
    out, mean, cov = ops.batch_norm(z, None, None, None, None, True, 1e-5)
    want, want_mean, want_cov = ref.batch_norm(z)
    assert rel_err(out, want) < 1e-5
    torch.testing.assert_close(cov.double(), want_cov, rtol=1e-4, atol=1e-5)


def test_large_mean_fp32_accuracy_channels_last(device):
    """Channels_last with few channels and many pixels: the CPU's per-row float sums over 20k rows
    (flushed to double every 512) keep the statistics and the gradient sums accurate."""
    torch.manual_seed(1)
    z = (1e3 + 1e3j) + crandn(8, 3, 50, 50, dtype=torch.complex64, device=device)
    z = z.contiguous(memory_format=torch.channels_last)
    out, mean, cov = ops.batch_norm(z, None, None, None, None, True, 1e-5)
    want, want_mean, want_cov = ref.batch_norm(z)
    assert rel_err(out, want) < 1e-5
    torch.testing.assert_close(cov.double(), want_cov, rtol=1e-4, atol=1e-5)
    g = crandn(*z.shape, dtype=torch.complex64, device=device).contiguous(memory_format=torch.channels_last)
    zz = z.detach().clone().requires_grad_()
    ops.batch_norm(zz, None, None, None, None, True, 1e-5)[0].backward(g)
    z64 = z.to(torch.complex128).requires_grad_()
    ref.batch_norm(z64)[0].backward(g.to(torch.complex128))
    assert rel_err(zz.grad, z64.grad) < 1e-4


def test_constant_channel_is_finite(device):
    z = crandn(8, 3, 4, dtype=torch.complex64, device=device)
    z[:, 1] = 2.0 - 1.0j  # zero variance: eps keeps the whitening finite
    out = ops.batch_norm(z.requires_grad_(), None, None, None, None, True, 1e-5)[0]
    assert torch.isfinite(torch.view_as_real(out)).all()
    out.abs().sum().backward()
    assert torch.isfinite(torch.view_as_real(z.grad)).all()


def test_double_backward_raises_clear_error():
    z, W, b = make((4, 3), torch.complex128, "cpu")
    z.requires_grad_()
    (gz,) = torch.autograd.grad(ops.batch_norm(z, W, b, None, None, True, 1e-5)[0].abs().sum(), z, create_graph=True)
    with pytest.raises(RuntimeError, match="batch_norm_backward: double backward is not supported"):
        gz.abs().sum().backward()


def test_op_errors():
    z, W, b = make((4, 3, 5), torch.complex64, "cpu")
    cases = [
        ((z.real, W, b, None, None, True, 1e-5), "input must be a complex64 or complex128 tensor"),
        ((z[0, 0], W, b, None, None, True, 1e-5), r"input must be \[B, C, \*\]"),
        ((z, W[:, :, :2], b, None, None, True, 1e-5), r"weight must have shape \[2, 2, 3\]"),
        ((z, W, b[:1], None, None, True, 1e-5), r"bias must have shape \[2, 3\]"),
        ((z, W.double(), b, None, None, True, 1e-5), "weight must be a real Float tensor"),
        ((z, W, b, None, None, False, 1e-5), "needs running_mean and running_var"),
        ((z, W, b, torch.zeros(2, 4), torch.zeros(2, 2, 4), False, 1e-5), r"mean \(running_mean\) must have shape \[2, 3\]"),
        ((z[:1, :, :1], W, b, None, None, True, 1e-5), "expected more than 1 value per channel when training"),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message) as info:
            ops.batch_norm(*args)
        assert "cplxfast.batch_norm" in str(info.value)


# ------------------------------------------------------------------------------ modules
def test_module_parameters_and_buffers():
    bn = CplxBatchNorm2d(5)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert torch.equal(bn.weight, torch.eye(2).unsqueeze(-1).expand(2, 2, 5)) and torch.equal(bn.bias, torch.zeros(2, 5))
    assert torch.equal(bn.running_var, torch.eye(2).unsqueeze(-1).expand(2, 2, 5))
    plain = CplxBatchNorm1d(5, affine=False, track_running_stats=False)
    assert list(plain.state_dict()) == [] and plain.weight is None and plain.running_mean is None


def test_module_errors():
    with pytest.raises(ValueError, match=r"CplxBatchNorm2d: expected 4D input \(got 3D input\)"):
        CplxBatchNorm2d(3)(crandn(2, 3, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="CplxBatchNorm1d: expected 2D or 3D input"):
        CplxBatchNorm1d(3)(crandn(2, 3, 4, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="expected 4 channels"):
        CplxBatchNorm1d(4)(crandn(2, 3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        CplxBatchNorm1d(3)(crandn(1, 3, dtype=torch.complex64))
    with pytest.raises(ValueError):  # torch's own BatchNorm raises the same kind of error
        torch.nn.BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(TypeError, match="CplxBatchNorm2d: expected a complex tensor"):
        CplxBatchNorm2d(3)(torch.randn(2, 3, 4, 4))


@pytest.mark.cplxmodule
@pytest.mark.parametrize("kind,shape", [(1, (16, 4)), (1, (8, 4, 6)), (2, (4, 4, 5, 5)), (3, (2, 4, 3, 3, 3))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_matches_cplxmodule_training_and_eval(kind, shape, momentum):
    import cplxmodule.nn as theirs_nn
    from cplxmodule import Cplx

    import cplxfast.nn as ours_nn

    theirs = getattr(theirs_nn, f"CplxBatchNorm{kind}d")(4, momentum=momentum)
    ours = getattr(ours_nn, f"CplxBatchNorm{kind}d")(4, momentum=momentum)
    torch.manual_seed(0)
    with torch.no_grad():
        theirs.weight.add_(0.2 * torch.randn_like(theirs.weight))
        theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for step in range(3):
        re, im = torch.randn(*shape) + step, torch.randn(*shape) * 2
        x_theirs = Cplx(re.clone().requires_grad_(), im.clone().requires_grad_())
        x_ours = Cplx(re.clone().requires_grad_(), im.clone().requires_grad_())
        y_theirs, y_ours = theirs(x_theirs), ours(x_ours)
        assert isinstance(y_ours, Cplx)
        torch.testing.assert_close(y_ours.real, y_theirs.real, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(y_ours.imag, y_theirs.imag, rtol=1e-4, atol=1e-5)
        g_re, g_im = torch.randn_like(re), torch.randn_like(im)
        torch.autograd.backward([y_theirs.real, y_theirs.imag], [g_re, g_im])
        torch.autograd.backward([y_ours.real, y_ours.imag], [g_re, g_im])
        torch.testing.assert_close(x_ours.real.grad, x_theirs.real.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(x_ours.imag.grad, x_theirs.imag.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, rtol=1e-4, atol=1e-4)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=1e-5, atol=1e-6)
    theirs.eval(), ours.eval()
    re, im = torch.randn(*shape), torch.randn(*shape)
    y_theirs, y_ours = theirs(Cplx(re, im)), ours(Cplx(re, im))
    torch.testing.assert_close(y_ours.real, y_theirs.real, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y_ours.imag, y_theirs.imag, rtol=1e-4, atol=1e-5)
    back = getattr(theirs_nn, f"CplxBatchNorm{kind}d")(4, momentum=momentum)
    back.load_state_dict(ours.state_dict(), strict=True)


def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    model = torch.nn.Sequential(CplxBatchNorm2d(3), CplxBatchNorm2d(3, affine=False))
    z = crandn(4, 3, 5, 5, dtype=torch.complex64)
    eager = model(z)
    eager.abs().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    stats = [t.clone() for t in model.buffers()]
    model.zero_grad()
    for m in model:
        m.reset_running_stats()
    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True)(z)
    out.abs().sum().backward()
    torch.testing.assert_close(out, eager)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g)
    for t, s in zip(model.buffers(), stats):
        torch.testing.assert_close(t, s)


@pytest.mark.cplxmodule
@pytest.mark.parametrize("affine,track", [(False, True), (True, False), (False, False)])
def test_matches_cplxmodule_affine_and_tracking_options(affine, track):
    import cplxmodule.nn as theirs_nn
    from cplxmodule import Cplx

    theirs = theirs_nn.CplxBatchNorm1d(3, affine=affine, track_running_stats=track)
    ours = CplxBatchNorm1d(3, affine=affine, track_running_stats=track)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    torch.manual_seed(0)
    for mode in ("train", "eval"):
        theirs.train(mode == "train"), ours.train(mode == "train")
        re, im = torch.randn(10, 3, 4) + 1, torch.randn(10, 3, 4)
        y_theirs, y_ours = theirs(Cplx(re, im)), ours(Cplx(re, im))
        torch.testing.assert_close(y_ours.real, y_theirs.real, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(y_ours.imag, y_theirs.imag, rtol=1e-4, atol=1e-5)
    for (name, mine), theirs_buffer in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(mine, theirs_buffer, msg=name)


def test_the_32_byte_cpu_kernels_too():
    """This file's tests again with the 32-byte CPU kernels (conftest.py)."""
    run_again_with_32_byte_vectors(__file__)
