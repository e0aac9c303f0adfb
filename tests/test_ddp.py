"""DistributedDataParallel (2 processes, gloo, CPU) trains a cplxfast model exactly like one process
on the whole batch: the parameters after a few SGD steps agree."""
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import cplxfast.nn as cnn

WORLD = 2


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        cnn.CplxConv1d(2, 4, 3, padding=1), cnn.CplxAdaptiveModReLU(4, 1), cnn.CplxConv1d(4, 4, 3, groups=4),
        cnn.CplxLinear(6, 3),
    )


def _batches():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 2, 8, dtype=torch.complex64, generator=g) for _ in range(3)]


def _train(model, batches, part=slice(None)):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x in batches:
        opt.zero_grad()
        model(x[part]).abs().mean().backward()  # a mean: the per-process gradients average to the whole one
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _worker(rank, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        want = _train(_model(), _batches())
        ddp = torch.nn.parallel.DistributedDataParallel(_model())
        half = 8 // WORLD
        got = _train(ddp, _batches(), slice(rank * half, (rank + 1) * half))
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert all(p.grad is not None for p in ddp.parameters())
        # Both ranks done before DDP's reducer and the process group go away (tearing them down
        # while the other rank still talks aborted a run with "terminate called").
        dist.barrier()
        del ddp
    finally:
        dist.destroy_process_group()


def test_ddp_matches_single_process_training():
    # A path in a fresh folder, not a temporary file: torch's FileStore may delete the file itself
    # when the process group is destroyed (torch 2.11 does).
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_worker, args=(os.path.join(folder, "init"),), nprocs=WORLD, join=True)
