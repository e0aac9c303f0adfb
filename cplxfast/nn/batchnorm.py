"""Complex batch norm with 2x2 whitening: drop-ins for cplxmodule's CplxBatchNorm1d/2d/3d."""
import torch
import torch.distributed as dist

from .. import ops
from ._complex import to_complex


def register_norm_tensors(module, weight, bias, running_mean, running_var):
    """Parameters weight, bias and buffers running_mean, running_var, num_batches_tracked, registered
    as torch's norm layers do: None where not given (affine=False, track_running_stats=False)."""
    for name, t in (("weight", weight), ("bias", bias)):
        module.register_parameter(name, None if t is None else torch.nn.Parameter(t))
    tracked = None if running_mean is None else torch.tensor(0, dtype=torch.long, device=running_mean.device)
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("num_batches_tracked", tracked)):
        module.register_buffer(name, t)


class _CplxBatchNorm(torch.nn.Module):
    """cplxmodule's complex batch norm (Trabelsi et al. 2018) on a fused kernel.

    Parameters and buffers as cplxmodule names and shapes them: weight [2, 2, F] (identity per
    channel), bias [2, F] (zeros), running_mean [2, F], running_var [2, 2, F] (identity),
    num_batches_tracked. The running statistics are updated here from the batch statistics the
    op returns (momentum, or the cumulative average for momentum=None).
    """

    _ranks = ()

    def __init__(self, num_features, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        register_norm_tensors(
            self, *((torch.empty(2, 2, num_features), torch.empty(2, num_features)) if affine else (None, None)),
            *((torch.empty(2, num_features), torch.empty(2, 2, num_features)) if track_running_stats else (None, None)))
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.num_batches_tracked.zero_()
            self.running_mean.zero_()
            self.running_var.copy_(torch.eye(2, 2).unsqueeze(-1))

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            with torch.no_grad():
                self.weight.copy_(torch.eye(2, 2).unsqueeze(-1))
                self.bias.zero_()

    def _check_input(self, z):
        name = type(self).__name__
        if z.dim() not in self._ranks:
            ranks = " or ".join(f"{r}D" for r in self._ranks)
            raise ValueError(f"{name}: expected {ranks} input (got {z.dim()}D input)")
        if z.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected {self.num_features} channels (dim 1), got input of shape {tuple(z.shape)}")

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        self._check_input(z)
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats and z.numel() // z.shape[1] <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(z.shape)}")
        if use_batch_stats:
            out, mean, cov = ops.batch_norm(z, self.weight, self.bias, None, None, True, self.eps)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, cov)
        else:
            out, _, _ = ops.batch_norm(z, self.weight, self.bias, self.running_mean, self.running_var, False, self.eps)
        return rewrap(out)

    @torch.no_grad()
    def _update_running_stats(self, mean, cov):
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(cov.to(self.running_var.dtype), factor)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class CplxBatchNorm1d(_CplxBatchNorm):
    """Complex batch norm over [B, F] or [B, F, L] input."""

    _ranks = (2, 3)


class CplxBatchNorm2d(_CplxBatchNorm):
    """Complex batch norm over [B, F, H, W] input."""

    _ranks = (4,)


class CplxBatchNorm3d(_CplxBatchNorm):
    """Complex batch norm over [B, F, D, H, W] input."""

    _ranks = (5,)


