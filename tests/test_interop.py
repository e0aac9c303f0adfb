"""Zero-copy interop between layers that pass (real, imag) pairs (cplxmodule's Cplx, or any object
with .real/.imag tensors): a layer's output parts are views of its complex result, and the next
layer takes that result back without a copy; anything else is combined with torch.complex. The
maths is the same either way: outputs and gradients are identical, bit for bit."""
import pickle

import pytest
import torch

import cplxfast.nn as cnn
from cplxfast._interop import _Parts, to_complex
from conftest import crandn


class Pair:
    """A minimal Cplx: cplxmodule's is a container of the two tensors, and so is this."""

    def __init__(self, real, imag):
        self.real, self.imag = real, imag

    def __add__(self, other):
        return Pair(self.real + other.real, self.imag + other.imag)


def layers(device="cpu"):
    torch.manual_seed(0)
    return torch.nn.ModuleList([
        cnn.CplxConv1d(3, 8, 3, padding=1), cnn.CplxBatchNorm1d(8), cnn.CplxAdaptiveModReLU(8, 1),
        cnn.CplxConv1d(8, 8, 5, padding=2, groups=8), cnn.CplxLinear(16, 16),
    ]).to(device)


def run(model, x, wrap):
    conv1, bn, act, dw, lin = model
    z = act(bn(conv1(wrap(x))))
    z = z + dw(z)  # arithmetic between layers: taken on the complex tensors (_backed)
    return lin(z)


def test_a_layer_output_comes_back_without_a_copy():
    z = crandn(4, 3, 16, dtype=torch.complex64)
    out = cnn.CplxConv1d(3, 8, 3)(Pair(z.real, z.imag))
    assert isinstance(out, Pair)
    back, _ = to_complex(out, "test")
    assert back.is_complex() and torch.equal(back.real, out.real) and torch.equal(back.imag, out.imag)
    assert back.data_ptr() == out.real.data_ptr()  # the layer's own result, not a copy
    other = Pair(out.real.clone(), out.imag)
    assert to_complex(other, "test")[0].data_ptr() != out.real.data_ptr()  # not views of one tensor
    assert torch.equal(to_complex(other, "test")[0], back)
    swapped = Pair(out.imag, out.real)
    assert torch.equal(to_complex(swapped, "test")[0], torch.complex(out.imag, out.real))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_pair_flow_gives_the_same_outputs_and_gradients_as_complex_flow(device, mode):
    x = crandn(4, 3, 16, dtype=torch.complex64, device=device)
    results = []
    for wrap in (lambda t: t, lambda t: Pair(t.real, t.imag)):
        model = layers(device).train(mode == "train")
        xg = x.clone().requires_grad_()
        y = run(model, xg, wrap)
        y = y if isinstance(y, torch.Tensor) else torch.complex(y.real, y.imag)
        grads = torch.autograd.grad(y.abs().sum(), [xg, *model.parameters()])
        results.append((y.detach(), grads, [b.clone() for b in model.buffers()]))
    (y0, g0, b0), (y1, g1, b1) = results
    assert torch.equal(y0, y1)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    assert all(torch.equal(a, b) for a, b in zip(b0, b1))


class Cplxish:
    """A Cplx with cplxmodule's arithmetic: new parts from the parts, += as +, type(self) kept."""

    def __init__(self, real, imag):
        self.real, self.imag = real, imag

    def __add__(self, other):
        return type(self)(self.real + other.real, self.imag + other.imag)

    def __sub__(self, other):
        return type(self)(self.real - other.real, self.imag - other.imag)

    def __neg__(self):
        return type(self)(-self.real, -self.imag)

    def __mul__(self, other):
        return type(self)(self.real * other.real - self.imag * other.imag,
                          self.real * other.imag + self.imag * other.real)

    __iadd__ = __add__


def test_sums_of_layer_outputs_are_one_complex_tensor_too():
    """+, +=, - and unary - of layer outputs are taken on their complex tensors (_backed): the
    result's parts view one complex tensor that the next layer takes without a copy, with the
    values of the parts' arithmetic, bit for bit, and the same gradients. Other arithmetic, and
    operands that are not layer outputs, keep the type's own."""
    torch.manual_seed(0)
    x = crandn(4, 3, 16, dtype=torch.complex64)
    first, second, head = cnn.CplxConv1d(3, 8, 3, padding=1), cnn.CplxConv1d(3, 8, 3, padding=1), cnn.CplxConv1d(8, 2, 1)
    a, b = first(Cplxish(x.real, x.imag)), second(Cplxish(x.real, x.imag))
    c = a
    c += b
    for got, want in ((a + b, (a.real + b.real, a.imag + b.imag)), (c, (a.real + b.real, a.imag + b.imag)),
                      (a - b, (a.real - b.real, a.imag - b.imag)), (-a, (-a.real, -a.imag))):
        assert isinstance(got, Cplxish) and torch.equal(got.real, want[0]) and torch.equal(got.imag, want[1])
        whole, _ = to_complex(got, "test")
        assert whole.data_ptr() == got.real.data_ptr()  # no copy for the next layer
    for other in (a * b, a + Cplxish(b.real.clone(), b.imag)):
        assert to_complex(other, "test")[0].data_ptr() != other.real.data_ptr()  # the type's own parts
    params = [*first.parameters(), *second.parameters(), *head.parameters()]
    backed = torch.autograd.grad(head(a + b).real.square().sum(), params, retain_graph=True)
    plain = torch.autograd.grad(head(Cplxish(a.real + b.real, a.imag + b.imag)).real.square().sum(), params)
    assert all(torch.equal(g, h) for g, h in zip(backed, plain))
    with torch.no_grad():
        s = first(Cplxish(x.real, x.imag)) + second(Cplxish(x.real, x.imag))
    assert type(pickle.loads(pickle.dumps(s))) is Cplxish  # pickled as the type itself


