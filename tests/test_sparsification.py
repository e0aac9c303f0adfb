"""cplxfast.nn.relevance / masked / sparsity: the sparsification layers and utilities, against the
float64 reference with the same noise, statistically, in closed form, and against cplxmodule's
own layers (per-test marker) through convert() both ways and in half-converted models."""
import copy
import math
import warnings

import pytest
import torch

import cplxfast.nn as cnn
from cplxfast import _reference as ref
from cplxfast import ops, special
from cplxfast.nn import masked as M
from cplxfast.nn import relevance as R
from cplxfast.nn import sparsity as S
from conftest import crandn

CPLX_KINDS = {  # kind -> (constructor args, input shapes)
    "Linear": ((6, 4), [(5, 6)]),
    "Bilinear": ((3, 4, 2), [(5, 3), (5, 4)]),
    "Conv1d": ((3, 4, 3), [(2, 3, 9)]),
    "Conv2d": ((3, 4, 3), [(2, 3, 6, 5)]),
    "Conv3d": ((2, 3, 2), [(2, 2, 4, 3, 3)]),
}
PENALTIES = ["VD", "ARD", "VDScaleFree", "VDApprox", "VDBogus"]


def noise(shape, dtype, seed):
    torch.manual_seed(seed)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return ops.gaussian_reparam(torch.zeros(shape, dtype=dtype), torch.ones(shape, dtype=real))[0]


def make_layer(cls, args, seed=0, dtype=torch.float64, log_sigma2=(-4.0, 1.0)):
    torch.manual_seed(seed)
    layer = cls(*args).to(dtype)
    with torch.no_grad():
        layer.log_sigma2.uniform_(*log_sigma2)
    return layer


def reference_mu_s2(layer, kind, xs):
    """mu and s2 of a Gaussian layer in float64 from its parameters (SEMANTICS.md)."""
    F = torch.nn.functional
    w = torch.complex(layer.weight.real, layer.weight.imag).to(torch.complex128)
    b = None if layer.bias is None else torch.complex(layer.bias.real, layer.bias.imag).to(torch.complex128)
    var_w = torch.exp(layer.log_sigma2.double())
    xs = [x.to(torch.complex128) for x in xs]
    abs2 = [x.real ** 2 + x.imag ** 2 for x in xs]
    if kind == "Linear":
        return ref.linear(xs[0], w, b), F.linear(abs2[0], var_w)
    if kind == "Bilinear":
        x1 = xs[0].conj() if layer.conjugate else xs[0]
        mu = torch.einsum("...i,kij,...j->...k", x1, w, xs[1])
        return (mu if b is None else mu + b), F.bilinear(abs2[0], abs2[1], var_w)
    conv = (F.conv1d, F.conv2d, F.conv3d)[layer._dims - 1]
    geometry = (layer.stride, layer.padding, layer.dilation, layer.groups)
    return ref.conv(xs[0], w, b, *geometry), conv(abs2[0], var_w, None, *geometry)


@pytest.mark.parametrize("kind", list(CPLX_KINDS))
def test_training_forward_and_gradients_match_reference_with_the_same_noise(kind):
    """The fused training forward is mu + e sqrt(max(s2, 1e-8)); its gradients to the input, the
    weight's parts, the bias and log_sigma2 are the float64 reference's, with the same noise."""
    args, shapes = CPLX_KINDS[kind]
    layer = make_layer(getattr(R, f"Cplx{kind}VD"), args)
    torch.manual_seed(1)
    xs = [crandn(*s).requires_grad_() for s in shapes]
    torch.manual_seed(7)
    out = layer(*xs)
    mu, s2 = reference_mu_s2(layer, kind, xs)
    expected = ref.gaussian_reparam(mu, s2, noise(tuple(out.shape), torch.complex128, 7))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    g = crandn(*out.shape)
    params = [layer.weight.real, layer.weight.imag, layer.bias.real, layer.bias.imag, layer.log_sigma2]
    got = torch.autograd.grad(out, [*xs, *params], g)
    want = torch.autograd.grad(expected, [*xs, *params], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["Linear", "Conv1d"])
