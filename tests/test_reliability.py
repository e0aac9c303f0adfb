"""Memory saved for backward, thread safety and run-to-run reproducibility of every op family."""
import threading

import pytest
import torch

from cplxfast import _reference as ref
from cplxfast import functional as F
from cplxfast import ops
from cplxfast.nn import CplxAdaptiveModReLU, CplxBatchNorm2d, CplxLinear


def saved_bytes(fn, *inputs):
    """Bytes of the distinct storages autograd saves for backward while running fn(*inputs)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return sum(storages.values())


def test_batch_norm_and_modrelu_save_only_the_input_and_per_channel_values():
    z = torch.randn(8, 16, 12, 12, dtype=torch.complex64, requires_grad=True)
    input_bytes = z.numel() * z.element_size()
    per_channel_allowance = 4096  # statistics, weight, threshold: O(C)
    bn = CplxBatchNorm2d(16)
    assert input_bytes <= saved_bytes(bn, z) <= input_bytes + per_channel_allowance
    act = CplxAdaptiveModReLU(16, 1, 1)
    assert input_bytes <= saved_bytes(act, z) <= input_bytes + per_channel_allowance


def test_linear_saves_input_and_weight_only():
    x = torch.randn(64, 32, dtype=torch.complex64, requires_grad=True)
    layer = CplxLinear(32, 16)
    # x, and the two real weight Parameters, which share one interleaved buffer
    expected = x.numel() * x.element_size() + 2 * layer.weight.real.numel() * 4
    assert saved_bytes(layer, x) == expected


@pytest.mark.parametrize("family", ["linear", "modrelu", "batch_norm"])
def test_concurrent_calls_give_correct_results(family):
    torch.manual_seed(0)
    cases = []
    for _ in range(4):
        if family == "linear":
            x, w = torch.randn(300, 64, dtype=torch.complex64), torch.randn(48, 64, dtype=torch.complex64)
            cases.append((lambda x=x, w=w: F.linear(x, w, None, "3m"), ref.linear(x, w)))
        elif family == "modrelu":
            z, tau = torch.randn(16, 8, 32, dtype=torch.complex64), torch.rand(8, 1)
            cases.append((lambda z=z, tau=tau: ops.modrelu(z, tau), ref.modrelu(z, tau)))
        else:
            z = torch.randn(16, 8, 32, dtype=torch.complex64)
            cases.append((lambda z=z: ops.batch_norm(z, None, None, None, None, True, 1e-5)[0], ref.batch_norm(z)[0]))
    errors = []

    def work(fn, want):
        for _ in range(20):
            got = fn().to(torch.complex128)
            if (got - want).norm() / want.norm() > 1e-5:
                errors.append(family)

    threads = [threading.Thread(target=work, args=case) for case in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_results_are_bitwise_reproducible():
    torch.manual_seed(0)
    x = torch.randn(2048, 256, dtype=torch.complex64, requires_grad=True)
    layers = torch.nn.Sequential(CplxLinear(256, 256, algorithm="3m"), CplxBatchNorm2d(256).train(), CplxAdaptiveModReLU(256))

    def run():
        out = layers[2](layers[1](layers[0](x).view(2048, 256, 1, 1)).view(2048, 256))
        grads = torch.autograd.grad(out.abs().sum(), [x, *layers.parameters()])
        return out.detach(), grads

    first_out, first_grads = run()
    for _ in range(2):
        out, grads = run()
        assert torch.equal(out, first_out)
        assert all(torch.equal(a, b) for a, b in zip(grads, first_grads))
