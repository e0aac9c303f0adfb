"""Mixed precision (torch.autocast, the ops' operand_dtype): error bounds, the algorithm choice,
autocast dispatch, autograd, opcheck, torch.compile, GradScaler, training, errors.

The error bound. Each real product of the 3M and block forms is a sum of terms a_j b_j whose
operands are rounded once to 16 bits, a_j (1 + d_j) with |d_j| <= u (u = 2^-8 for bfloat16,
2^-11 for float16); the products of two 16-bit numbers are exact in float32 and are accumulated
there. To first order a part's error is sum_j a_j b_j (d_aj + d_bj): mean zero, variance at most
(2 u^2 / 3) sum_j a_j^2 b_j^2 (a relative rounding error has a second moment below u^2 / 3). Summed
over the thousands of elements of a test's output, the squared error concentrates on its mean,
so the normwise bound
    ||error of a part|| <= 1.25 sqrt(2/3) u sqrt(S),  S = sum over elements and terms of a_j^2 b_j^2
holds with room (measured on the CPU: errors at 0.40-0.64 of it), where the terms are those of the part's
real products: for Re, (Ar, Br) and (Ai, Bi); for Im, (Ar, Bi) and (Ai, Br) in the block form, and
(Ar + Ai, Br + Bi), (Ar, Br), (Ai, Bi) in 3M, whose Im = P2 - P0 - P1 carries the rounding of the
sum planes. The float32 accumulation adds ~2^-24 sqrt(K) relative, far below it.
Rounding the real products themselves to 16 bits before the recombination (or the block form's
result) adds u |P| per product; with data whose products grow like K (a common offset, as after
a ReLU-like activation) that is ~sqrt(K) times the bound: test_float32_products_matter.
"""
import math

import pytest
import torch

from cplxfast import _reference as ref
from cplxfast import ops
import cplxfast.nn as cnn
from conftest import crandn, requires_cuda

UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
LOW = list(UNIT_ROUNDOFF)