def test_training_outputs_have_mean_mu_and_variance_s2(kind):
    """n draws of the same input (rows of one batch): per output entry and part, the sample mean is
    mu within 6 standard errors (sqrt(s2 / 2n)) and the sample variance s2 / 2 within 6 of its
    standard errors (s2 / 2 * sqrt(2 / n))."""
    args, shapes = CPLX_KINDS[kind]
    layer = make_layer(getattr(R, f"Cplx{kind}ARD"), args, dtype=torch.float32, log_sigma2=(-2.0, 0.0))
    torch.manual_seed(2)
    x = crandn(*shapes[0][1:], dtype=torch.complex64)
    n = 20_000
    with torch.no_grad():
        out = layer(x.expand(n, *x.shape)).to(torch.complex128)
        mu, s2 = reference_mu_s2(layer, kind, [x.unsqueeze(0)])
    for part, m in ((out.real, mu.real), (out.imag, mu.imag)):
        assert ((part.mean(0) - m[0]).abs() <= 6 * torch.sqrt(s2[0] / (2 * n))).all()
        assert ((part.var(0) - s2[0] / 2).abs() <= 6 * s2[0] / 2 * math.sqrt(2 / n)).all()


@pytest.mark.parametrize("kind", list(CPLX_KINDS))
def test_eval_forward_is_the_plain_layer(kind):
    args, shapes = CPLX_KINDS[kind]
    layer = make_layer(getattr(R, f"Cplx{kind}ARD"), args).eval()
    plain = getattr(cnn, f"Cplx{kind}")(*args).double()
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "log_sigma2"})
    xs = [crandn(*s) for s in shapes]
    torch.testing.assert_close(layer(*xs), plain(*xs), rtol=0, atol=0)


def test_gaussian_layers_keep_the_kind_of_input():
    """Any object with .real/.imag tensors (cplxmodule's Cplx) comes back as its own kind."""
    class Pair:
        def __init__(self, real, imag):
            self.real, self.imag = real, imag

    layer = make_layer(R.CplxLinearVD, (6, 4))
    z = crandn(5, 6)
    out = layer(Pair(z.real, z.imag))
    assert isinstance(out, Pair) and out.real.shape == (5, 4)


def test_log_alpha_penalties_relevance_and_sparsity_in_closed_form():
    layer = make_layer(R.CplxLinearARD, (6, 4))
    w = torch.complex(layer.weight.real, layer.weight.imag)
    log_alpha = layer.log_sigma2 - 2 * torch.log(w.abs() + 1e-12)
    torch.testing.assert_close(layer.log_alpha, log_alpha)
    torch.testing.assert_close(layer.penalty, torch.nn.functional.softplus(-log_alpha))
    kept = (log_alpha <= 0.5).to(log_alpha)
    assert torch.equal(layer.relevance(threshold=0.5), kept)
    dropped = w.numel() - kept.sum().item()
    # both parts of the weight drop the same entries; log_sigma2 is not counted, the bias is
    assert S.sparsity(layer, threshold=0.5) == pytest.approx(2 * dropped / (2 * w.numel() + 2 * 4))
    vd = make_layer(R.CplxLinearVD, (6, 4))  # gamma - log_alpha - Ei(-exp(-log_alpha)): test_special.py
    torch.testing.assert_close(vd.penalty, special.cplx_vd_penalty(vd.log_alpha), rtol=0, atol=0)


@pytest.mark.scipy
def test_torch_expi_matches_scipy_and_gradchecks():
    import scipy.special
    x = torch.randn(200, dtype=torch.float64)
    torch.testing.assert_close(R.torch_expi(x), torch.from_numpy(scipy.special.expi(x.numpy())), rtol=1e-7, atol=0)
    assert torch.autograd.gradcheck(R.torch_expi, x[:20].clone().requires_grad_())


@pytest.mark.scipy
def test_scale_free_and_bogus_penalties():
    import scipy.special
    layer = make_layer(R.CplxLinearVDScaleFree, (6, 4))
    w = torch.complex(layer.weight.real, layer.weight.imag)
    law = torch.log(w.abs() + 1e-12)
    ei = torch.from_numpy(scipy.special.expi(-torch.exp(2 * law - layer.log_sigma2).detach().numpy()))
    torch.testing.assert_close(layer.penalty.detach(), (law - layer.log_sigma2 - 0.5 * ei).detach(), rtol=1e-7, atol=1e-9)
    bogus, vd = make_layer(R.CplxLinearVDBogus, (6, 4)), make_layer(R.CplxLinearVD, (6, 4))
    torch.testing.assert_close(bogus.penalty, -bogus.log_alpha)
    g_bogus = torch.autograd.grad(bogus.penalty.sum(), bogus.log_sigma2)[0]
    g_vd = torch.autograd.grad(vd.penalty.sum(), vd.log_sigma2)[0]
    torch.testing.assert_close(g_bogus, g_vd)


