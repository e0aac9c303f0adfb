"""Complex batch norm with 2x2 whitening: drop-ins for cplxmodule's CplxBatchNorm1d/2d/3d."""
import torch

from .. import ops
from ._complex import to_complex


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
        if affine:
            self.weight = torch.nn.Parameter(torch.empty(2, 2, num_features))
            self.bias = torch.nn.Parameter(torch.empty(2, num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.empty(2, num_features))
            self.register_buffer("running_var", torch.empty(2, 2, num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
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