def data(kind, *shape, device="cpu", seed=0):
    """complex128 test data: random normal, with a common offset (products grow like K), or nearly
    real (imaginary parts 1e-3 of the real ones)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, dtype=torch.complex128, generator=g)
    if kind == "offset":
        z = z + (1 + 1j)
    elif kind == "near_real":
        z = z.real + 1e-3j * z.imag
    return z.to(device)


def bound(A, B, algorithm, u):
    """The normwise bound (module docstring) of (Re, Im) of the complex product A @ B."""
    A, B = A.detach().cpu().to(torch.complex128), B.detach().cpu().to(torch.complex128)
    ar2, ai2, br2, bi2 = A.real ** 2, A.imag ** 2, B.real ** 2, B.imag ** 2
    s_re = (ar2 @ br2 + ai2 @ bi2).sum()
    if algorithm == "3m":
        s_im = ((A.real + A.imag) ** 2 @ (B.real + B.imag) ** 2).sum() + s_re
    else:
        s_im = (ar2 @ bi2 + ai2 @ br2).sum()
    c = 1.25 * math.sqrt(2.0 / 3.0) * u
    return c * s_re.sqrt().item(), c * s_im.sqrt().item()


def part_errors(actual, expected):
    d = actual.detach().cpu().to(torch.complex128) - expected.detach().cpu().to(torch.complex128)
    return d.real.norm().item(), d.imag.norm().item()


def linear_parts_op(x, w, b, algorithm, operand_dtype):
    """The real-parts variant (CplxLinear's) with real parameters cut from complex w and b."""
    return ops.linear(x, w.real.contiguous(), w.imag.contiguous(), None if b is None else b.real.contiguous(),
                      None if b is None else b.imag.contiguous(), algorithm, operand_dtype)


def linear_complex_op(x, w, b, algorithm, operand_dtype):
    return ops.linear_complex(x, w, b, algorithm, operand_dtype)


ENTRIES = {"real parts": linear_parts_op, "complex": linear_complex_op}


def backward_grads(entry, g, x, w, algorithm, operand_dtype):
    """(grad_x, grad_W) complex from the entry's backward op."""
    if entry == "complex":
        gx, gw, _ = ops.linear_complex_backward(g, x, w, algorithm, (True, True, False), operand_dtype)
        return gx, gw
    gx, gw_re, gw_im, _, _ = ops.linear_backward(
        g, x, w.real.contiguous(), w.imag.contiguous(), algorithm, (True, True, False), operand_dtype
    )
    return gx, torch.complex(gw_re, gw_im)


# ----------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("kind", ["random", "offset", "near_real"])
@pytest.mark.parametrize("operand_dtype", LOW)
@pytest.mark.parametrize("algorithm", ["3m", "4m"])
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_errors_within_bound(device, entry, algorithm, operand_dtype, kind):
    M, K, N = 1100, 96, 80  # 1100 rows: two of the CPU's 1024-row 3M chunks
    u = UNIT_ROUNDOFF[operand_dtype]
    x, w = data(kind, M, K, seed=1), data(kind, N, K, seed=2) / math.sqrt(K)
    b, g = data(kind, N, seed=3), data(kind, M, N, seed=4)
    c64 = lambda t: t.to(device=device, dtype=torch.complex64)
    y = ENTRIES[entry](c64(x), c64(w), c64(b), algorithm, operand_dtype)
    assert y.dtype == torch.complex64
    checks = {"y": (y, x @ w.T + b, x, w.T)}
    gx, gw = backward_grads(entry, c64(g), c64(x), c64(w), algorithm, operand_dtype)
    checks["grad_x"] = (gx, g @ w.conj(), g, w.conj())
    checks["grad_W"] = (gw, g.T @ x.conj(), g.T, x.conj())
    for name, (actual, expected, A, B) in checks.items():
        err_re, err_im = part_errors(actual, expected)
        bound_re, bound_im = bound(A, B, algorithm, u)
        assert err_re <= bound_re, (name, err_re, bound_re)
        assert err_im <= bound_im, (name, err_im, bound_im)
        # and the bound is a real one: the errors are those of 16-bit operands, not of float32
        assert err_re > 0.1 * bound_re, (name, err_re, bound_re)


def naive_recombination(x, w, algorithm, operand_dtype):
    """What the kernels avoid: the real products rounded to 16 bits before the recombination."""
    lo = lambda t: t.to(operand_dtype).double()
    xr, xi, wr, wi = x.real.float(), x.imag.float(), w.real.float(), w.imag.float()
    if algorithm == "3m":
        p0, p1 = lo(xr) @ lo(wr).T, lo(xi) @ lo(wi).T
        p2 = lo(xr + xi) @ lo(wr + wi).T
        p0, p1, p2 = (lo(p) for p in (p0, p1, p2))
        return torch.complex(p0 - p1, p2 - p0 - p1)
    # the 4M form as four real GEMMs with 16-bit results (the block form has no such step)
    rr, ii, ri, ir = (lo(lo(a) @ lo(b).T) for a, b in ((xr, wr), (xi, wi), (xr, wi), (xi, wr)))
    return torch.complex(rr - ii, ri + ir)


@pytest.mark.parametrize("algorithm", ["3m", "4m"])
def test_float32_products_matter(algorithm):
    # Offset data: products ~K, operand-rounding errors ~sqrt(K). The kernels pass the bound; the
    # same operands with 16-bit products fail it several times over.
    M, K, N = 512, 256, 64
    u = UNIT_ROUNDOFF[torch.bfloat16]
    x, w = data("offset", M, K, seed=5), data("offset", N, K, seed=6) / math.sqrt(K)
    exact = x @ w.T
    bounds = bound(x, w.T, algorithm, u)
    y = ops.linear_complex(x.to(torch.complex64), w.to(torch.complex64), None, algorithm, torch.bfloat16)
    naive = naive_recombination(x, w, algorithm, torch.bfloat16)
    for part, (ours, theirs, limit) in enumerate(zip(part_errors(y, exact), part_errors(naive, exact), bounds)):
        assert ours <= limit, (part, ours, limit)
        assert theirs > 3 * limit, (part, theirs, limit)


@pytest.mark.parametrize("operand_dtype", LOW)
def test_auto_is_the_block_form_that_keeps_nearly_real_imaginary_parts(device, operand_dtype):
    # Why autocast's "auto" is the block form: 3M rounds the sum plane Re + Im to 16 bits, which
    # wipes out imaginary parts 1e-3 of the real ones; the block form keeps them to ~u relative.
    u = UNIT_ROUNDOFF[operand_dtype]
    M, K, N = 256, 128, 64
    x = data("near_real", M, K, seed=7).to(device)
    w = (data("near_real", N, K, seed=8) / math.sqrt(K)).to(device)
    exact_im = (x @ w.T).imag
    c64 = lambda t: t.to(torch.complex64)
    rel_im = {}
    for algorithm in ("3m", "4m", "auto"):
        y = ops.linear_complex(c64(x), c64(w), None, algorithm, operand_dtype)
        rel_im[algorithm] = ((y.imag.double() - exact_im).norm() / exact_im.norm()).item()
    assert rel_im["4m"] < 2 * u
    assert rel_im["3m"] > 20 * rel_im["4m"]
    y_auto = ops.linear_complex(c64(x), c64(w), None, "auto", operand_dtype)
    assert torch.equal(y_auto, ops.linear_complex(c64(x), c64(w), None, "4m", operand_dtype))


# ------------------------------------------------------------------------------ autocast
def autocast_dtype(device):
    return torch.bfloat16 if device == "cpu" else torch.float16


LAYERS = {
    "CplxLinear": lambda: cnn.CplxLinear(48, 40),
    "nn.Linear complex": lambda: cnn.Linear(48, 40, dtype=torch.complex64),
}


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("dtype", LOW)
def test_autocast_runs_the_layers_mixed(device, layer, dtype):
    torch.manual_seed(0)
    mod = LAYERS[layer]().to(device)
    x = torch.randn(300, 48, dtype=torch.complex64, device=device)
    outside = mod(x)
    with torch.autocast(device, dtype=dtype):
        inside = mod(x)
    # the same as the op with operand_dtype given explicitly, and not the full-precision result
    if layer == "CplxLinear":
        explicit = ops.linear(x, mod.weight.real, mod.weight.imag, mod.bias.real, mod.bias.imag, "auto", dtype)
    else:
        explicit = ops.linear_complex(x, mod.weight, mod.bias, "auto", dtype)
    assert inside.dtype == torch.complex64
    assert torch.equal(inside, explicit)
    assert not torch.equal(inside, outside)
    with torch.autocast(device, dtype=dtype, enabled=False):
        assert torch.equal(mod(x), outside)


def test_autocast_leaves_complex128_and_explicit_dtypes(device):
    torch.manual_seed(0)
    x = torch.randn(64, 32, dtype=torch.complex128, device=device)
    w = torch.randn(16, 32, dtype=torch.complex128, device=device)
    full = ops.linear_complex(x, w, None, "auto")
    x32, w32 = x.to(torch.complex64), w.to(torch.complex64)
    full32 = ops.linear_complex(x32, w32, None, "auto")
    with torch.autocast(device, dtype=autocast_dtype(device)):
        assert torch.equal(ops.linear_complex(x, w, None, "auto"), full)  # autocast casts float32 only
        # an explicit operand_dtype wins over autocast's
        assert torch.equal(ops.linear_complex(x32, w32, None, "auto", torch.float32), full32)
        assert not torch.equal(ops.linear_complex(x32, w32, None, "auto"), full32)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_autocast_gradients(device, layer):
    # Parameters stay float32 / complex64 (master weights) and get gradients of their own dtype,
    # computed with the forward's operand dtype even when backward() runs outside the autocast region.
    torch.manual_seed(0)
    dtype = autocast_dtype(device)
    mod = LAYERS[layer]().to(device)
    x = torch.randn(300, 48, dtype=torch.complex64, device=device, requires_grad=True)
    g = torch.randn(300, 40, dtype=torch.complex64, device=device)
    with torch.autocast(device, dtype=dtype):
        y = mod(x)
    y.backward(g)
    if layer == "CplxLinear":
        w_re, w_im = mod.weight.real, mod.weight.imag
        gx, gw_re, gw_im, gb_re, gb_im = ops.linear_backward(g, x.detach(), w_re, w_im, "auto", (True, True, True), dtype)
        assert w_re.grad.dtype == torch.float32
        assert torch.equal(w_re.grad, gw_re) and torch.equal(w_im.grad, gw_im)
        assert torch.equal(mod.bias.real.grad, gb_re) and torch.equal(mod.bias.imag.grad, gb_im)
    else:
        gx, gw, gb = ops.linear_complex_backward(g, x.detach(), mod.weight.detach(), "auto", (True, True, True), dtype)
        assert mod.weight.grad.dtype == torch.complex64
        assert torch.equal(mod.weight.grad, gw) and torch.equal(mod.bias.grad, gb)
    assert torch.equal(x.grad, gx)


def test_autocast_compile_fullgraph(device):
    torch.manual_seed(0)
    dtype = autocast_dtype(device)
    mod = cnn.CplxLinear(48, 40).to(device)
    x = torch.randn(64, 48, dtype=torch.complex64, device=device, requires_grad=True)

    def step(x):
        with torch.autocast(device, dtype=dtype):
            return torch.view_as_real(mod(x))

    eager = step(x)
    eager.sum().backward()
    grads = [x.grad.clone(), mod.weight.real.grad.clone()]
    x.grad = None
    mod.zero_grad()
    compiled = torch.compile(step, fullgraph=True)(x)
    assert torch.equal(compiled, eager)
    compiled.sum().backward()
    assert torch.equal(x.grad, grads[0]) and torch.equal(mod.weight.real.grad, grads[1])


@pytest.mark.parametrize("operand_dtype", LOW)
def test_opcheck_mixed(device, operand_dtype):
    torch.manual_seed(0)
    x = crandn(9, 12, dtype=torch.complex64, device=device)
    w = crandn(7, 12, dtype=torch.complex64, device=device)
    b = crandn(7, dtype=torch.complex64, device=device)
    g = crandn(9, 7, dtype=torch.complex64, device=device)
    for algorithm in ("3m", "4m"):
        torch.library.opcheck(torch.ops.cplxfast.linear.default,
                              (x, w.real, w.imag, b.real, b.imag, algorithm, operand_dtype))
        torch.library.opcheck(torch.ops.cplxfast.linear_complex.default, (x, w, b, algorithm, operand_dtype))
        backward_utils = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
        torch.library.opcheck(torch.ops.cplxfast.linear_complex_backward.default,
                              (g, x, w, algorithm, [True, True, True], operand_dtype), test_utils=backward_utils)
        torch.library.opcheck(torch.ops.cplxfast.linear_backward.default,
                              (g, x, w.real, w.imag, algorithm, [True, True, True], operand_dtype),
                              test_utils=backward_utils)


def test_grad_scaler_fp16(device):
    # GradScaler's unscale/inf check sees the layer's real float32 gradients as for any layer.
    torch.manual_seed(0)
    mod = cnn.CplxLinear(32, 8).to(device)
    opt = torch.optim.SGD(mod.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 10)
    x = torch.randn(64, 32, dtype=torch.complex64, device=device)
    before = mod.weight.real.detach().clone()
    with torch.autocast(device, dtype=torch.float16):
        loss = mod(x).abs().square().mean()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2.0 ** 10  # finite gradients: no skipped step, no back-off
    assert not torch.equal(mod.weight.real.detach(), before)
    assert torch.isfinite(mod.weight.real).all()


def test_training_under_autocast_follows_float32(device):
    # A small complex MLP fitting a linear map, 60 Adam steps from the same init. 16-bit operands
    # perturb each step's products by ~u relative (2^-8 bf16, 2^-11 fp16), and Adam's normalised
    # steps do not amplify that at this learning rate: measured on the CPU (bf16), the two loss
    # curves stayed within 0.4% of each other while the loss fell ~250x. Held to 5% and 100x.
    def run(autocast):
        torch.manual_seed(0)
        model = torch.nn.Sequential(cnn.CplxLinear(16, 64), cnn.CplxModReLU(64), cnn.CplxLinear(64, 4)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(256, 16, dtype=torch.complex64, generator=gen).to(device)
        target = x @ (torch.randn(16, 4, dtype=torch.complex64, generator=gen) / 4).to(device)
        losses = []
        for _ in range(60):
            with torch.autocast(device, dtype=autocast_dtype(device), enabled=autocast):
                loss = (model(x) - target).abs().square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return torch.tensor(losses)

    full, mixed = run(False), run(True)
    assert not torch.equal(full, mixed)
    assert full[-1] < 0.01 * full[0] and mixed[-1] < 0.01 * mixed[0]
    assert ((mixed - full).abs() / full).max() < 0.05


# ------------------------------------------------------------------------------ convolution
# (name, x shape, conv keyword arguments, weight shape): plain, strided+dilated channels_last,
# grouped 1d, transposed, 3d.
CONV_CASES = {
    "2d": ((3, 8, 11, 10), dict(padding=[1, 1]), (6, 8, 3, 3)),
    "2d channels_last strided": ((3, 8, 12, 12), dict(stride=[2, 2], padding=[1, 2], dilation=[1, 2]), (6, 8, 3, 3)),
    "1d groups": ((4, 8, 30), dict(padding=[2], groups=2), (6, 4, 5)),
    "2d transposed": ((3, 8, 7, 7), dict(stride=[2, 2], padding=[1, 1], transposed=True, output_padding=[1, 1]),
                      (8, 5, 3, 3)),
    "3d": ((2, 4, 6, 6, 6), dict(padding=[1, 1, 1]), (5, 4, 3, 3, 3)),
}


def conv_call(x, w, b, kw, **extra):
    n = x.dim() - 2
    args = dict(stride=[1] * n, padding=[0] * n, dilation=[1] * n, transposed=False, output_padding=[0] * n, groups=1)
    args.update(kw)
    return ops.conv_complex(x, w, b, args["stride"], args["padding"], args["dilation"], args["transposed"],
                            args["output_padding"], args["groups"], **extra)


def conv_reference(x, w, b, kw):
    return ref.conv(x, w, b, **kw)


def conv_bound(x, w, kw, u, y):
    """The normwise bound of the block form's parts, plus the 16-bit rounding of results (u |part|,
    for backends with 16-bit units; conv.h)."""
    sq = lambda z: torch.complex(z.real ** 2, z.imag ** 2)
    s_re = conv_reference(sq(x), torch.complex(w.real ** 2, -w.imag ** 2), None, kw).real.sum()
    s_im = conv_reference(sq(x), torch.complex(w.imag ** 2, -w.real ** 2), None, kw).real.sum()
    c = 1.25 * math.sqrt(2.0 / 3.0) * u
    return c * s_re.sqrt().item() + u * y.real.norm().item(), c * s_im.sqrt().item() + u * y.imag.norm().item()


@pytest.mark.parametrize("kind", ["random", "offset", "near_real"])
@pytest.mark.parametrize("operand_dtype", LOW)
@pytest.mark.parametrize("algorithm", ["3m", "4m"])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_errors_within_bound(device, case, algorithm, operand_dtype, kind):
    # Under mixed precision every algorithm is the block form (conv.h): "3m" gives the same result.
    shape, kw, w_shape = CONV_CASES[case]
    u = UNIT_ROUNDOFF[operand_dtype]
    x, w = data(kind, *shape, seed=1), data(kind, *w_shape, seed=2) / math.sqrt(math.prod(w_shape[1:]))
    out_channels = w_shape[1] * kw.get("groups", 1) if kw.get("transposed") else w_shape[0]
    b = data(kind, out_channels, seed=3)
    x64 = x.to(device=device, dtype=torch.complex64)
    if "channels_last" in case:
        x64 = x64.contiguous(memory_format=torch.channels_last)
    w64, b64 = (t.to(device=device, dtype=torch.complex64) for t in (w, b))
    y = conv_call(x64, w64, b64, kw, algorithm=algorithm, operand_dtype=operand_dtype)
    assert y.dtype == torch.complex64
    exact = conv_reference(x, w, b, kw)
    bounds = conv_bound(x, w, kw, u, exact)
    for err, limit in zip(part_errors(y, exact), bounds):
        assert 0.05 * limit < err <= limit, (err, limit)
    assert torch.equal(y, conv_call(x64, w64, b64, kw, algorithm="4m", operand_dtype=operand_dtype))

    # Backward: the same rounding of the operands g, conj(W) and conj(x); for random data a part's
    # S is ~its squared norm, so each gradient is held to a normwise 3u (the bound's 1.02u + u).
    if kind != "random":
        return
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    g = data("random", *exact.shape, seed=4)
    torch.autograd.backward(conv_reference(xr, wr, None, kw), g)
    n = x.dim() - 2
    full = dict(stride=[1] * n, padding=[0] * n, dilation=[1] * n, transposed=False, output_padding=[0] * n, groups=1)
    full.update(kw)
    gx, gw, gb = ops.conv_complex_backward(
        g.to(device=device, dtype=torch.complex64), x64, w64, full["stride"], full["padding"], full["dilation"],
        full["transposed"], full["output_padding"], full["groups"], algorithm, (True, True, True), operand_dtype)
    for actual, expected in ((gx, xr.grad), (gw, wr.grad)):
        for err, part in zip(part_errors(actual, expected), (expected.real, expected.imag)):
            assert err <= 3 * u * part.norm().item()
    sums = g.sum(dim=[0] + list(range(2, g.dim())))
    assert (gb.cpu().to(torch.complex128) - sums).abs().max() < 1e-4 * sums.abs().max()  # float32 sums


CONV_LAYERS = {
    "CplxConv2d": lambda: cnn.CplxConv2d(6, 8, 3, padding=1),
    "CplxConvTranspose2d": lambda: cnn.CplxConvTranspose2d(6, 8, 3, stride=2),
    "nn.Conv2d complex": lambda: cnn.Conv2d(6, 8, 3, padding=1, dtype=torch.complex64),
}


@pytest.mark.parametrize("layer", list(CONV_LAYERS))
def test_autocast_runs_conv_layers_mixed(device, layer):
    torch.manual_seed(0)
    dtype = autocast_dtype(device)
    mod = CONV_LAYERS[layer]().to(device)
    x = torch.randn(2, 6, 9, 9, dtype=torch.complex64, device=device, requires_grad=True)
    outside = mod(x)
    with torch.autocast(device, dtype=dtype):
        inside = mod(x)
    assert inside.dtype == torch.complex64 and inside.shape == outside.shape
    assert not torch.equal(inside, outside)
    u = UNIT_ROUNDOFF[dtype]
    assert part_errors(inside, outside)[0] <= 3 * u * outside.real.norm().item()
    inside.abs().sum().backward()
    params = [p for p in mod.parameters()]
    assert all(p.grad is not None and p.grad.dtype == p.dtype for p in params)


def test_autocast_keeps_depthwise_conv_full_precision(device):
    # The fused depthwise kernel is memory-bound: autocast leaves it in float32 (conv.h).
    torch.manual_seed(0)
    mod = cnn.CplxConv1d(8, 8, 5, padding=2, groups=8).to(device)
    x = torch.randn(4, 8, 64, dtype=torch.complex64, device=device)
    with torch.autocast(device, dtype=autocast_dtype(device)):
        inside = mod(x)
    assert torch.equal(inside, mod(x))


@pytest.mark.parametrize("operand_dtype", LOW)
def test_opcheck_conv_mixed(device, operand_dtype):
    torch.manual_seed(0)
    x = crandn(2, 4, 7, 6, dtype=torch.complex64, device=device)
    w = crandn(3, 4, 3, 3, dtype=torch.complex64, device=device)
    b = crandn(3, dtype=torch.complex64, device=device)
    g = crandn(2, 3, 7, 6, dtype=torch.complex64, device=device)
    geometry = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    backward_utils = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(torch.ops.cplxfast.conv.default,
                          (x, w.real, w.imag, b.real, b.imag, *geometry, "auto", operand_dtype))
    torch.library.opcheck(torch.ops.cplxfast.conv_complex.default, (x, w, b, *geometry, "auto", operand_dtype))
    torch.library.opcheck(torch.ops.cplxfast.conv_backward.default,
                          (g, x, w.real, w.imag, *geometry, "auto", [True, True, True], operand_dtype),
                          test_utils=backward_utils)
    torch.library.opcheck(torch.ops.cplxfast.conv_complex_backward.default,
                          (g, x, w, *geometry, "auto", [True, True, True], operand_dtype), test_utils=backward_utils)


def test_autocast_compile_fullgraph_conv(device):
    torch.manual_seed(0)
    dtype = autocast_dtype(device)
    mod = cnn.CplxConv2d(4, 6, 3, padding=1).to(device)
    x = torch.randn(2, 4, 8, 8, dtype=torch.complex64, device=device)

    def step(x):
        with torch.autocast(device, dtype=dtype):
            return torch.view_as_real(mod(x))

    assert torch.equal(torch.compile(step, fullgraph=True)(x), step(x))


def test_autocast_leaves_batch_norm_and_modrelu_in_float32(device):
    # Memory-bound, and complex64 in and out: autocast has nothing to cast (torch's policy keeps
    # norms in float32), so they give the same bits inside and outside it.
    torch.manual_seed(0)
    bn, act = cnn.CplxBatchNorm1d(6).to(device), cnn.CplxModReLU(6).to(device)
    x = torch.randn(8, 6, 20, dtype=torch.complex64, device=device)
    outside = act(bn(x).transpose(1, 2))
    with torch.autocast(device, dtype=autocast_dtype(device)):
        inside = act(bn(x).transpose(1, 2))
    assert inside.dtype == torch.complex64 and torch.equal(inside, outside)


# -------------------------------------------------------------------------------- errors
def test_bad_operand_dtype():
    x = torch.randn(4, 3, dtype=torch.complex64)
    w = torch.randn(2, 3, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="operand_dtype must be None, the input's real dtype"):
        ops.linear_complex(x, w, None, "auto", torch.float64)
    with pytest.raises(RuntimeError, match="needs a complex64 input"):
        ops.linear_complex(x.to(torch.complex128), w.to(torch.complex128), None, "auto", torch.bfloat16)
    with pytest.raises(RuntimeError, match="operand_dtype must be None"):
        ops.linear_backward(torch.randn(4, 2, dtype=torch.complex64), x, w.real, w.imag, "4m", (True, True, True),
                            torch.int8)


@requires_cuda
def test_cuda_mixed_matches_cpu_within_bound():
    # cuBLAS's tensor-core products (float32 accumulation) against the CPU's MKL ones: the same
    # rounded operands, so the two differ by accumulation order only.
    torch.manual_seed(0)
    x = torch.randn(512, 256, dtype=torch.complex64)
    w = torch.randn(128, 256, dtype=torch.complex64) / 16
    for dtype in LOW:
        for algorithm in ("3m", "4m"):
            cpu = ops.linear_complex(x, w, None, algorithm, dtype)
            cuda = ops.linear_complex(x.cuda(), w.cuda(), None, algorithm, dtype).cpu()
            assert (cuda - cpu).abs().max() <= 1e-5 * cpu.abs().max()