# ---- masked layers (the properties cplxmodule's own tests check, on cplxfast's layers) --------------------------

MASKED = [M.LinearMasked, M.CplxLinearMasked]


def _weight(layer):
    w = layer.weight
    return w if isinstance(w, torch.Tensor) else torch.complex(w.real, w.imag)


def _input(layer, rows=3):
    x = torch.ones(rows, layer.in_features)
    return x if isinstance(layer.weight, torch.Tensor) else torch.complex(x, x)


@pytest.mark.parametrize("cls", MASKED)
def test_masked_layer_without_a_mask_raises(cls):
    layer = cls(11, 13)
    assert not layer.is_sparse and layer.mask is None and not M.is_sparse(layer)
    with pytest.raises(RuntimeError, match="has no sparsity mask"):
        layer.weight_masked
    with pytest.raises(RuntimeError, match="has no sparsity mask"):
        layer(_input(layer))


@pytest.mark.parametrize("cls", MASKED)
@pytest.mark.parametrize("setter", ["attribute", "method"])
def test_mask_interface(cls, setter):
    layer = cls(101, 97)

    def set_mask(m):
        if setter == "attribute":
            layer.mask = m
        else:
            assert layer.mask_(m) is layer

    for shape in [(), (1, 1), (97, 1), (1, 101), (97, 101)]:
        m = torch.randint(2, size=shape).float() if shape else torch.tensor(1.0)
        set_mask(m)
        assert layer.mask.shape == (97, 101) and layer.mask.is_contiguous()
        torch.testing.assert_close(layer.mask, m.expand(97, 101))
        torch.testing.assert_close(layer.weight_masked, m * _weight(layer))
        set_mask(None)
        assert layer.mask is None
        with pytest.raises(RuntimeError, match="has no sparsity mask"):
            layer.weight_masked
    set_mask(torch.ones(97, 101))
    with pytest.raises(RuntimeError, match="must match the existing size"):
        set_mask(torch.ones(97, 2))
    with pytest.raises(TypeError, match="must be either a Tensor or `None`"):
        set_mask([1.0])


@pytest.mark.parametrize("cls", MASKED)
def test_masked_state_dict_loading(cls):
    plain_cls = torch.nn.Linear if cls is M.LinearMasked else cnn.CplxLinear
    origin, layer = plain_cls(101, 97), cls(101, 97)
    layer.load_state_dict(origin.state_dict(), strict=False)
    torch.testing.assert_close(_weight(layer), _weight(origin))
    with pytest.raises(RuntimeError, match=r"Missing key\(s\)"):
        layer.load_state_dict(origin.state_dict(), strict=True)
    origin.load_state_dict(layer.state_dict(), strict=True)  # no mask: no key
    layer.mask = torch.tensor(1.0)
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\)"):
        origin.load_state_dict(layer.state_dict(), strict=True)
    layer.load_state_dict({**origin.state_dict(), "mask": None})  # None removes the mask
    assert layer.mask is None
    mask = torch.randint(2, size=(97, 101)).float()
    layer.mask = mask
    layer.load_state_dict(origin.state_dict(), strict=False)  # absent and not strict: kept
    torch.testing.assert_close(layer.mask, mask)
    with pytest.raises(RuntimeError, match=r"Missing key\(s\)"):
        layer.load_state_dict(origin.state_dict(), strict=True)
    for shape in [(1,), (97, 1), (1, 101), (97, 101)]:
        fresh = cls(101, 97).mask_(None)
        m = torch.randint(2, size=shape).float()
        fresh.load_state_dict({**origin.state_dict(), "mask": m})
        torch.testing.assert_close(fresh.mask, m.expand(97, 101))
        torch.testing.assert_close(fresh.weight_masked, m * _weight(origin))


