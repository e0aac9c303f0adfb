"""Memory saved for backward, no leaks over many training steps, thread safety and run-to-run
reproducibility of every op family."""
import os
import threading
import tracemalloc

import pytest
import torch

from cplxfast import _reference as ref
from cplxfast import functional as F
from cplxfast import ops
from cplxfast.nn import CplxAdaptiveModReLU, CplxBatchNorm1d, CplxBatchNorm2d, CplxConv1d, CplxConv2d, CplxLinear


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


@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_saves_input_and_weight_only(depthwise):
    x = torch.randn(4, 8, 16, 16, dtype=torch.complex64, requires_grad=True)
    layer = CplxConv2d(8, 8, 3, padding=1, groups=8 if depthwise else 1)
    expected = x.numel() * x.element_size() + 2 * layer.weight.real.numel() * 4  # one interleaved weight buffer
    assert saved_bytes(layer, x) == expected


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_training_steps_leak_neither_python_nor_native_memory():
    torch.manual_seed(0)
    model = torch.nn.Sequential(CplxConv1d(2, 8, 5, padding=2), CplxBatchNorm1d(8), CplxAdaptiveModReLU(8, 1),
                                CplxConv1d(8, 8, 3, padding=1, groups=8), CplxConv1d(8, 4, 1, algorithm="4m"))
    head = CplxLinear(32, 3)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(4, 2, 32, dtype=torch.complex64)

    def step():
        opt.zero_grad()
        head(model(x)).abs().sum().backward()
        opt.step()

    for _ in range(200):  # warm-up: allocator caches, lazy initialisation
        step()
    tracemalloc.start()
    rss0, py0 = _resident_bytes(), tracemalloc.get_traced_memory()[0]
    for _ in range(1000):
        step()
    rss1, py1 = _resident_bytes(), tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert py1 - py0 < 256 * 1024, f"Python memory grew by {py1 - py0} bytes over 1000 steps"
    assert rss1 - rss0 < 16 * 1024 * 1024, f"resident memory grew by {rss1 - rss0} bytes over 1000 steps"


@pytest.mark.parametrize("family", ["linear", "conv", "depthwise", "modrelu", "batch_norm"])
def test_concurrent_calls_give_correct_results(family):
    torch.manual_seed(0)
    cases = []
    for _ in range(4):
        if family == "linear":
            x, w = torch.randn(300, 64, dtype=torch.complex64), torch.randn(48, 64, dtype=torch.complex64)
            cases.append((lambda x=x, w=w: F.linear(x, w, None, "3m"), ref.linear(x, w)))
        elif family in ("conv", "depthwise"):
            groups = 8 if family == "depthwise" else 1
            x, w = torch.randn(4, 8, 12, 12, dtype=torch.complex64), torch.randn(8, 8 // groups, 3, 3, dtype=torch.complex64)
            cases.append((lambda x=x, w=w, g=groups: F.conv2d(x, w, None, 1, 1, 1, g), ref.conv(x, w, None, 1, 1, 1, groups)))
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


@pytest.fixture
def deterministic():
    """torch.use_deterministic_algorithms(True): torch raises for its own non-deterministic ops;
    cplxfast's reductions use no atomics (partial sums added in a fixed order), so they run and
    repeat bit for bit, on CUDA too."""
    saved = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(saved)


def assert_repeats_bitwise(run):
    """run() -> (output, gradients): two more runs give the same tensors, bit for bit."""
    first_out, first_grads = run()
    for _ in range(2):
        out, grads = run()
        assert torch.equal(out, first_out)
        assert all(torch.equal(a, b) for a, b in zip(grads, first_grads))


def test_results_are_bitwise_reproducible(device, deterministic):
    torch.manual_seed(0)
    x = torch.randn(2048, 256, dtype=torch.complex64, device=device, requires_grad=True)
    layers = torch.nn.Sequential(CplxLinear(256, 256, algorithm="3m"), CplxBatchNorm2d(256).train(),
                                 CplxAdaptiveModReLU(256)).to(device)

    def run():
        out = layers[2](layers[1](layers[0](x).view(2048, 256, 1, 1)).view(2048, 256))
        grads = torch.autograd.grad(out.abs().sum(), [x, *layers.parameters()])
        return out.detach(), grads

    assert_repeats_bitwise(run)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_batch_norm_and_modrelu_per_channel_results_are_bitwise_reproducible(device, deterministic, memory_format):
    torch.manual_seed(0)
    x = torch.randn(16, 32, 24, 24, dtype=torch.complex64, device=device).to(memory_format=memory_format)
    x.requires_grad_()
    layers = torch.nn.Sequential(CplxBatchNorm2d(32).train(), CplxAdaptiveModReLU(32, 1, 1)).to(device)

    def run():
        out = layers(x)
        return out.detach(), torch.autograd.grad(out.abs().sum(), [x, *layers.parameters()])

    assert_repeats_bitwise(run)


@pytest.mark.parametrize("groups", [1, 16])
def test_conv_results_are_bitwise_reproducible(device, deterministic, groups):
    torch.manual_seed(0)
    x = torch.randn(8, 16, 20, 20, dtype=torch.complex64, device=device, requires_grad=True)
    layer = CplxConv2d(16, 16, 3, padding=1, groups=groups).to(device)

    def run():
        out = layer(x)
        return out.detach(), torch.autograd.grad(out.abs().sum(), [x, *layer.parameters()])

    assert_repeats_bitwise(run)
