"""Drop-in for whole cplxmodule models: every layer name, the cheap layers against cplxmodule,
convert(model), checkpoints both ways and from real layers, compile and export."""
import math

import pytest
import torch

import cplxfast.nn as ours_nn
from conftest import crandn

try:  # the tests that compare against cplxmodule are marked; the others run without it
    from cplxmodule import Cplx
    import cplxmodule.nn as theirs_nn
except ImportError:
    Cplx = theirs_nn = None

NAMES = [
    "CplxLinear", "CplxBilinear", "CplxConv1d", "CplxConv2d", "CplxConv3d", "CplxConvTranspose1d",
    "CplxConvTranspose2d", "CplxConvTranspose3d", "CplxBatchNorm1d", "CplxBatchNorm2d", "CplxBatchNorm3d",
    "CplxModReLU", "CplxAdaptiveModReLU", "CplxModulus", "CplxAngle", "CplxDropout", "CplxMaxPool1d",
    "CplxMaxPool2d", "CplxMaxPool3d", "CplxReal", "CplxImag", "CplxIdentity", "RealToCplx", "CplxToReal", "AsTypeCplx",
    "CplxSequential", "CplxToCplx", "CplxParameter",
]


def cplx(z):
    return Cplx(z.real.clone(), z.imag.clone())


def as_complex(c):
    return torch.complex(c.real, c.imag)


@pytest.mark.cplxmodule
def test_every_layer_name_of_cplxmodule_models_exists():
    for name in NAMES:
        assert hasattr(theirs_nn, name) or name == "CplxPhaseShift"
        assert hasattr(ours_nn, name), name
    assert hasattr(ours_nn, "CplxPhaseShift")


@pytest.mark.cplxmodule
@pytest.mark.parametrize("name,args", [
    ("CplxIdentity", ()), ("CplxReal", ()), ("CplxImag", ()), ("CplxModulus", ()), ("CplxAngle", ()),
    ("CplxToReal", ()), ("CplxMaxPool1d", (3, 2, 1)), ("CplxMaxPool2d", ((2, 3),)), ("CplxMaxPool3d", (2,)),
])
def test_cheap_layers_match_cplxmodule(name, args):
    torch.manual_seed(0)
    shape = {"CplxMaxPool2d": (2, 3, 6, 9), "CplxMaxPool3d": (1, 2, 4, 4, 6)}.get(name, (2, 3, 10))
    z = crandn(*shape, dtype=torch.complex64)
    theirs, ours = getattr(theirs_nn, name)(*args), getattr(ours_nn, name)(*args)
    want = theirs(cplx(z))
    for got in (ours(cplx(z)), ours(z)):  # Cplx in and complex in
        if isinstance(want, Cplx):
            got = got if isinstance(got, torch.Tensor) else as_complex(got)
            torch.testing.assert_close(got, as_complex(want))
        else:
            torch.testing.assert_close(got, want)