class CplxSyncBatchNorm(_CplxBatchNorm):
    """Complex batch norm whose batch statistics span the processes of a torch.distributed group
    (forward and backward), as torch.nn.SyncBatchNorm does for real batch norm: each process
    normalises its part of the batch with the statistics of the whole batch. Takes any [B, C, *]
    input. Outside an initialised process group (or with one process) it is CplxBatchNorm.

    Parameter gradients are each process's own contribution (DistributedDataParallel averages
    them); the input gradient accounts for every process's share of the statistics.
    """

    _ranks = (2, 3, 4, 5)

    def __init__(self, num_features, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, process_group=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def forward(self, input):
        use_batch_stats = self.training or not self.track_running_stats
        group = self.process_group or (dist.group.WORLD if dist.is_available() and dist.is_initialized() else None)
        if not use_batch_stats or group is None or dist.get_world_size(group) == 1:
            return super().forward(input)
        z, rewrap = to_complex(input, type(self).__name__)
        self._check_input(z)
        out, mean, cov = _SyncBatchNorm.apply(z, self.weight, self.bias, self.eps, group)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean, cov)
        return rewrap(out)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Replace every CplxBatchNorm1d/2d/3d in module (recursively) by a CplxSyncBatchNorm with
        the same parameters, buffers and train/eval mode; returns the (new) module."""
        converted = module
        if isinstance(module, _CplxBatchNorm) and not isinstance(module, CplxSyncBatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                            process_group)
            # Share the Parameters and buffers themselves (device, values, optimizer references).
            for name in ("weight", "bias"):
                setattr(converted, name, getattr(module, name))
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(converted, name, getattr(module, name))
            converted.train(module.training)
        for name, child in module.named_children():
            converted.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return converted


def convert_sync_batchnorm(module, process_group=None):
    """CplxSyncBatchNorm.convert_sync_batchnorm, as a function."""
    return CplxSyncBatchNorm.convert_sync_batchnorm(module, process_group)


class _SyncBatchNorm(torch.autograd.Function):
    """Forward: local statistics -> all_gather -> combined in float64 -> normalise with them.
    Backward: local gradient sums -> all_reduce -> input gradient through the global statistics."""

    @staticmethod
    def forward(ctx, z, weight, bias, eps, group):
        C = z.shape[1]
        n_local = z.numel() // C
        mean_l, cov_l = ops.batch_norm_stats(z)
        packed = torch.cat([torch.full((1, C), float(n_local), dtype=torch.float64, device=z.device), mean_l,
                            cov_l.reshape(4, C)])
        gathered = [torch.empty_like(packed) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, packed, group=group)
        parts = torch.stack(gathered)  # [P, 7, C]
        n = parts[:, 0]  # [P, C]
        count = n.sum(0)  # [C]
        if bool((count <= 1).any()):
            raise ValueError(f"Expected more than 1 value per channel when training, got {int(count.min())} over all processes")
        mean = (n.unsqueeze(1) * parts[:, 1:3]).sum(0) / count  # [2, C]
        # Chan et al.: pooled covariance = sum n_p (cov_p + d_p d_p^T) / N with d_p = mean_p - mean.
        d = parts[:, 1:3] - mean  # [P, 2, C]
        outer = d.unsqueeze(2) * d.unsqueeze(1)  # [P, 2, 2, C]
        cov = (n.view(-1, 1, 1, C) * (parts[:, 3:7].reshape(-1, 2, 2, C) + outer)).sum(0) / count
        cov = cov + eps * torch.eye(2, dtype=torch.float64, device=z.device).unsqueeze(-1)
        out = ops.batch_norm(z, weight, bias, mean, cov, False, eps)[0]
        ctx.save_for_backward(z, weight, mean, cov)
        ctx.group, ctx.count = group, int(count[0])
        real = torch.float64 if z.dtype == torch.complex128 else torch.float32
        mean_out, cov_out = mean.to(real), cov.to(real)
        ctx.mark_non_differentiable(mean_out, cov_out)
        return out, mean_out, cov_out

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_cov):
        z, weight, mean, cov = ctx.saved_tensors
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        local = ops.batch_norm_grad_sums(grad, z, mean)
        grad_weight = grad_bias = None
        if need_weight or need_bias:  # this process's contribution, from its local sums
            _, grad_weight, grad_bias = ops.batch_norm_backward(
                grad, z, weight, mean, cov, True, (False, need_weight, need_bias), local, z.numel() // z.shape[1])
        grad_input = None
        if need_input:
            total = local.clone()
            dist.all_reduce(total, group=ctx.group)
            grad_input, _, _ = ops.batch_norm_backward(grad, z, weight, mean, cov, True, (True, False, False), total,
                                                       ctx.count)
        return grad_input, grad_weight, grad_bias, None, None