@pytest.mark.parametrize("name,args,shape", [
    ("CplxLinearMasked", (6, 4), (5, 6)), ("CplxConv1dMasked", (3, 4, 3), (2, 3, 9)),
    ("CplxConv2dMasked", (3, 4, 3), (2, 3, 6, 5)), ("CplxBilinearMasked", (3, 3, 2), (5, 3)),
])
def test_masked_forward_is_the_layer_with_masked_weight_and_masked_entries_get_no_gradient(name, args, shape):
    torch.manual_seed(0)
    layer = getattr(M, name)(*args).double()
    layer.mask = torch.randint(2, size=layer.weight.shape).double()
    plain = getattr(cnn, name.replace("Masked", ""))(*args).double()
    state = layer.state_dict()
    state["weight.real"], state["weight.imag"] = state["weight.real"] * layer.mask, state["weight.imag"] * layer.mask
    plain.load_state_dict({k: v for k, v in state.items() if k != "mask"})
    x = crandn(*shape)
    xs = (x, x) if "Bilinear" in name else (x,)
    out = layer(*xs)
    torch.testing.assert_close(out, plain(*xs), rtol=1e-12, atol=1e-12)
    out.abs().sum().backward()
    for part in (layer.weight.real, layer.weight.imag):
        assert (part.grad[layer.mask == 0] == 0).all() and (part.grad[layer.mask != 0] != 0).any()


def test_mask_utilities_in_closed_form():
    torch.manual_seed(0)
    model = torch.nn.Sequential(R.CplxLinearARD(6, 5), torch.nn.Sequential(R.LinearARD(5, 3)), M.CplxLinearMasked(6, 5))
    with torch.no_grad():
        model[0].log_sigma2.uniform_(-3, 3)
        model[1][0].log_sigma2.uniform_(-3, 3)
    masks = R.compute_ard_masks(model, threshold=0.0)
    assert set(masks) == {"0.mask", "1.0.mask"}
    assert torch.equal(masks["0.mask"], (model[0].log_alpha <= 0).to(masks["0.mask"]))
    names = [n for n, _ in R.named_penalties(model)]
    assert names == ["0", "1.0"]
    values = dict(R.named_penalties(model, reduction=None))
    torch.testing.assert_close(values["1.0"], 0.5 * torch.nn.functional.softplus(-model[1][0].log_alpha))
    with pytest.raises(ValueError, match="reduction"):
        list(R.penalties(model, reduction="max"))
    soft = {"2.mask": torch.rand(5, 6)}
    state, binary = M.binarize_masks(model.state_dict(), soft)
    torch.testing.assert_close(state["2.weight.real"], model[2].weight.real * soft["2.mask"])
    assert torch.equal(binary["2.mask"], (soft["2.mask"] != 0).float())
    M.deploy_masks(model, state_dict={"2.mask": binary["2.mask"]})
    assert M.is_sparse(model[2]) and dict(M.named_masks(model))["2"] is model[2].mask
    M.deploy_masks(model, state_dict={}, reset=True)
    assert not M.is_sparse(model[2])


# ---- against cplxmodule -------------------------------------------------------------------------------------------

def _cplxmodule_layers():
    """(cplxmodule class name, constructor args, input shapes) of every sparsification layer."""
    out = []
    for kind, (args, shapes) in CPLX_KINDS.items():
        for penalty in PENALTIES:
            out.append((f"Cplx{kind}{penalty}", args, shapes))
        out.append((f"Cplx{kind}Masked", args, shapes))
        real_args = args if kind != "Bilinear" else (3, 4, 2)
        for suffix in ("VD", "ARD", "Masked"):
            out.append((f"{kind}{suffix}", real_args, shapes))
    out += [("LinearL0", (6, 4), [(5, 6)]), ("LinearLASSO", (6, 4), [(5, 6)])]
    return out


def _cplxmodule_class(name):
    import cplxmodule.nn.masked as cm
    import cplxmodule.nn.relevance as cr
    import cplxmodule.nn.relevance.extensions as ce
    for module in (cr, cm, ce):
        if hasattr(module, name):
            return getattr(module, name)
    raise KeyError(name)


def _randomise(layer):
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name in ("log_sigma2", "log_alpha"):
                p.uniform_(-4, 3)
    if "Masked" in type(layer).__name__:
        weight = layer.weight if isinstance(layer.weight, torch.Tensor) else layer.weight.real
        layer.mask = torch.randint(2, size=weight.shape).to(weight)
    return layer


def _inputs(name, shapes, layer):
    torch.manual_seed(3)
    if name.startswith("Cplx"):
        from cplxmodule import Cplx
        return [Cplx(torch.randn(*s).double(), torch.randn(*s).double()) for s in shapes]
    return [torch.randn(*s).double() for s in shapes]


def _values(out):
    return torch.complex(out.real, out.imag) if not isinstance(out, torch.Tensor) else out


