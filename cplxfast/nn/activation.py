"""modReLU layers: drop-ins for cplxmodule's CplxModReLU and CplxAdaptiveModReLU, and ModReLU in
Arjovsky et al.'s parametrisation."""
import torch

from .. import ops
from ._complex import to_complex


class CplxModReLU(torch.nn.Module):
    """z * relu(1 - tau / max(|z|, 1e-5)) with one threshold tau, as cplxmodule defines it.

    A Python float threshold is a fixed attribute (not in the state_dict); any other value
    (None, an int, ...) makes a learnable ``threshold`` Parameter of shape [1] initialised as
    rand(1) * 0.25 (cplxmodule's behaviour, kept for drop-in compatibility).
    """

    def __init__(self, threshold=0.5):
        super().__init__()
        if not isinstance(threshold, float):
            threshold = torch.nn.Parameter(torch.rand(1) * 0.25)
        self.threshold = threshold

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        tau = self.threshold
        if not isinstance(tau, torch.Tensor):
            tau = torch.full((1,), tau, dtype=_real_dtype(z), device=z.device)
        return rewrap(ops.modrelu(z, tau))

    def extra_repr(self):
        return f"threshold={self.threshold}" if isinstance(self.threshold, float) else "threshold=learnable"


class CplxAdaptiveModReLU(torch.nn.Module):
    """z * relu(1 - tau / max(|z|, 1e-5)) with a learnable threshold of shape ``dim`` (default
    (1,)), broadcast against the TRAILING dims of the input: CplxAdaptiveModReLU(C, 1, 1) gives
    per-channel thresholds on [B, C, H, W]. Init randn(*dim) * 0.02, as cplxmodule.
    """

    def __init__(self, *dim):
        super().__init__()
        self.dim = dim if dim else (1,)
        self.threshold = torch.nn.Parameter(torch.randn(*self.dim) * 0.02)

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        return rewrap(ops.modrelu(z, self.threshold))

    def __repr__(self):
        body = repr(self.dim)[1:-1] if len(self.dim) > 1 else repr(self.dim[0])
        return f"{type(self).__name__}({body})"


class ModReLU(torch.nn.Module):
    """Arjovsky et al. (2016): relu(|z| + b) z / |z| with a learnable bias b per channel.

    ``num_features`` channels on dimension ``dim`` of the input (default 1: [B, C, ...]); b is
    initialised to 0. The same map as cplxmodule's modReLU with threshold = -b.
    """

    def __init__(self, num_features, dim=1):
        super().__init__()
        self.num_features = num_features
        self.dim = dim
        self.bias = torch.nn.Parameter(torch.zeros(num_features))

    def forward(self, input):
        z, rewrap = to_complex(input, type(self).__name__)
        dim = self.dim if self.dim >= 0 else self.dim + z.dim()
        if not 0 <= dim < z.dim() or z.shape[dim] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected {self.num_features} channels on dim {self.dim} of the "
                f"input, got input of shape {tuple(z.shape)}"
            )
        tau = (-self.bias).view(self.num_features, *([1] * (z.dim() - dim - 1)))
        return rewrap(ops.modrelu(z, tau))

    def extra_repr(self):
        return f"num_features={self.num_features}, dim={self.dim}"


def _real_dtype(z):
    return torch.float64 if z.dtype == torch.complex128 else torch.float32
