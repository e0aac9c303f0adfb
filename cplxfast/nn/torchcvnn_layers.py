"""torchcvnn 0.10.0's layers with torchcvnn's own maths, names, parameters and state_dict, on the
fused ops (what ``convert()`` makes of a torchcvnn model; SEMANTICS.md, "torchcvnn").

- ``BatchNorm1d`` / ``BatchNorm2d``: 2x2 whitening with the UNBIASED covariance (N - 1), eps added
  to it (and again to running_var at eval), weight [C, 2, 2] and running_var [C, 2, 2] initialised
  to diag(1/sqrt(2)), complex bias and running_mean [C]. The fused op computes the biased
  covariance; the unbiased whitening is the same map with eps' = eps (N - 1)/N and the affine
  weight scaled by sqrt((N - 1)/N) (exact: (k C + eps I)^(-1/2) = k^(-1/2) (C + eps/k I)^(-1/2)),
  so one kernel serves both libraries.
- ``LayerNorm``: despite its name, the same whitening over the SAMPLES of z viewed [-1, D]
  (D = prod(normalized_shape)), per feature, without running statistics: this batch norm on that
  view.
- ``modReLU``: relu(|z| + b) exp(i angle z), one scalar ``b`` (init 0): the modrelu op with
  threshold -b and eps = 0 (its polar form, relu(b) at z = 0 as torchcvnn computes it).
- ``MaxPool2d``: torchcvnn's gathers every plane's maxima from the first plane (its indices are
  per plane but index the flattened tensor), wrong whenever N * C > 1; this one keeps, in each
  window, the complex value of largest modulus in that plane (what torchcvnn documents).
"""
import math

import torch

from .. import ops
from ._complex import to_complex
from .batchnorm import register_norm_tensors
from .extra import CplxMaxPool2d


class _BatchNormNd(torch.nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None,
                 cdtype=torch.complex64):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        c = num_features
        register_norm_tensors(
            self, *((torch.empty(c, 2, 2, device=device), torch.empty(c, dtype=cdtype, device=device)) if affine
                    else (None, None)),
            *((torch.zeros(c, dtype=cdtype, device=device), torch.empty(c, 2, 2, device=device)) if track_running_stats
              else (None, None)))
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.copy_(_diagonal(self.num_features, 1 / math.sqrt(2), self.running_var))
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            with torch.no_grad():
                self.weight.copy_(_diagonal(self.num_features, 1 / math.sqrt(2), self.weight))
                self.bias.zero_()

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        name = type(self).__name__
        if z.dim() < 2 or z.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected input [B, {self.num_features}, *], got shape {tuple(z.shape)}")
        if self.momentum is None:
            raise ValueError(f"{name}: momentum=None is not supported (torchcvnn's BatchNorm fails on it too)")
        count = z.numel() // self.num_features
        if self.training or not self.track_running_stats:
            if count <= 1:
                raise ValueError(f"{name}: expected more than 1 value per channel when training, got input size "
                                 f"{tuple(z.shape)}")
            shrink = (count - 1) / count  # biased/unbiased covariance ratio
            weight = self._weight_2x2(z) * math.sqrt(shrink)
            out, mean, cov = ops.batch_norm(z, weight, self._bias_2(z), None, None, True, self.eps * shrink)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, cov, shrink)
            return rewrap(out)
        var = self.running_var.permute(1, 2, 0) + self.eps * torch.eye(2, dtype=self.running_var.dtype,
                                                                       device=z.device).unsqueeze(-1)
        mean = torch.view_as_real(self.running_mean).t()
        out, _, _ = ops.batch_norm(z, self._weight_2x2(z), self._bias_2(z), mean.to(z.real.dtype).contiguous(),
                                   var.to(z.real.dtype).contiguous(), False, self.eps)
        return rewrap(out)

    def _weight_2x2(self, z):
        if self.weight is None:
            return torch.eye(2, dtype=z.real.dtype, device=z.device).unsqueeze(-1).expand(2, 2, self.num_features)
        return self.weight.permute(1, 2, 0).to(z.real.dtype).contiguous()

    def _bias_2(self, z):
        return None if self.bias is None else torch.view_as_real(self.bias).t().to(z.real.dtype).contiguous()

    @torch.no_grad()
    def _update_running_stats(self, mean, cov, shrink):
        # torchcvnn: running = (1 - m) running + m batch, with the unbiased covariance, no eps.
        eye = torch.eye(2, dtype=cov.dtype, device=cov.device).unsqueeze(-1)
        unbiased = (cov - self.eps * shrink * eye) / shrink
        m = self.momentum
        batch_mean = torch.complex(mean[0], mean[1]).to(self.running_mean.dtype)
        self.running_mean.mul_(1 - m).add_(batch_mean, alpha=m)
        self.running_var.mul_(1 - m).add_(unbiased.permute(2, 0, 1).to(self.running_var.dtype), alpha=m)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


def _diagonal(n, value, like):
    return (value * torch.eye(2, dtype=like.dtype, device=like.device)).expand(n, 2, 2)


class BatchNorm1d(_BatchNormNd):
    """torchcvnn.nn.BatchNorm1d on the fused batch-norm op (see the module docstring)."""


class BatchNorm2d(_BatchNormNd):
    """torchcvnn.nn.BatchNorm2d on the fused batch-norm op (see the module docstring)."""


class LayerNorm(_BatchNormNd):
    """torchcvnn.nn.LayerNorm: per-feature whitening over all samples of z viewed [-1, D] (see the
    module docstring); weight [D, 2, 2] (diag(1/sqrt(2))) and complex bias [D], no running statistics."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None,
                 dtype=torch.complex64):
        if not (elementwise_affine and bias):
            raise ValueError("LayerNorm: torchcvnn's LayerNorm needs elementwise_affine=True and bias=True (it fails "
                             "without them)")
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        super().__init__(math.prod(shape), eps, 0.1, True, False, device, dtype)
        self.normalized_shape, self.elementwise_affine = shape, True

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        n = len(self.normalized_shape)
        if tuple(z.shape[z.dim() - n:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input [*, {', '.join(map(str, self.normalized_shape))}], got "
                             f"shape {tuple(z.shape)}")
        return rewrap(super().forward(z.reshape(-1, self.num_features)).view(z.shape))

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class modReLU(torch.nn.Module):  # noqa: N801 (torchcvnn's name)
    """torchcvnn.nn.modReLU: relu(|z| + b) exp(i angle z), learnable scalar ``b`` (init 0)."""

    def __init__(self):
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        return rewrap(ops.modrelu(z, (-self.b).to(z.real.dtype).reshape(1), 0.0))


class MaxPool2d(CplxMaxPool2d):
    """torchcvnn.nn.MaxPool2d's signature (ceil_mode before return_indices), computed per plane:
    each window keeps its complex value of largest modulus (torchcvnn's own reads every plane's
    values from the first plane: see the module docstring)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)