def _kwargs_of(name):
    if name == "LinearL0":
        return {"hard": True}
    return {"hard": True, "threshold": 0.5}


@pytest.mark.cplxmodule
@pytest.mark.parametrize("name,args,shapes", _cplxmodule_layers(), ids=[c[0] for c in _cplxmodule_layers()])
def test_convert_every_sparsification_layer(name, args, shapes):
    """convert() swaps each layer for cplxfast's: same state_dict (keys, values, mask), mode, eval
    outputs, penalty and its gradient, relevance and sparsity; its state_dict loads back into
    cplxmodule's layer. The real layers and L0 are plain PyTorch: their training outputs are
    cplxmodule's bit for bit under the same seed."""
    torch.manual_seed(0)
    theirs = _randomise(_cplxmodule_class(name)(*args).double())
    ours = cnn.convert(copy.deepcopy(theirs))
    assert type(ours).__module__.startswith("cplxfast") and type(ours).__name__ == name
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    xs = _inputs(name, shapes, theirs)
    theirs.eval(), ours.eval()
    torch.testing.assert_close(_values(ours(*xs)), _values(theirs(*xs)), rtol=1e-12, atol=1e-12)
    if hasattr(theirs, "penalty"):
        pen_t, pen_o = theirs.penalty, ours.penalty
        torch.testing.assert_close(pen_o.double(), pen_t.double(), rtol=1e-7, atol=1e-9)
        param = "log_alpha" if name == "LinearL0" else "weight" if name == "LinearLASSO" else "log_sigma2"
        g_t = torch.autograd.grad(pen_t.sum(), getattr(theirs, param))[0]
        g_o = torch.autograd.grad(pen_o.sum(), getattr(ours, param))[0]
        torch.testing.assert_close(g_o, g_t, rtol=1e-7, atol=1e-9)
        kw = _kwargs_of(name)
        assert torch.equal(ours.relevance(**kw).to(torch.float64), theirs.relevance(**kw).to(torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from cplxmodule.nn.utils.sparsity import sparsity as their_sparsity
        assert S.sparsity(ours, **_kwargs_of(name)) == their_sparsity(theirs, **_kwargs_of(name))
    if not name.startswith("Cplx") and "Masked" not in name:
        theirs.train(), ours.train()
        torch.manual_seed(9)
        a = theirs(*xs)
        torch.manual_seed(9)
        assert torch.equal(ours(*xs), a)
    back = _cplxmodule_class(name)(*args).double()
    back.load_state_dict(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)


@pytest.mark.cplxmodule
@pytest.mark.parametrize("kind", ["Linear", "Conv2d"])
def test_training_outputs_have_cplxmodules_mean_and_variance(kind):
    """The converted layer's training outputs, over many draws, have the mean (cplxmodule's eval
    output) and variance (cplxmodule's s2) of cplxmodule's: bounds of 6 standard errors as above."""
    from cplxmodule import Cplx
    args, shapes = CPLX_KINDS[kind]
    theirs = _randomise(_cplxmodule_class(f"Cplx{kind}VD")(*args))
    ours = cnn.convert(copy.deepcopy(theirs))
    torch.manual_seed(2)
    x = Cplx(torch.randn(*shapes[0][1:]), torch.randn(*shapes[0][1:]))
    n = 20_000
    with torch.no_grad():
        mu = theirs.eval()(Cplx(x.real.unsqueeze(0), x.imag.unsqueeze(0)))
        abs2 = (x.real ** 2 + x.imag ** 2).unsqueeze(0).double()
        w = torch.exp(theirs.log_sigma2.double())
        F = torch.nn.functional
        s2 = F.linear(abs2, w) if kind == "Linear" else F.conv2d(abs2, w, None, theirs.stride, theirs.padding)
        out = ours.train()(Cplx(x.real.expand(n, *x.real.shape), x.imag.expand(n, *x.imag.shape)))
    for part, m in ((out.real.double(), mu.real.double()), (out.imag.double(), mu.imag.double())):
        assert ((part.mean(0) - m[0]).abs() <= 6 * torch.sqrt(s2[0] / (2 * n)) + 1e-6).all()
        assert ((part.var(0) - s2[0] / 2).abs() <= 6 * s2[0] / 2 * math.sqrt(2 / n) + 1e-6).all()


def _cplxmodule_model():
    import cplxmodule.nn as cm
    import cplxmodule.nn.masked as cmm
    import cplxmodule.nn.relevance as cr
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        cm.CplxLinear(8, 8), cr.CplxLinearVD(8, 6), cr.CplxConv1dARD(2, 3, 3),
        torch.nn.Sequential(cr.LinearARD(6, 4), cmm.CplxLinearMasked(6, 5), cmm.LinearMasked(4, 2)))
    for layer in model.modules():
        if hasattr(layer, "log_sigma2"):
            _randomise(layer)
    return model


@pytest.mark.cplxmodule
def test_half_converted_model_gets_all_its_penalties_masks_and_sparsity():
    """Utilities of cplxfast on a model of cplxmodule layers, on a copy with half of them converted
    and on one converted whole: the same names and numbers everywhere."""
    from cplxmodule.nn.masked import named_masks as their_named_masks
    from cplxmodule.nn.relevance import compute_ard_masks as their_masks
    from cplxmodule.nn.relevance import named_penalties as their_penalties
    original = _cplxmodule_model()
    half = copy.deepcopy(original)
    half[1] = cnn.convert(half[1])
    half[3][0] = cnn.convert(half[3][0])
    half[3][1] = cnn.convert(half[3][1])
    whole = cnn.convert(copy.deepcopy(original))
    assert type(half[2]).__module__.startswith("cplxmodule") and type(half[1]).__module__.startswith("cplxfast")
    expected = {n: p.item() for n, p in their_penalties(original)}
    expected_masks = their_masks(original, threshold=1.0)
    for model in (half, whole):
        assert {n: p.item() for n, p in R.named_penalties(model)} == pytest.approx(expected, rel=1e-6)
        masks = R.compute_ard_masks(model, threshold=1.0)
        assert set(masks) == set(expected_masks)
        for key in masks:
            assert torch.equal(masks[key], expected_masks[key])
        ours = dict(S.named_sparsity(model, threshold=1.0, hard=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            from cplxmodule.nn.utils.sparsity import named_sparsity as their_named_sparsity
            theirs = dict(their_named_sparsity(original, threshold=1.0, hard=True))
        assert ours == theirs
        m = {"3.1.mask": torch.ones(5, 6), "3.2.mask": torch.zeros(2, 4)}
        M.deploy_masks(model, state_dict=m)
        assert {k: v is None for k, v in M.named_masks(model)} == {"3.1": False, "3.2": False}
        assert [n for n, _ in M.named_masks(model)] == [n for n, _ in their_named_masks(original)]


@pytest.mark.cplxmodule
def test_sparsification_pipeline_with_cplxfast_layers():
    """cplxmodule's documented pipeline, on cplxfast's layers: dense -> ARD (with the KL term) ->
    masks from relevance, binarised -> masked fine-tune. The ARD phase sparsifies the weights of a
    model whose target needs few of them, the masked model keeps its pruned entries at zero, and its
    loss stays close to the ARD model's."""
    torch.manual_seed(0)
    n_in, n_out = 40, 4
    X = torch.randn(300, n_in, dtype=torch.complex64)
    y = X[:, :n_out] * 2  # only 4 of 40 inputs matter

    def train(model, steps, klw, lr=2e-2):
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = (model(X) - y).abs().square().mean() + klw * sum(R.penalties(model))
            loss.backward()
            opt.step()
        return model

    dense = train(cnn.CplxLinear(n_in, n_out, bias=False), 200, 0.0)
    ard = R.CplxLinearARD(n_in, n_out, bias=False)
    ard.load_state_dict(dense.state_dict(), strict=False)
    train(ard, 400, 1e-2)
    masks = R.compute_ard_masks(ard.eval(), threshold=1.0)
    state, masks = M.binarize_masks(ard.state_dict(), {"mask": masks["mask"]})
    fine = M.CplxLinearMasked(n_in, n_out, bias=False)
    fine.load_state_dict(state, strict=False)
    M.deploy_masks(fine, state_dict=masks)
    assert 0.5 < S.sparsity(fine, hard=True) < 1.0
    train(fine, 100, 0.0, lr=1e-2)
    pruned = fine.mask == 0
    assert (fine.weight.real[pruned] == 0).all() and (fine.weight.imag[pruned] == 0).all()
    with torch.no_grad():
        loss = (fine.eval()(X) - y).abs().square().mean().item()
    assert loss < 0.05 * y.abs().square().mean().item()