def test_an_in_place_add_of_the_type_is_left_alone():
    class InPlace(Cplxish):
        def __iadd__(self, other):
            self.real, self.imag = self.real + other.real, self.imag + other.imag
            return self

    z = crandn(4, 3, 16, dtype=torch.complex64)
    out = cnn.CplxConv1d(3, 8, 3)(InPlace(z.real, z.imag))
    assert isinstance(out, InPlace) and type(out).__iadd__ is InPlace.__iadd__
    assert type(out).__add__ is not InPlace.__add__


def test_in_place_changes_to_the_parts_are_seen_by_the_next_layer():
    """The parts are views of the complex result: changing them changes what the next layer reads,
    exactly as if it had combined them with torch.complex."""
    torch.manual_seed(0)
    z = crandn(4, 3, 16, dtype=torch.complex64)
    first, second = cnn.CplxConv1d(3, 8, 3), cnn.CplxConv1d(8, 2, 3)
    with torch.no_grad():
        out = first(Pair(z.real, z.imag))
        out.real.mul_(2)
        want = second(Pair(out.real.clone(), out.imag.clone()))
        got = second(out)
    assert torch.equal(got.real, want.real) and torch.equal(got.imag, want.imag)


def test_gradients_of_the_parts_go_back_as_one_complex_tensor():
    """A layer's output parts are made by one autograd Function (_interop._Parts): their gradients
    go back as torch.complex(grad_re, grad_im) in z's layout, not as a zero-filled complex tensor
    per part, and as the complex tensor itself, uncopied, when they are its .real and .imag (as
    torch.complex's backward hands them on)."""
    z = crandn(3, 4, dtype=torch.complex64).requires_grad_()
    re, im = _Parts.apply(z)
    assert re.data_ptr() == z.data_ptr() and torch.equal(re, z.real) and torch.equal(im, z.imag)
    g = crandn(3, 4, dtype=torch.complex64)
    (whole,) = torch.autograd.grad((re, im), z, (g.real, g.imag), retain_graph=True)
    assert whole.data_ptr() == g.data_ptr() and torch.equal(whole, g)
    (combined,) = torch.autograd.grad((re, im), z, (g.real.clone(), g.imag.clone()), retain_graph=True)
    assert torch.equal(combined, g)
    t_re, t_im = g.real.t().contiguous().t(), g.imag.t().contiguous().t()  # transposed layout, as from a transpose
    (relaid,) = torch.autograd.grad((re, im), z, (t_re, t_im), retain_graph=True)
    assert torch.equal(relaid, g) and relaid.stride() == z.stride()  # in z's layout
    (real_only,) = torch.autograd.grad(re, z, g.real, retain_graph=True)
    assert torch.equal(real_only, torch.complex(g.real, torch.zeros_like(g.real)))
    (imag_only,) = torch.autograd.grad(im, z, g.imag)
    assert torch.equal(imag_only, torch.complex(torch.zeros_like(g.imag), g.imag))


def test_transposed_parts_are_combined_into_a_contiguous_tensor():
    """A Cplx of transposed parts (a head applied over time steps) is combined into a contiguous
    complex tensor, once, with the gradients of torch.complex."""
    z = crandn(4, 6, 5, dtype=torch.complex64)
    re, im = z.real.transpose(1, 2).requires_grad_(), z.imag.transpose(1, 2).requires_grad_()
    got, _ = to_complex(Pair(re, im), "test")
    assert got.is_contiguous() and torch.equal(got, torch.complex(re, im))
    g = crandn(4, 5, 6, dtype=torch.complex64)
    got.backward(g)
    assert torch.equal(re.grad, g.real) and torch.equal(im.grad, g.imag)
    cl = crandn(2, 3, 4, 5, dtype=torch.complex64).contiguous(memory_format=torch.channels_last)
    kept, _ = to_complex(Pair(cl.real.contiguous(memory_format=torch.channels_last),
                              cl.imag.contiguous(memory_format=torch.channels_last)), "test")
    assert kept.is_contiguous(memory_format=torch.channels_last)  # a standard layout is kept