@pytest.mark.cplxmodule
def test_phase_shift_and_bilinear_match_cplxmodule_with_gradients():
    torch.manual_seed(0)
    from cplxmodule.nn.modules.linear import CplxPhaseShift

    for theirs, ours, args in [
        (CplxPhaseShift(3, 1), ours_nn.CplxPhaseShift(3, 1), 1),
        (theirs_nn.CplxBilinear(5, 4, 3), ours_nn.CplxBilinear(5, 4, 3), 2),
        (theirs_nn.CplxBilinear(5, 4, 3, bias=False, conjugate=False),
         ours_nn.CplxBilinear(5, 4, 3, bias=False, conjugate=False), 2),
    ]:
        ours.load_state_dict(theirs.state_dict(), strict=True)
        shapes = [(2, 3, 7)] if args == 1 else [(2, 6, 5), (2, 6, 4)]
        zs = [crandn(*s, dtype=torch.complex64) for s in shapes]
        y_theirs = theirs(*[cplx(z) for z in zs])
        y_ours = ours(*[cplx(z) for z in zs])
        torch.testing.assert_close(as_complex(y_ours), as_complex(y_theirs), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(*zs), as_complex(y_theirs), rtol=1e-5, atol=1e-5)
        (abs(y_theirs).sum()).backward()
        (abs(y_ours).sum()).backward()
        for (n, p), q in zip(theirs.named_parameters(), ours.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.cplxmodule
def test_casting_layers():
    x = torch.randn(2, 3, 8)
    z = ours_nn.RealToCplx()(x)
    assert z.shape == (2, 3, 4) and torch.equal(z.real, x[..., 0::2]) and torch.equal(z.imag, x[..., 1::2])
    torch.testing.assert_close(ours_nn.CplxToReal()(z), x)
    z1 = ours_nn.RealToCplx(dim=1)(torch.randn(2, 6, 5))
    assert z1.shape == (2, 3, 5)
    theirs = theirs_nn.RealToCplx()(x)
    torch.testing.assert_close(z, as_complex(theirs))
    a = ours_nn.AsTypeCplx()(x)
    assert a.is_complex() and torch.equal(a.real, x) and not a.imag.any()
    c = ours_nn.AsTypeCplx(cplx_type=Cplx)(x)
    assert isinstance(c, Cplx) and torch.equal(c.real, x)
    with pytest.raises(ValueError, match="odd size"):
        ours_nn.RealToCplx()(torch.randn(2, 5))


@pytest.mark.cplxmodule
def test_dropout_drops_whole_complex_numbers():
    torch.manual_seed(0)
    layer = ours_nn.CplxDropout(0.3)
    z = crandn(200, 100, dtype=torch.complex64)
    y = layer(z)
    dropped = y == 0
    assert 0.25 < dropped.float().mean() < 0.35
    kept = ~dropped
    torch.testing.assert_close(y[kept], z[kept] / 0.7)
    assert torch.equal(layer.eval()(z), z)
    assert isinstance(layer.train()(cplx(z)), Cplx)


@pytest.mark.cplxmodule
def test_promotion_of_real_modules_and_functions():
    z = crandn(3, 4, dtype=torch.complex64)
    tanh_layer = ours_nn.CplxToCplx[torch.nn.Tanh]()
    torch.testing.assert_close(tanh_layer(z), torch.complex(torch.tanh(z.real), torch.tanh(z.imag)))
    assert ours_nn.CplxToCplx[torch.nn.Tanh] is type(tanh_layer)  # cached, like cplxmodule's
    fn_layer = ours_nn.CplxToCplx[torch.nn.functional.leaky_relu](0.2)
    torch.testing.assert_close(fn_layer(cplx(z)).real, torch.nn.functional.leaky_relu(z.real, 0.2))
    theirs = theirs_nn.CplxToCplx[torch.nn.Tanh]()
    torch.testing.assert_close(as_complex(theirs(cplx(z))), tanh_layer(z))


# ------------------------------------------------------------------------------ whole models
class EveryLayer(torch.nn.Module):
    """A model using every converted layer; the same code runs on Cplx or complex tensors."""

    def __init__(self, nn):
        super().__init__()
        self.to_cplx = nn.RealToCplx()
        self.conv1 = nn.CplxConv1d(2, 4, 3, padding=1)
        self.bn1 = nn.CplxBatchNorm1d(4)
        self.act1 = nn.CplxModReLU(0.1)
        self.pool1 = nn.CplxMaxPool1d(2)
        self.conv_b = nn.CplxConv1d(4, 4, 3, padding=1)  # (cplxmodule's transposed convs crash on torch 2.x)
        self.act2 = nn.CplxAdaptiveModReLU(4, 1)
        self.drop = nn.CplxDropout(0.5)
        self.lin = nn.CplxLinear(8, 8)
        self.tanh = nn.CplxToCplx[torch.nn.Tanh]()
        self.bil = nn.CplxBilinear(8, 8, 5)
        self.seq = nn.CplxSequential(nn.CplxIdentity(), nn.CplxModReLU(threshold=None))
        self.conv2 = nn.CplxConv2d(3, 3, 3, padding=1, groups=3)
        self.bn2 = nn.CplxBatchNorm2d(3)
        self.pool2 = nn.CplxMaxPool2d(2)
        self.conv3 = nn.CplxConv3d(3, 2, 1)
        self.bn3 = nn.CplxBatchNorm3d(2)
        self.heads = torch.nn.ModuleList([nn.CplxModulus(), nn.CplxAngle(), nn.CplxReal(), nn.CplxImag(), nn.CplxToReal()])
        self.gate = nn.AsTypeCplx()

    def forward(self, x, z2, z3):
        z = self.to_cplx(x)                                   # [B, 2, 16]
        z = self.pool1(self.act1(self.bn1(self.conv1(z))))    # [B, 4, 8]
        z = self.drop(self.act2(self.conv_b(z)))              # [B, 4, 8]
        z = self.tanh(self.lin(z))                            # [B, 4, 8]
        z = self.seq(self.bil(z, z))                          # [B, 4, 5]
        w = self.pool2(self.bn2(self.conv2(z2)))              # [B, 3, 3, 3]
        v = self.bn3(self.conv3(z3))
        v = v + self.gate(abs(v))
        return sum(head(t).sum() for t in (z, w, v) for head in self.heads)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(4, 2, 32, generator=g), torch.randn(4, 3, 6, 6, dtype=torch.complex64, generator=g),
            torch.randn(4, 3, 2, 3, 3, dtype=torch.complex64, generator=g))


