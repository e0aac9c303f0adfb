"""Property-based checks (hypothesis) of every op against the float64 reference: random shapes
(size-1 and empty dims included), random layouts (transposed, sliced, channels_last, conj views),
both dtypes, forward and backward. Bounded so the suite stays fast."""
import os

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cplxfast import _reference as ref  # noqa: E402
from cplxfast import functional as F  # noqa: E402
from cplxfast import ops  # noqa: E402
from conftest import linear_real_parts, rel_err  # noqa: E402

# `make fuzz` raises the count (CPLXFAST_FUZZ_EXAMPLES) and draws new cases each run.
EXAMPLES = int(os.environ.get("CPLXFAST_FUZZ_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize="CPLXFAST_FUZZ_EXAMPLES" not in os.environ)
DTYPES = st.sampled_from([torch.complex64, torch.complex128])
TOL = {torch.complex64: 1e-4, torch.complex128: 1e-10}


def tensor_with_layout(draw, shape, dtype):
    """A complex tensor of `shape` in a drawn layout: contiguous, permuted, sliced or conj view."""
    layout = draw(st.sampled_from(["contiguous", "permuted", "sliced", "conj"]))
    if layout == "permuted" and len(shape) >= 2:
        perm = draw(st.permutations(range(len(shape))))
        inverse = [perm.index(i) for i in range(len(shape))]
        return torch.randn(*[shape[p] for p in perm], dtype=dtype).permute(*inverse)
    if layout == "sliced" and len(shape) >= 1:
        return torch.randn(*shape[:-1], 2 * shape[-1], dtype=dtype)[..., ::2]
    if layout == "conj":
        return torch.randn(*shape, dtype=dtype).conj()
    return torch.randn(*shape, dtype=dtype)


def close(got, want, dtype):
    if want.numel() == 0:
        return got.shape == want.shape
    return rel_err(got, want) < TOL[dtype]


def backward_pair(fn, ref_fn, inputs, grad):
    """Gradients of fn and ref_fn (float64) w.r.t. inputs for upstream grad."""
    ours = [t.detach().clone().requires_grad_() for t in inputs]
    theirs = [t.detach().clone().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_() for t in inputs]
    torch.autograd.backward(fn(*ours), grad)
    torch.autograd.backward(ref_fn(*theirs), grad.to(torch.complex128))
    return [(a.grad, b.grad) for a, b in zip(ours, theirs)]


@SETTINGS
@given(data=st.data(), dtype=DTYPES, batch=st.lists(st.integers(0, 5), max_size=2), n_in=st.integers(1, 24),
       n_out=st.integers(1, 24), algorithm=st.sampled_from(["3m", "4m", "auto"]), bias=st.booleans(),
       complex_weight=st.booleans())
def test_linear_fuzz(data, dtype, batch, n_in, n_out, algorithm, bias, complex_weight):
    torch.manual_seed(0)
    linear = F.linear if complex_weight else linear_real_parts  # the two op variants
    x = tensor_with_layout(data.draw, (*batch, n_in), dtype)
    w = tensor_with_layout(data.draw, (n_out, n_in), dtype)
    b = torch.randn(n_out, dtype=dtype) if bias else None
    assert close(linear(x, w, b, algorithm), ref.linear(x, w, b), dtype)
    g = torch.randn(*batch, n_out, dtype=dtype)
    inputs = [x, w] + ([b] if bias else [])
    grads = backward_pair(lambda *a: linear(*a, algorithm=algorithm), lambda *a: ref.linear(*a), inputs, g)
    for got, want in grads:
        assert got.shape == want.shape and close(got, want, dtype)


@SETTINGS
@given(data=st.data(), dtype=DTYPES, shape=st.lists(st.integers(0, 5), min_size=1, max_size=4))
def test_modrelu_fuzz(data, dtype, shape):
    torch.manual_seed(0)
    z = tensor_with_layout(data.draw, tuple(shape), dtype)
    k = data.draw(st.integers(0, len(shape)))  # threshold over the last k dims, each kept or broadcast
    tau_shape = [s if data.draw(st.booleans()) else 1 for s in shape[len(shape) - k:]] or [1]
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    tau = 0.5 * torch.randn(*tau_shape, dtype=real)
    assert close(ops.modrelu(z, tau), ref.modrelu(z, tau), dtype)
    g = torch.randn(*shape, dtype=dtype)
    (gz_got, gz_want), (gt_got, gt_want) = backward_pair(ops.modrelu, ref.modrelu, [z, tau], g)
    assert close(gz_got, gz_want, dtype)
    assert gt_got.shape == tau.shape
    assert gt_want.abs().sum() == 0 or rel_err(gt_got, gt_want) < TOL[dtype] * 10


@SETTINGS
@given(data=st.data(), dtype=DTYPES, batch=st.integers(1, 4), C=st.integers(1, 4),
       spatial=st.lists(st.integers(1, 4), max_size=3), training=st.booleans(), affine=st.booleans())
def test_batch_norm_fuzz(data, dtype, batch, C, spatial, training, affine):
    torch.manual_seed(0)
    shape = (batch, C, *spatial)
    if training and batch * int(torch.tensor(spatial).prod()) < 2:
        return  # one value per channel: an error in training (tested elsewhere)
    z = tensor_with_layout(data.draw, shape, dtype) * 2 + (1 - 0.5j)
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    W = torch.eye(2, dtype=real).unsqueeze(-1) + 0.3 * torch.randn(2, 2, C, dtype=real) if affine else None
    b = torch.randn(2, C, dtype=real) if affine else None
    rm = torch.randn(2, C, dtype=real)
    A = torch.randn(C, 2, 2, dtype=real)
    rv = (A @ A.transpose(1, 2) + torch.eye(2, dtype=real)).permute(1, 2, 0).contiguous()
    stats = (None, None) if training else (rm, rv)
    out = ops.batch_norm(z, W, b, *stats, training, 1e-5)[0]
    assert close(out, ref.batch_norm(z, W, b, *stats, training=training)[0], dtype)
    g = torch.randn(*shape, dtype=dtype)
    inputs = [z] + ([W, b] if affine else [])

    def ours(z, W=None, b=None):
        return ops.batch_norm(z, W, b, *stats, training, 1e-5)[0]

    def theirs(z, W=None, b=None):
        return ref.batch_norm(z, W, b, *stats, training=training)[0]

    for got, want in backward_pair(ours, theirs, inputs, g):
        assert got.shape == want.shape
        assert want.abs().max() < 1e-12 or rel_err(got, want) < TOL[dtype] * 10


@SETTINGS
@given(data=st.data(), dtype=DTYPES, n=st.integers(1, 3), batch=st.integers(0, 3), groups=st.integers(1, 3),
       transposed=st.booleans(), algorithm=st.sampled_from(["3m", "4m", "auto"]), bias=st.booleans())
def test_conv_fuzz(data, dtype, n, batch, groups, transposed, algorithm, bias):
    torch.manual_seed(0)
    depthwise = not transposed and n <= 2 and data.draw(st.booleans())  # the fused kernel's case
    c_in = groups * (1 if depthwise else data.draw(st.integers(1, 2)))
    c_out = c_in if depthwise else groups * data.draw(st.integers(1, 2))
    k = [data.draw(st.integers(1, 3)) for _ in range(n)]
    stride = [data.draw(st.integers(1, 3)) for _ in range(n)]
    dilation = [data.draw(st.integers(1, 2)) for _ in range(n)]
    padding = [data.draw(st.integers(0, 2)) for _ in range(n)]
    output_padding = [data.draw(st.integers(0, max(s, d) - 1)) if transposed else 0 for s, d in zip(stride, dilation)]
    span = [d * (kk - 1) + 1 for d, kk in zip(dilation, k)]
    size = [data.draw(st.integers(max(1, sp - 2 * p), 7)) for sp, p in zip(span, padding)]
    if transposed and any((s - 1) * st_ - 2 * p + sp + op <= 0
                          for s, st_, p, sp, op in zip(size, stride, padding, span, output_padding)):
        return  # no output: an error (tested elsewhere)
    x = tensor_with_layout(data.draw, (batch, c_in, *size), dtype)
    w_shape = (c_in, c_out // groups, *k) if transposed else (c_out, c_in // groups, *k)
    w = tensor_with_layout(data.draw, w_shape, dtype)
    b = torch.randn(c_out, dtype=dtype) if bias else None
    geo = (stride, padding, dilation, transposed, output_padding, groups)

    def ours(x, w, b=None):
        return ops.conv(x, w.real, w.imag, None if b is None else b.real, None if b is None else b.imag, *geo, algorithm)

    def theirs(x, w, b=None):
        return ref.conv(x, w, b, stride, padding, dilation, groups, transposed, output_padding)

    want = theirs(x, w, b)
    assert close(ours(x, w, b), want, dtype)
    g = torch.randn(*want.shape, dtype=dtype)
    for got, want_grad in backward_pair(ours, theirs, [x, w] + ([b] if bias else []), g):
        assert got.shape == want_grad.shape
        assert want_grad.numel() == 0 or want_grad.abs().max() < 1e-12 or close(got, want_grad, dtype)
