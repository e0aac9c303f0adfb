"""Layer namespaces for bench_e2e's Classifier, so the same architecture code builds the model the
way a torchcvnn or complextorch user writes it, and a real-valued twin:

- ``torchcvnn_layers()``: torch's native complex Conv1d/Linear (dtype=complex64) with torchcvnn's
  BatchNorm1d and modReLU (a scalar bias; torchcvnn has no per-channel modReLU);
- ``complextorch_layers()``: complextorch's Conv1d, BatchNorm1d, AdaptiveModReLU (per channel) and
  Linear;
- ``REAL``: torch's real Conv1d, BatchNorm1d, ReLU and Linear with the same channel counts (the
  complex model's overhead factor is its step time over this model's).

Each namespace offers the names the Classifier asks for (CplxConv1d, CplxBatchNorm1d,
CplxAdaptiveModReLU, CplxLinear).
"""
import types

import torch

CFLOAT = torch.complex64


def torchcvnn_layers():
    import torchcvnn.nn as tnn
    return types.SimpleNamespace(
        CplxConv1d=lambda *a, **k: torch.nn.Conv1d(*a, **k, dtype=CFLOAT),
        CplxBatchNorm1d=tnn.BatchNorm1d,
        CplxAdaptiveModReLU=lambda *dim: tnn.modReLU(),
        CplxLinear=lambda *a, **k: torch.nn.Linear(*a, **k, dtype=CFLOAT),
    )


def complextorch_layers():
    import complextorch.nn as ctn
    return types.SimpleNamespace(
        CplxConv1d=ctn.Conv1d,
        CplxBatchNorm1d=ctn.BatchNorm1d,
        CplxAdaptiveModReLU=lambda channels, *_: ctn.AdaptiveModReLU(channels),
        CplxLinear=ctn.Linear,
    )


REAL = types.SimpleNamespace(
    CplxConv1d=torch.nn.Conv1d,
    CplxBatchNorm1d=torch.nn.BatchNorm1d,
    CplxAdaptiveModReLU=lambda *dim: torch.nn.ReLU(),
    CplxLinear=torch.nn.Linear,
)