@pytest.mark.cplxmodule
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_convert_keeps_outputs_gradients_and_state(mode):
    torch.manual_seed(0)
    model = EveryLayer(theirs_nn)
    model.drop.p = 0.0 if mode == "train" else 0.5  # random masks cannot match
    getattr(model, mode)()
    reference = EveryLayer(theirs_nn)
    reference.load_state_dict(model.state_dict())
    reference.drop.p = model.drop.p
    getattr(reference, mode)()
    x, z2, z3 = inputs()
    want = reference(x, cplx(z2), cplx(z3))
    want.backward()
    converted = ours_nn.convert(model)
    assert converted is model
    assert not any(type(m).__module__.startswith("cplxmodule.nn.modules.l") for m in model.modules())
    assert isinstance(model.lin, ours_nn.CplxLinear) and isinstance(model.bn2, ours_nn.CplxBatchNorm2d)
    assert model.training == (mode == "train") and all(m.training == model.training for m in model.modules())
    got = model(x, cplx(z2), cplx(z3))  # Cplx in, as the cplxmodule model was written
    got.backward()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    ref_params = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-3, atol=1e-4, msg=name)
    for (n1, b1), (n2, b2) in zip(model.named_buffers(), reference.named_buffers()):
        assert n1 == n2
        torch.testing.assert_close(b1, b2, rtol=1e-4, atol=1e-5)
    # native complex tensors work too, once the real-to-complex layers produce them
    model.to_cplx.cplx_type = model.gate.cplx_type = None
    torch.testing.assert_close(model(x, z2, z3), got, rtol=1e-4, atol=1e-4)


@pytest.mark.cplxmodule
def test_checkpoints_load_both_ways_strictly():
    torch.manual_seed(0)
    theirs = EveryLayer(theirs_nn)
    ours = EveryLayer(ours_nn)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    back = EveryLayer(theirs_nn)
    back.load_state_dict(ours.state_dict(), strict=True)
    for (k1, v1), (k2, v2) in zip(theirs.state_dict().items(), back.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert [n for n, _ in theirs.named_parameters()] == [n for n, _ in ours.named_parameters()]


def test_real_checkpoints_load_into_complex_layers():
    torch.manual_seed(0)
    for real, ours in [(torch.nn.Linear(6, 4), ours_nn.CplxLinear(6, 4)),
                       (torch.nn.Conv2d(3, 5, 3), ours_nn.CplxConv2d(3, 5, 3)),
                       (torch.nn.Linear(6, 4, bias=False), ours_nn.CplxLinear(6, 4, bias=False))]:
        ours.load_state_dict(real.state_dict(), strict=True)
        assert torch.equal(ours.weight.real, real.weight) and not ours.weight.imag.any()
        assert ours.weight.is_interleaved()
        x = torch.randn(2, *((6,) if isinstance(real, torch.nn.Linear) else (3, 8, 8)))
        torch.testing.assert_close(ours(x.to(torch.complex64)).real, real(x), rtol=1e-5, atol=1e-5)


def test_compile_fullgraph_and_export_of_every_cplxfast_layer():
    torch.manual_seed(0)
    model = EveryLayer(ours_nn)
    model.drop.p = 0.0
    args = inputs()
    eager = model(*args)
    eager.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True)(*args)
    out.backward()
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
    for p, g in zip(model.parameters(), grads):  # inductor reassociates the plain-PyTorch layers' sums
        torch.testing.assert_close(p.grad, g, rtol=1e-3, atol=1e-3)
    model.eval()
    exported = torch.export.export(model, args)
    torch.testing.assert_close(exported.module()(*args), model(*args), rtol=1e-5, atol=1e-5)


@pytest.mark.cplxmodule
def test_convert_transposed_convolution():
    theirs = theirs_nn.CplxConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, bias=True)
    ours = ours_nn.convert(theirs)
    assert isinstance(ours, ours_nn.CplxConvTranspose2d)
    assert (ours.stride, ours.padding, ours.output_padding, ours.groups) == ((2, 2), (1, 1), (1, 1), 2)
    for (k1, v1), (k2, v2) in zip(theirs.state_dict().items(), ours.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    z = crandn(1, 4, 5, 5, dtype=torch.complex64)
    want = torch.nn.functional.conv_transpose2d(z, ours.weight.complex(), ours.bias.complex(), 2, 1, 1, 2)
    torch.testing.assert_close(ours(z), want, rtol=1e-5, atol=1e-5)


@pytest.mark.cplxmodule
def test_convert_refuses_what_has_no_twin():
    with pytest.raises(ValueError, match="zero padding only"):
        ours_nn.convert(theirs_nn.CplxConvTranspose1d(2, 2, 3, padding=1, padding_mode="circular"))
    with pytest.warns(UserWarning, match="circular"):
        ours_nn.convert(theirs_nn.CplxConv1d(2, 2, 3, padding=1, padding_mode="circular"))
