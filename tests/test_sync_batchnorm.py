"""CplxSyncBatchNorm over torch.distributed (2 processes, gloo, CPU): outputs, gradients and running
statistics equal those of one process seeing the whole batch."""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cplxfast.nn import CplxBatchNorm1d, CplxBatchNorm2d, CplxSyncBatchNorm, convert_sync_batchnorm

WORLD = 2


def _problem(kind):
    torch.manual_seed(0)
    if kind == "2d":
        model, shape = torch.nn.Sequential(CplxBatchNorm2d(3)), (8, 3, 4, 5)
    else:
        model, shape = torch.nn.Sequential(CplxBatchNorm1d(3, momentum=None)), (6, 3, 7)
    with torch.no_grad():
        model[0].weight.add_(0.3 * torch.randn_like(model[0].weight))
        model[0].bias.normal_()
    steps = []
    for step in range(3):
        x = torch.randn(*shape, dtype=torch.complex64) * (1 + step) + (2 - 1j) * step
        x = torch.complex(x.real, 0.5 * x.real + x.imag)
        steps.append((x, torch.randn(*shape, dtype=torch.complex64)))
    return model, steps


def _run_steps(model, steps, part=slice(None)):
    outs, input_grads, param_grads = [], [], []
    for x, g in steps:
        xx = x[part].clone().requires_grad_()
        out = model(xx)
        (out * g[part].conj()).real.sum().backward()
        outs.append(out.detach())
        input_grads.append(xx.grad)
        param_grads.append([p.grad.clone() for p in model.parameters()])
        model.zero_grad()
    return outs, input_grads, param_grads, [b.clone() for b in model.buffers()]


def _worker(rank, init_file, kind):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        model, steps = _problem(kind)
        ref_model, _ = _problem(kind)
        ref = _run_steps(ref_model, steps)  # one process, whole batch
        sync = convert_sync_batchnorm(model)
        assert isinstance(sync[0], CplxSyncBatchNorm) and sync[0].weight is model[0].weight
        half = steps[0][0].shape[0] // WORLD
        part = slice(rank * half, (rank + 1) * half)
        outs, input_grads, param_grads, buffers = _run_steps(sync, steps, part)
        for step in range(len(steps)):
            torch.testing.assert_close(outs[step], ref[0][step][part], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(input_grads[step], ref[1][step][part], rtol=1e-4, atol=1e-5)
            for local, full in zip(param_grads[step], ref[2][step]):
                total = local.clone()
                dist.all_reduce(total)  # DDP sums (then averages) the processes' contributions
                torch.testing.assert_close(total, full, rtol=1e-4, atol=1e-4)
        for got, want in zip(buffers, ref[3]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["2d", "1d-momentum-None"])
def test_sync_batchnorm_matches_one_process(kind):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(os.path.join(tmp, "init"), kind), nprocs=WORLD, join=True)


def test_sync_batchnorm_without_process_group_is_batchnorm():
    torch.manual_seed(0)
    plain, sync = CplxBatchNorm2d(3), CplxSyncBatchNorm(3)
    sync.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 2, 2, dtype=torch.complex64)
    torch.testing.assert_close(sync(x), plain(x))
    torch.testing.assert_close(sync.running_var, plain.running_var)


def test_stats_and_grad_sums_ops():
    from cplxfast import _reference as ref
    from cplxfast import ops

    torch.manual_seed(0)
    z = torch.randn(5, 3, 4, dtype=torch.complex128) + 2
    mean, cov = ops.batch_norm_stats(z)
    _, want_mean, want_cov = ref.batch_norm(z, eps=0.0)
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(cov, want_cov)
    g = torch.randn_like(z)
    sums = ops.batch_norm_grad_sums(g, z, mean)
    x = z - torch.complex(mean[0], mean[1]).view(1, 3, 1)
    want = torch.stack([g.real.sum((0, 2)), g.imag.sum((0, 2)), (g.real * x.real).sum((0, 2)), (g.real * x.imag).sum((0, 2)),
                        (g.imag * x.real).sum((0, 2)), (g.imag * x.imag).sum((0, 2))])
    torch.testing.assert_close(sums, want)
    torch.library.opcheck(torch.ops.cplxfast.batch_norm_stats.default, (z,))
    torch.library.opcheck(torch.ops.cplxfast.batch_norm_grad_sums.default, (g, z, mean))
    # given sums equal to the local ones reproduce the ordinary backward
    _, m, c = ops.batch_norm(z, None, None, None, None, True, 1e-5)
    a = ops.batch_norm_backward(g, z, None, m, c, True, (True, True, True))
    b = ops.batch_norm_backward(g, z, None, m, c, True, (True, True, True), ops.batch_norm_grad_sums(g, z, m), 20)
    torch.testing.assert_close(a[0], b[0])
