"""Bad input never crashes and never returns garbage: each case of the table raises an exception
whose message names the layer or op and what is wrong. NaN and Inf propagate as in torch."""
import pytest
import torch

import cplxfast.nn as cnn
from cplxfast import _reference as ref
from cplxfast import ops
from conftest import requires_cuda


def c64(*shape):
    return torch.randn(*shape, dtype=torch.complex64)


def c128(*shape):
    return torch.randn(*shape, dtype=torch.complex128)


# (case, call, exception, message pattern)
TABLE = [
    # real, integer or otherwise wrong tensors where complex is expected
    ("linear: real input", lambda: cnn.CplxLinear(4, 3)(torch.randn(2, 4)), TypeError, "CplxLinear: expected a complex tensor"),
    ("linear: integer input", lambda: cnn.CplxLinear(4, 3)(torch.ones(2, 4, dtype=torch.int64)), TypeError,
     "CplxLinear: expected a complex tensor"),
    ("conv2d: real input", lambda: cnn.CplxConv2d(3, 4, 3)(torch.randn(1, 3, 8, 8)), TypeError,
     "CplxConv2d: expected a complex tensor"),
    ("batch norm: real input", lambda: cnn.CplxBatchNorm2d(3)(torch.randn(2, 3, 4, 4)), TypeError, "expected a complex"),
    ("modReLU: real input", lambda: cnn.CplxAdaptiveModReLU(3, 1)(torch.randn(2, 3, 4)), TypeError, "expected a complex"),
    ("op: integer input", lambda: ops.modrelu(torch.ones(3, dtype=torch.int32), torch.zeros(1)), RuntimeError,
     "cplxfast.modrelu: input must be a complex64 or complex128 tensor"),
    ("layer: not a tensor", lambda: cnn.CplxLinear(4, 3)([1, 2, 3, 4]), TypeError, "expected a complex tensor or a Cplx"),
    # wrong ranks
    ("conv2d: 3-D input", lambda: cnn.CplxConv2d(3, 4, 3)(c64(3, 8, 8)), ValueError, "CplxConv2d: expected a 4-D input"),
    ("conv op: 3-D input", lambda: ops.conv(c64(3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4, 3, 3, 3), None, None,
                                           [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
     RuntimeError, "cplxfast.conv: a 2-d convolution expects a 4-D input"),
    ("batch norm 2d: 3-D input", lambda: cnn.CplxBatchNorm2d(3)(c64(2, 3, 4)), ValueError, "CplxBatchNorm2d"),
    ("linear op: 0-d input", lambda: ops.linear(torch.tensor(1j, dtype=torch.complex64), torch.randn(3, 1),
                                                torch.randn(3, 1)), RuntimeError,
     "cplxfast.linear: input must have at least 1 dimension"),
    # wrong channel / feature counts
    ("linear: wrong features", lambda: cnn.CplxLinear(4, 3)(c64(2, 5)), RuntimeError,
     "cplxfast.linear: input has 5 features .* in_features=4"),
    ("conv2d: wrong channels", lambda: cnn.CplxConv2d(3, 4, 3)(c64(1, 5, 8, 8)), RuntimeError,
     "cplxfast.conv: input has 5 channels but the weight"),
    ("conv2d: kernel larger than padded input", lambda: cnn.CplxConv2d(3, 4, 5)(c64(1, 3, 3, 8)), RuntimeError,
     "larger than the padded input height"),
    ("conv: groups not dividing", lambda: cnn.CplxConv1d(4, 6, 3, groups=4), ValueError, "out_channels must be divisible"),
    ("batch norm: wrong channels", lambda: cnn.CplxBatchNorm1d(3)(c64(4, 5)), ValueError,
     r"CplxBatchNorm1d: expected 3 channels \(dim 1\)"),
    ("modReLU: threshold not broadcastable", lambda: cnn.CplxAdaptiveModReLU(4, 1)(c64(2, 3, 5)), RuntimeError,
     "cplxfast.modrelu"),
    # mismatched dtypes and parameters
    ("linear: complex128 into float32 layer", lambda: cnn.CplxLinear(4, 3)(c128(2, 4)), TypeError,
     "CplxLinear: input is torch.complex128 but the layer's parameters are torch.float32"),
    ("conv: complex128 into float32 layer", lambda: cnn.CplxConv1d(2, 2, 3)(c128(1, 2, 8)), TypeError,
     "CplxConv1d: input is torch.complex128"),
    ("linear op: weight dtype", lambda: ops.linear(c64(2, 4), torch.randn(3, 4, dtype=torch.float64),
                                                   torch.randn(3, 4, dtype=torch.float64)), RuntimeError,
     "weight_re must be a real Float tensor"),
    ("linear op: bias shape", lambda: ops.linear(c64(2, 4), torch.randn(3, 4), torch.randn(3, 4), torch.randn(4),
                                                 torch.randn(4)), RuntimeError, r"bias must have shape \[3\]"),
    ("conv: unknown padding mode", lambda: cnn.CplxConv2d(3, 4, 3, padding_mode="mirror"), ValueError, "padding_mode must be"),
    ("algorithm: unknown", lambda: cnn.CplxLinear(4, 3, algorithm="2m"), ValueError, "algorithm must be one of"),
    # checkpoints of the wrong shape
    ("load_state_dict: wrong weight shape", lambda: cnn.CplxLinear(4, 3).load_state_dict(cnn.CplxLinear(5, 3).state_dict()),
     RuntimeError, "size mismatch for weight.real"),
    ("load_state_dict: wrong conv kernel", lambda: cnn.CplxConv2d(3, 4, 3).load_state_dict(cnn.CplxConv2d(3, 4, 5).state_dict()),
     RuntimeError, "size mismatch for weight"),
    ("load_state_dict: batch norm channels", lambda: cnn.CplxBatchNorm2d(3).load_state_dict(cnn.CplxBatchNorm2d(4).state_dict()),
     RuntimeError, "size mismatch for weight"),
    # Cplx-like objects with mismatched parts
    ("Cplx-like: shape mismatch", lambda: cnn.CplxLinear(4, 3)(type("P", (), {"real": torch.randn(2, 4), "imag": torch.randn(3, 4)})()),
     ValueError, "the real part has shape"),
]


@pytest.mark.parametrize("case,call,exc,pattern", TABLE, ids=[t[0] for t in TABLE])
def test_bad_input_raises_a_clear_error(case, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize("layer,shape", [
    (lambda: cnn.CplxLinear(4, 3), (2, 4)),
    (lambda: cnn.CplxConv1d(2, 3, 3, padding=1), (2, 2, 6)),
    (lambda: cnn.CplxConv1d(2, 2, 3, padding=1, groups=2), (2, 2, 6)),  # fused depthwise
    (lambda: cnn.CplxAdaptiveModReLU(2, 1), (2, 2, 6)),
    (lambda: cnn.CplxBatchNorm1d(2).eval(), (2, 2, 6)),
])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_propagate_like_torch(layer, shape, bad):
    """A NaN or Inf in the input gives non-finite outputs where the same maths in torch does,
    finite ones elsewhere (no crash, no hang)."""
    torch.manual_seed(0)
    m = layer()
    z = c64(*shape)
    z[0].view(-1)[0] = complex(bad, 0.0)
    out = m(z)
    if isinstance(m, cnn.CplxLinear):
        want = ref.linear(z, m.weight.complex().detach(), m.bias.complex().detach())
    elif isinstance(m, cnn.CplxConv1d):
        want = ref.conv(z, m.weight.complex().detach(), m.bias.complex().detach(), 1, 1, 1, m.groups)
    elif isinstance(m, cnn.CplxAdaptiveModReLU):
        want = ref.modrelu(z, m.threshold.detach())
    else:
        want = ref.batch_norm(z, m.weight, m.bias, m.running_mean, m.running_var, training=False)[0]
    assert not torch.isfinite(out).all()
    assert torch.equal(torch.isfinite(out), torch.isfinite(want))
    assert torch.isfinite(out[1]).all()  # the other sample is untouched


# ------------------------------------------------------------------------------ devices
def _cuda_op_calls():
    """(op, args) for every op, all tensor arguments on the GPU."""
    d = "cuda"
    z = torch.randn(4, 3, 5, dtype=torch.complex64, device=d)
    w = torch.randn(2, 5, device=d)
    wc = torch.randn(2, 5, dtype=torch.complex64, device=d)
    gy = torch.randn(4, 3, 2, dtype=torch.complex64, device=d)
    cw = torch.randn(6, 3, 3, device=d)
    cwc = torch.randn(6, 3, 3, dtype=torch.complex64, device=d)
    gc = torch.randn(4, 6, 3, dtype=torch.complex64, device=d)
    tau = torch.rand(3, 1, device=d)
    bw, bb = torch.eye(2, device=d).unsqueeze(-1).repeat(1, 1, 3), torch.zeros(2, 3, device=d)
    mean, cov = torch.zeros(2, 3, device=d), torch.eye(2, device=d).unsqueeze(-1).repeat(1, 1, 3)
    conv = ([1], [0], [1], False, [0], 1)
    m = torch.ops.cplxfast
    return [
        (m.linear, (z, w, w, w[:, 0], w[:, 0], "3m")),
        (m.linear_backward, (gy, z, w, w, "3m", [True, True, True])),
        (m.linear_complex, (z, wc, wc[:, 0], "3m")),
        (m.linear_complex_backward, (gy, z, wc, "3m", [True, True, True])),
        (m.conv, (z, cw, cw, cw[:, 0, 0], cw[:, 0, 0], *conv, "3m")),
        (m.conv_backward, (gc, z, cw, cw, *conv, "3m", [True, True, True])),
        (m.conv_complex, (z, cwc, cwc[:, 0, 0], *conv, "3m")),
        (m.conv_complex_backward, (gc, z, cwc, *conv, "3m", [True, True, True])),
        (m.modrelu, (z, tau)),
        (m.modrelu_backward, (z, z, tau, [True, True])),
        (m.batch_norm, (z, bw, bb, mean, cov, False, 1e-5)),
        (m.batch_norm_backward, (z, z, bw, mean, cov, True, [True, True, True])),
        (m.batch_norm_stats, (z,)),
        (m.batch_norm_grad_sums, (z, z, mean)),
    ]


@requires_cuda
def test_every_tensor_argument_on_another_device_raises_naming_the_op():
    """A CPU tensor among CUDA arguments would hand a host pointer to a kernel (an illegal-address
    error that kills the process's CUDA context): every op checks every tensor argument first."""
    for op, args in _cuda_op_calls():
        op(*args)  # the all-CUDA call works
        name = f"cplxfast.{op._schema.name.split('::')[1]}"
        for i, a in enumerate(args):
            if not isinstance(a, torch.Tensor):
                continue
            moved = list(args)
            moved[i] = a.cpu()
            with pytest.raises(RuntimeError, match=f"{name}: .*cpu") as info:
                op(*moved)
            assert "cuda" in str(info.value).lower(), (name, i, str(info.value))
    torch.cuda.synchronize()  # the context survived
    assert torch.ones(2, device="cuda").sum().item() == 2
