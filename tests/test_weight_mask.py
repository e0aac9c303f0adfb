"""weight_mask of the linear and conv ops (the masked layers' mask, applied inside the fused passes):
the op with a mask gives the op on W * mask, bit for bit, and grad_W * mask; every algorithm, both
precisions, mixed precision, CPU and CUDA; gradcheck, opcheck, compile, errors; and the masked
layers pass their mask to the op instead of building a masked weight."""
import pytest
import torch

import cplxfast.nn as cnn
from cplxfast import ops
from cplxfast.nn import masked as M
from conftest import crandn

REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def soft_mask(shape, dtype, device, seed=0):
    """A mask with zeros, ones and fractions (binarize_masks' input can be soft)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g, dtype=torch.float64)
    m = torch.where(m < 0.3, 0.0, torch.where(m > 0.7, 1.0, m))
    return m.to(dtype=dtype, device=device)


def parts(shape, dtype, device):
    return [torch.randn(shape, dtype=REAL[dtype], device=device, requires_grad=True) for _ in range(2)]


def assert_masked_op_is_op_on_masked_weight(run, x, w_re, w_im, mask):
    """run(x, w_re, w_im, mask) against run(x, w_re * mask, w_im * mask, None): forward and every
    gradient equal bit for bit, and no gradient where the mask is zero."""
    y = run(x, w_re, w_im, mask)
    want = run(x, w_re * mask, w_im * mask, None)
    assert torch.equal(y, want)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w_re, w_im), g)
    expected = torch.autograd.grad(want, (x, w_re, w_im), g)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    for grad_part in got[1:]:
        assert (grad_part[mask == 0] == 0).all() and (grad_part[mask != 0] != 0).any()


PRECISIONS = [(torch.complex128, None), (torch.complex64, None), (torch.complex64, torch.bfloat16)]


@pytest.mark.parametrize("dtype,operand_dtype", PRECISIONS)
@pytest.mark.parametrize("algorithm", ["3m", "4m"])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_mask(device, dtype, operand_dtype, algorithm, bias):
    torch.manual_seed(0)
    x = crandn(1100, 24, dtype=dtype, device=device).requires_grad_()  # two CPU chunks of rows
    w_re, w_im = parts((16, 24), dtype, device)
    b = [torch.randn(16, dtype=REAL[dtype], device=device) for _ in range(2)] if bias else [None, None]
    mask = soft_mask((16, 24), REAL[dtype], device)

    def run(x, wr, wi, m):
        return ops.linear(x, wr, wi, *b, algorithm, operand_dtype, m)

    assert_masked_op_is_op_on_masked_weight(run, x, w_re, w_im, mask)


CONVS = {  # name -> (input shape, weight shape, stride, padding, dilation, transposed, output_padding, groups)
    "conv2d": ((2, 6, 9, 10), (4, 6, 3, 3), [2, 1], [1, 1], [1, 1], False, [0, 0], 1),
    "grouped conv1d": ((3, 6, 17), (4, 3, 5), [1], [2], [2], False, [0], 2),
    "depthwise conv2d": ((2, 6, 9, 10), (6, 1, 3, 3), [1, 1], [1, 1], [1, 1], False, [0, 0], 6),
    "transposed conv2d": ((2, 6, 5, 4), (6, 4, 3, 3), [2, 2], [1, 1], [1, 1], True, [1, 0], 1),
    "grouped transposed conv1d": ((2, 4, 5), (4, 3, 3), [2], [1], [1], True, [1], 2),
    "conv3d": ((2, 4, 5, 4, 6), (3, 4, 2, 3, 2), [1, 1, 1], [1, 0, 1], [1, 1, 1], False, [0, 0, 0], 1),
}


@pytest.mark.parametrize("dtype,operand_dtype", PRECISIONS)
@pytest.mark.parametrize("algorithm", ["3m", "4m"])
@pytest.mark.parametrize("case", list(CONVS))
def test_conv_mask(device, dtype, operand_dtype, algorithm, case):
    x_shape, w_shape, *geometry = CONVS[case]
    torch.manual_seed(1)
    x = crandn(*x_shape, dtype=dtype, device=device).requires_grad_()
    w_re, w_im = parts(w_shape, dtype, device)
    c_out = w_shape[1] * geometry[-1] if geometry[3] else w_shape[0]
    b = [torch.randn(c_out, dtype=REAL[dtype], device=device) for _ in range(2)]
    mask = soft_mask(w_shape, REAL[dtype], device)

    def run(x, wr, wi, m):
        return ops.conv(x, wr, wi, *b, *geometry, algorithm, operand_dtype, m)

    assert_masked_op_is_op_on_masked_weight(run, x, w_re, w_im, mask)


def test_conv_mask_channels_last(device):
    torch.manual_seed(2)
    x = crandn(2, 6, 9, 10, device=device).contiguous(memory_format=torch.channels_last).requires_grad_()
    w_re, w_im = parts((4, 6, 3, 3), torch.complex128, device)
    mask = soft_mask((4, 6, 3, 3), torch.float64, device)
    for algorithm in ("3m", "4m"):
        def run(x, wr, wi, m):
            return ops.conv(x, wr, wi, None, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, algorithm, None, m)

        assert_masked_op_is_op_on_masked_weight(run, x, w_re, w_im, mask)


@pytest.mark.parametrize("algorithm", ["3m", "4m"])
def test_wide_weight_mask(device, algorithm):
    """A weight row longer than the CPU kernels' column block (8192): the mask's row offsets."""
    torch.manual_seed(8)
    x = crandn(3, 9000, dtype=torch.complex64, device=device).requires_grad_()
    w_re, w_im = parts((2, 9000), torch.complex64, device)
    mask = soft_mask((2, 9000), torch.float32, device)

    def run(x, wr, wi, m):
        return ops.linear(x, wr, wi, None, None, algorithm, None, m)

    assert_masked_op_is_op_on_masked_weight(run, x, w_re, w_im, mask)


@pytest.mark.parametrize("algorithm", ["3m", "4m"])
def test_backward_ops_mask_the_weight_gradient(device, algorithm):
    """The backward ops directly, each output alone: grad_W * mask; grad_x of W * mask."""
    torch.manual_seed(3)
    x = crandn(7, 5, device=device)
    w_re, w_im = (t.detach() for t in parts((4, 5), torch.complex128, device))
    mask = soft_mask((4, 5), torch.float64, device)
    g = crandn(7, 4, device=device)
    for output_mask in ([True, False, False], [False, True, False], [True, True, True]):
        got = ops.linear_backward(g, x, w_re, w_im, algorithm, output_mask, None, mask)
        plain = ops.linear_backward(g, x, w_re * mask, w_im * mask, algorithm, output_mask)
        want = list(plain)
        if output_mask[1]:
            want[1], want[2] = plain[1] * mask, plain[2] * mask
        for a, e in zip(got, want):
            assert (a is None) == (e is None)
            if a is not None:
                torch.testing.assert_close(a, e, rtol=1e-13, atol=1e-13)


def test_gradcheck(device):
    torch.manual_seed(4)
    mask = soft_mask((3, 4), torch.float64, device)
    x = crandn(5, 4, device=device).requires_grad_()
    w_re, w_im = parts((3, 4), torch.complex128, device)
    for algorithm in ("3m", "4m"):
        assert torch.autograd.gradcheck(
            lambda x, wr, wi: ops.linear(x, wr, wi, None, None, algorithm, None, mask), (x, w_re, w_im))
    x = crandn(2, 4, 7, device=device).requires_grad_()
    mask = soft_mask((3, 4, 3), torch.float64, device)
    w_re, w_im = parts((3, 4, 3), torch.complex128, device)
    for algorithm in ("3m", "4m"):
        assert torch.autograd.gradcheck(
            lambda x, wr, wi: ops.conv(x, wr, wi, None, None, [1], [1], [1], False, [0], 1, algorithm, None, mask),
            (x, w_re, w_im))


@pytest.mark.parametrize("algorithm", ["3m", "4m"])
def test_opcheck(device, algorithm):
    torch.manual_seed(5)
    x = crandn(3, 5, dtype=torch.complex64, device=device)
    w_re, w_im = parts((4, 5), torch.complex64, device)
    mask = soft_mask((4, 5), torch.float32, device)
    torch.library.opcheck(torch.ops.cplxfast.linear.default, (x, w_re, w_im, None, None, algorithm, None, mask))
    g = crandn(3, 4, dtype=torch.complex64, device=device)
    torch.library.opcheck(
        torch.ops.cplxfast.linear_backward.default,
        (g, x, w_re.detach(), w_im.detach(), algorithm, [True, True, True], None, mask),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))
    xc = crandn(2, 4, 6, 5, dtype=torch.complex64, device=device)
    wc_re, wc_im = parts((3, 4, 3, 3), torch.complex64, device)
    mc = soft_mask((3, 4, 3, 3), torch.float32, device)
    geometry = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1, algorithm)
    torch.library.opcheck(torch.ops.cplxfast.conv.default, (xc, wc_re, wc_im, None, None, *geometry, None, mc))
    gc = crandn(2, 3, 6, 5, dtype=torch.complex64, device=device)
    torch.library.opcheck(
        torch.ops.cplxfast.conv_backward.default,
        (gc, xc, wc_re.detach(), wc_im.detach(), *geometry, [True, True, True], None, mc),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_errors():
    x = crandn(3, 5)
    w_re, w_im = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="weight_mask must have the weight's shape"):
        ops.linear(x, w_re, w_im, weight_mask=torch.ones(4, 1, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="weight_mask must be a real Double tensor"):
        ops.linear(x, w_re, w_im, weight_mask=torch.ones(4, 5, dtype=torch.float32))
    with pytest.raises(RuntimeError, match="weight_mask must be a real Double tensor"):
        ops.linear(x, w_re, w_im, weight_mask=torch.ones(4, 5, dtype=torch.complex128))
    with pytest.raises(RuntimeError, match="weight_mask is not differentiated"):
        ops.linear(x, w_re, w_im, weight_mask=torch.ones(4, 5, dtype=torch.float64, requires_grad=True))
    xc, wc = crandn(1, 2, 6), torch.randn(3, 2, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="weight_mask must have the weight's shape"):
        ops.conv(xc, wc, wc, None, None, [1], [0], [1], False, [0], 1, "auto", None, torch.ones(3, 2, 1).double())
    with pytest.raises(RuntimeError, match="weight_mask is not differentiated"):
        ops.conv(xc, wc, wc, None, None, [1], [0], [1], False, [0], 1, "auto", None,
                 torch.ones(3, 2, 3, dtype=torch.float64, requires_grad=True))


def test_lazily_negated_mask_is_read_with_its_sign():
    x = crandn(3, 5)
    w_re, w_im = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    m = torch.rand(4, 5, dtype=torch.float64)
    negated = torch.complex(torch.zeros_like(m), m).conj().imag  # -m, lazily
    assert negated.is_neg()
    for algorithm in ("3m", "4m"):
        torch.testing.assert_close(ops.linear(x, w_re, w_im, None, None, algorithm, None, negated),
                                   ops.linear(x, -m * w_re, -m * w_im, None, None, algorithm), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name,args,shape", [
    ("CplxLinearMasked", (6, 4), (5, 6)), ("CplxConv1dMasked", (3, 4, 3), (2, 3, 9)),
    ("CplxConv2dMasked", (3, 4, 3), (2, 3, 6, 5)), ("CplxConv3dMasked", (2, 3, 2), (2, 2, 4, 3, 3)),
])
def test_masked_layers_pass_the_mask_to_the_op(name, args, shape):
    """The layer's graph: the fused op's node reads the weight Parameters directly (no multiplication
    node between them: no masked copy), and the output equals the op with weight_mask."""
    layer = getattr(M, name)(*args).double()
    layer.mask = torch.randint(2, size=layer.weight.shape).double()
    out = layer(crandn(*shape))
    leaves = {id(fn.variable) for fn, _ in out.grad_fn.next_functions if fn is not None and hasattr(fn, "variable")}
    assert id(layer.weight.real) in leaves and id(layer.weight.imag) in leaves


def test_masked_layer_compiles_fullgraph():
    torch.manual_seed(6)
    layer = M.CplxLinearMasked(8, 5)
    layer.mask = torch.randint(2, size=(5, 8)).float()
    x = crandn(4, 8, dtype=torch.complex64)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    torch.testing.assert_close(out, layer(x), rtol=0, atol=0)
    out.abs().sum().backward()
    assert (layer.weight.real.grad[layer.mask == 0] == 0).all()


def test_masked_layer_under_autocast_is_the_plain_layer_on_the_masked_weight():
    torch.manual_seed(7)
    layer = M.CplxLinearMasked(24, 16)
    layer.mask = torch.randint(2, size=(16, 24)).float()
    plain = cnn.CplxLinear(24, 16)
    with torch.no_grad():
        plain.weight.real.copy_(layer.weight.real * layer.mask)
        plain.weight.imag.copy_(layer.weight.imag * layer.mask)
        plain.bias.real.copy_(layer.bias.real)
        plain.bias.imag.copy_(layer.bias.imag)
    x = crandn(32, 24, dtype=torch.complex64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(layer(x), plain(x))
