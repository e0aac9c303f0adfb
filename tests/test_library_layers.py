"""convert() on torchcvnn's and complextorch's layers: each twin (cplxfast.nn.torchcvnn_layers,
cplxfast.nn.complextorch_layers) against the original layer: outputs, input and parameter
gradients and running statistics over several train steps and eval, state_dict round trips; the
twins' maths without the libraries (closed forms); convert()'s report of what it left."""
import math
import warnings

import pytest
import torch

from cplxfast import _reference as ref
from cplxfast import nn as cnn
from cplxfast.nn import complextorch_layers as ct_twins
from cplxfast.nn import torchcvnn_layers as tcv_twins
from conftest import crandn

# fp32 kernels against the libraries' fp32 op chains: both round differently (another summation
# order, another closed form of the 2x2 inverse square root), so agreement is to a few fp32 ulps of
# the output scale, compounded a little by the running statistics over the steps.
RTOL, ATOL = 2e-5, 2e-5


def _train_and_compare(theirs, ours, shape, steps=3, lr=0.05):
    """Same inputs through both for `steps` SGD steps in train mode, then eval: outputs, gradients
    (input and every parameter) and the state_dict after each step agree."""
    ours.load_state_dict(theirs.state_dict(), strict=True)
    opt_a = torch.optim.SGD(theirs.parameters(), lr=lr) if list(theirs.parameters()) else None
    opt_b = torch.optim.SGD(ours.parameters(), lr=lr) if list(ours.parameters()) else None
    torch.manual_seed(1)
    for step in range(steps + 1):
        training = step < steps
        theirs.train(training), ours.train(training)
        x = 1.5 * crandn(*shape, dtype=torch.complex64) + (0.3 - 0.2j)
        g = crandn(*shape, dtype=torch.complex64)
        results = []
        for layer, opt in ((theirs, opt_a), (ours, opt_b)):
            xg = x.clone().requires_grad_()
            y = layer(xg)
            y.backward(g)
            results.append((y.detach(), xg.grad, [p.grad.clone() for p in layer.parameters()]))
            if opt is not None and training:
                opt.step(), opt.zero_grad()
        (ya, gxa, gpa), (yb, gxb, gpb) = results
        torch.testing.assert_close(yb, ya, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(gxb, gxa, rtol=RTOL, atol=ATOL)
        for a, b in zip(gpa, gpb):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
        state_a, state_b = theirs.state_dict(), ours.state_dict()
        assert list(state_a) == list(state_b)
        for key in state_a:
            assert state_a[key].dtype == state_b[key].dtype and state_a[key].shape == state_b[key].shape, key
            torch.testing.assert_close(state_b[key], state_a[key], rtol=1e-5, atol=1e-6)
    theirs.load_state_dict(ours.state_dict(), strict=True)  # and back


# ------------------------------------------------------------------------------ torchcvnn
@pytest.mark.torchcvnn
@pytest.mark.parametrize("name,shape,kwargs", [
    ("BatchNorm2d", (4, 6, 5, 5), {}),
    ("BatchNorm2d", (3, 4, 6, 6), dict(momentum=0.3, eps=1e-3)),
    ("BatchNorm1d", (16, 6), {}),
    ("BatchNorm1d", (4, 5, 7), dict(track_running_stats=False)),
])
def test_torchcvnn_batch_norm(name, shape, kwargs):
    import torchcvnn.nn as tnn
    torch.manual_seed(0)
    theirs = getattr(tnn, name)(shape[1], **kwargs)
    with torch.no_grad():  # a non-trivial affine part, so its gradients and layout are exercised
        theirs.weight.add_(0.1 * torch.randn_like(theirs.weight))
        theirs.bias.add_(0.1 * torch.randn_like(theirs.bias))
    ours = cnn.convert(torch.nn.Sequential(getattr(tnn, name)(shape[1], **kwargs)))[0]
    assert type(ours) is getattr(tcv_twins, name)
    _train_and_compare(theirs, ours, shape)


@pytest.mark.torchcvnn
@pytest.mark.parametrize("normalized_shape,shape", [((6,), (4, 5, 6)), ((3, 4), (5, 3, 4))])
def test_torchcvnn_layer_norm(normalized_shape, shape):
    import torchcvnn.nn as tnn
    torch.manual_seed(0)
    theirs = tnn.LayerNorm(normalized_shape)
    with torch.no_grad():
        theirs.weight.add_(0.1 * torch.randn_like(theirs.weight))
        theirs.bias.add_(0.1 * torch.randn_like(theirs.bias))
    ours = cnn.convert(tnn.LayerNorm(normalized_shape))
    assert type(ours) is tcv_twins.LayerNorm and list(ours.state_dict()) == ["weight", "bias"]
    _train_and_compare(theirs, ours, shape)


@pytest.mark.torchcvnn
def test_torchcvnn_mod_relu_and_max_pool():
    import torchcvnn.nn as tnn
    torch.manual_seed(0)
    theirs = tnn.modReLU()
    with torch.no_grad():
        theirs.b.fill_(-0.4)
    _train_and_compare(theirs, cnn.convert(tnn.modReLU()), (3, 4, 6))
    z = torch.zeros(2, 3, dtype=torch.complex64)  # z = 0: relu(b), as torchcvnn computes it
    positive = tnn.modReLU()
    with torch.no_grad():
        positive.b.fill_(0.25)
    twin = cnn.convert(tnn.modReLU())
    twin.load_state_dict(positive.state_dict())
    torch.testing.assert_close(twin(z), positive(z))
    # MaxPool2d: equal where torchcvnn is right (one plane), per plane elsewhere
    x = crandn(1, 1, 6, 6, dtype=torch.complex64)
    with pytest.warns(UserWarning, match="first plane"):
        pool = cnn.convert(tnn.MaxPool2d(2, return_indices=False))
    torch.testing.assert_close(pool(x), tnn.MaxPool2d(2)(x))
    x = crandn(2, 3, 6, 6, dtype=torch.complex64)
    want = torch.stack([torch.stack([tnn.MaxPool2d(2)(x[n:n + 1, c:c + 1])[0, 0] for c in range(3)])
                        for n in range(2)])
    torch.testing.assert_close(pool(x), want)


def test_torchcvnn_batch_norm_maths():
    """Without torchcvnn: the unbiased-covariance whitening (the twin's reparametrisation of the
    fused op) against its closed form in float64, and eval with eps added to running_var."""
    torch.manual_seed(0)
    bn = tcv_twins.BatchNorm2d(3).double()
    bn.bias.data = bn.bias.data.to(torch.complex128)
    bn.running_mean.data = bn.running_mean.data.to(torch.complex128)
    z = crandn(4, 3, 5, 5) * 2 + 0.5
    out = bn(z)
    n = z.numel() // 3
    x = z.transpose(0, 1).reshape(3, -1)
    x = torch.stack([x.real, x.imag], -1) - torch.stack([x.real, x.imag], -1).mean(1, keepdim=True)
    cov = x.transpose(1, 2) @ x / (n - 1)
    m = cov + bn.eps * torch.eye(2, dtype=torch.float64)
    vals, vecs = torch.linalg.eigh(m)
    inv_sqrt = vecs @ torch.diag_embed(vals.rsqrt()) @ vecs.transpose(1, 2)
    w = (bn.weight @ inv_sqrt @ x.transpose(1, 2))  # [C, 2, N]
    want = torch.complex(w[:, 0], w[:, 1]).reshape(3, 4, 5, 5).transpose(0, 1)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(bn.running_var, 0.9 * math.sqrt(0.5) * torch.eye(2, dtype=torch.float64) + 0.1 * cov)
    bn.eval()
    want_eval = ref.batch_norm(z, bn.weight.permute(1, 2, 0), torch.view_as_real(bn.bias).t(),
                               torch.view_as_real(bn.running_mean).t(),
                               bn.running_var.permute(1, 2, 0) + bn.eps * torch.eye(2, dtype=torch.float64)[..., None],
                               training=False)[0]
    torch.testing.assert_close(bn(z), want_eval)


# ------------------------------------------------------------------------------ complextorch
@pytest.mark.complextorch
@pytest.mark.parametrize("name,shape,kwargs", [
    ("BatchNorm1d", (8, 6), {}),
    ("BatchNorm1d", (4, 6, 7), dict(momentum=None)),
    ("BatchNorm2d", (4, 6, 5, 5), {}),
    ("BatchNorm3d", (2, 3, 3, 4, 4), dict(affine=False)),
])
def test_complextorch_batch_norm(name, shape, kwargs):
    import complextorch.nn as ctn
    torch.manual_seed(0)
    theirs = getattr(ctn, name)(shape[1], **kwargs)
    if theirs.affine:
        with torch.no_grad():
            theirs.weight.add_(0.1 * torch.randn_like(theirs.weight))
            theirs.bias.add_(0.1 * torch.randn_like(theirs.bias))
    ours = cnn.convert(getattr(ctn, name)(shape[1], **kwargs))
    assert type(ours) is getattr(ct_twins, name)
    _train_and_compare(theirs, ours, shape)


@pytest.mark.complextorch
@pytest.mark.parametrize("make", [
    lambda ctn: ctn.modReLU(),
    lambda ctn: ctn.modReLU(bias=-0.5, learnable=True),
    lambda ctn: ctn.modReLU(bias=0.2, learnable=True),
    lambda ctn: ctn.AdaptiveModReLU(4, init=-0.3),
], ids=["fixed", "learnable", "positive-bias", "adaptive"])
def test_complextorch_mod_relu(make):
    import complextorch.nn as ctn
    torch.manual_seed(0)
    theirs = make(ctn)
    ours = cnn.convert(make(ctn))
    assert type(ours).__module__ == ct_twins.__name__
    _train_and_compare(theirs, ours, (3, 4, 6))
    # near the floor: |z| below 1e-5 (cplxmodule's floor) but above complextorch's 1e-12
    z = torch.full((1, 4, 2), 3e-7 + 1e-7j, dtype=torch.complex64)
    torch.testing.assert_close(ours(z), theirs(z), rtol=1e-5, atol=1e-9)


def test_complextorch_twins_maths():
    """Without complextorch: the twins' init and maths in closed form."""
    bn = ct_twins.BatchNorm2d(3)
    torch.testing.assert_close(bn.weight, torch.eye(2).unsqueeze(-1).expand(2, 2, 3) / math.sqrt(2))
    relu = ct_twins.AdaptiveModReLU(3, init=-0.2)
    z = crandn(2, 3, 4)
    want = torch.relu(z.abs() - 0.2) * z / z.abs()
    torch.testing.assert_close(relu(z), want)
    assert list(relu.state_dict()) == ["activation_mag.bias"]
    assert list(ct_twins.modReLU().state_dict()) == ["activation_mag.bias"]
    with pytest.raises(ValueError, match="bias must be smaller than 0"):
        ct_twins.modReLU(bias=0.1)
    with pytest.raises(ValueError, match=r"expected input \[B, 3, \*\]"):
        relu(crandn(2, 4, 4))


# ------------------------------------------------------------------------------ whole models, report
@pytest.mark.torchcvnn
@pytest.mark.complextorch
def test_convert_reports_what_it_left():
    import complextorch.nn as ctn
    import torchcvnn.nn as tnn
    model = torch.nn.Sequential(
        ctn.Conv1d(4, 4, 3, padding=1),  # delegates to a torch complex Conv1d: converted through it
        ctn.BatchNorm1d(4), ctn.CVCardiod(), tnn.Dropout(0.1), tnn.modReLU())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cnn.convert(model)
    messages = [str(w.message) for w in caught if "left" in str(w.message)]
    assert len(messages) == 1 and "2 layer(s)" in messages[0]
    assert "2 (complextorch" in messages[0] and "CVCardiod" in messages[0] and "3 (torchcvnn" in messages[0]
    assert type(model[0].conv) is cnn.Conv1d and type(model[1]) is ct_twins.BatchNorm1d
    assert type(model[4]) is tcv_twins.modReLU
    with pytest.raises(ValueError, match="CVCardiod"):
        cnn.convert(model, left="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnn.convert(model, left="ignore")


def test_twins_work_where_the_libraries_fail():
    """complextorch's BatchNorm*(1) cannot train, torchcvnn's affine=False cannot run: the twins do
    (the maths they would have computed), and complex128 input runs through torchcvnn's twin."""
    z = crandn(6, 1, dtype=torch.complex64)
    torch.testing.assert_close(ct_twins.BatchNorm1d(1)(z), cnn.CplxBatchNorm1d(1)(z) / math.sqrt(2))
    plain = tcv_twins.BatchNorm2d(3, affine=False)
    scaled = tcv_twins.BatchNorm2d(3)
    with torch.no_grad():
        scaled.weight.copy_(torch.eye(2).expand(3, 2, 2))
    x = crandn(2, 3, 4, 4, dtype=torch.complex64)
    torch.testing.assert_close(plain(x), scaled(x))
    assert tcv_twins.BatchNorm2d(3)(crandn(2, 3, 4, 4)).dtype == torch.complex128
    with pytest.raises(ValueError, match="momentum=None"):
        tcv_twins.BatchNorm2d(3, momentum=None)(x)
    with pytest.raises(ValueError, match=r"expected input \[B, 3, \*\]"):
        tcv_twins.BatchNorm2d(3)(crandn(2, 6, 4, 4, dtype=torch.complex64))