def test_parts_of_an_output_that_requires_grad_are_not_changed_in_place():
    """The parts are views made in a custom autograd Function: torch refuses in-place changes to
    them while the output requires grad (outside autograd they are plain views, as above)."""
    z = crandn(4, 3, 16, dtype=torch.complex64)
    out = cnn.CplxConv1d(3, 8, 3)(Pair(z.real, z.imag))
    with pytest.raises(RuntimeError, match="view"):
        out.real.mul_(2)


# ---- cplxfast.functional on Cplx: inputs, and weights as Cplx, CplxParameter or complex tensors ----------------

def _functional_cases():
    import cplxfast.functional as F
    z1, z2, z3 = crandn(4, 6), crandn(2, 3, 9), crandn(2, 4, 9)
    lin, conv, convt = cnn.CplxLinear(6, 5).double(), cnn.CplxConv1d(3, 4, 3).double(), \
        cnn.CplxConvTranspose1d(4, 3, 3, bias=True).double()
    return [
        ("linear", lambda x, w, b: F.linear(x, w, b), z1, lin),
        ("conv1d", lambda x, w, b: F.conv1d(x, w, b, padding=1), z2, conv),
        ("conv_transpose1d", lambda x, w, b: F.conv_transpose1d(x, w, b, stride=2), z3, convt),
    ]


@pytest.mark.parametrize("case", range(3))
@pytest.mark.parametrize("weights", ["complex", "Cplx", "CplxParameter", "mixed"])
def test_functional_takes_cplx_inputs_and_weights_and_returns_the_input_kind(case, weights):
    name, fn, z, layer = _functional_cases()[case]
    w_c, b_c = layer.weight.complex(), layer.bias.complex()
    expected = fn(z, w_c, b_c)
    w, b = {"complex": (w_c, b_c), "Cplx": (Pair(w_c.real, w_c.imag), Pair(b_c.real, b_c.imag)),
            "CplxParameter": (layer.weight, layer.bias), "mixed": (w_c, Pair(b_c.real, b_c.imag))}[weights]
    out = fn(Pair(z.real, z.imag), w, b)
    assert isinstance(out, Pair), name
    torch.testing.assert_close(torch.complex(out.real, out.imag), expected, rtol=1e-12, atol=1e-12)
    assert isinstance(fn(z, w, b), torch.Tensor)


def test_functional_parameter_gradients_through_cplx_parameters():
    import cplxfast.functional as F
    layer = cnn.CplxLinear(6, 5).double()
    z = crandn(4, 6)
    F.linear(Pair(z.real, z.imag), layer.weight, layer.bias).real.sum().backward()
    layer2 = cnn.CplxLinear(6, 5).double()
    layer2.load_state_dict(layer.state_dict())
    layer2(z).real.sum().backward()
    for a, b in zip(layer.parameters(), layer2.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_functional_modrelu_and_batch_norm_take_cplx():
    import cplxfast.functional as F
    z = crandn(8, 3, 5)
    out = F.modrelu(Pair(z.real, z.imag), 0.3)
    assert isinstance(out, Pair)
    torch.testing.assert_close(torch.complex(out.real, out.imag), F.modrelu(z, 0.3))
    out = F.batch_norm(Pair(z.real, z.imag))
    assert isinstance(out, Pair)
    torch.testing.assert_close(torch.complex(out.real, out.imag), F.batch_norm(z))


@pytest.mark.cplxmodule
def test_functional_with_cplxmodule_cplx_matches_cplxmodule_cplx_functions():
    """Code written against cplxmodule.cplx switches by import: same calls, Cplx in and out."""
    import cplxmodule.cplx as cc
    from cplxmodule import Cplx
    import cplxfast.functional as F
    torch.manual_seed(0)
    x = Cplx(torch.randn(4, 3, 9).double(), torch.randn(4, 3, 9).double())
    w = Cplx(torch.randn(5, 3, 3).double(), torch.randn(5, 3, 3).double())
    b = Cplx(torch.randn(5).double(), torch.randn(5).double())
    for ours, theirs in ((F.conv1d(x, w, b, 1, 1), cc.conv1d(x, w, b, 1, 1)),
                         (F.modrelu(x, 0.5), cc.modrelu(x, 0.5))):
        assert isinstance(ours, Cplx)
        torch.testing.assert_close(ours.real, theirs.real)
        torch.testing.assert_close(ours.imag, theirs.imag)
    wl = Cplx(torch.randn(2, 9).double(), torch.randn(2, 9).double())
    ours, theirs = F.linear(x, wl), cc.linear(x, wl, None)
    assert isinstance(ours, Cplx)
    torch.testing.assert_close(ours.real, theirs.real)
    torch.testing.assert_close(ours.imag, theirs.imag)
