"""The layers of cplxfast.nn written in torch's native complex ops: what a user without cplxfast
(or cplxmodule) would write. Each twin subclasses the cplxfast layer, so it has the same
parameters, buffers and state_dict, and only its forward differs: torch's complex conv1d/linear
(torch's own composite 3M for conv, cgemm for linear), and batch norm and modReLU as chains of
torch ops in the input's precision. They give bench_e2e a baseline on machines without cplxmodule
(the GPU machine) and bench_modrelu its "torch complex ops" row.

    import torch_twins; model = Classifier(torch_twins)   # the namespace of layers
"""
import torch

import cplxfast.nn as _nn

F = torch.nn.functional


def modrelu(z, tau):
    """cplxmodule's modReLU in torch ops: z * relu(1 - tau / max(|z|, 1e-5))."""
    return z * torch.relu(1.0 - tau / torch.clamp(z.abs(), min=1e-5))


def whitening_batch_norm(z, layer):
    """cplxmodule's 2x2-whitening batch norm (SEMANTICS.md) in torch ops, in z's precision;
    updates the layer's running statistics in training, as the layer does."""
    axes = [0] + list(range(2, z.dim()))
    shape = [1, -1] + [1] * (z.dim() - 2)
    re, im = z.real, z.imag
    if layer.training or layer.running_mean is None:
        mr, mi = re.mean(axes), im.mean(axes)
        xr, xi = re - mr.view(shape), im - mi.view(shape)
        a = (xr * xr).mean(axes) + layer.eps
        b = (xr * xi).mean(axes)
        d = (xi * xi).mean(axes) + layer.eps
        if layer.training and layer.running_mean is not None:
            with torch.no_grad():
                layer.num_batches_tracked += 1
                m = layer.momentum if layer.momentum is not None else 1.0 / float(layer.num_batches_tracked)
                layer.running_mean.lerp_(torch.stack([mr, mi]), m)
                layer.running_var.lerp_(torch.stack([torch.stack([a, b]), torch.stack([b, d])]), m)
        c = b
    else:
        mr, mi = layer.running_mean
        xr, xi = re - mr.view(shape), im - mi.view(shape)
        (a, b), (c, d) = layer.running_var
    s = torch.sqrt(a * d - b * c)
    t = torch.sqrt(a + d + 2 * s)
    k = 1 / (s * t)
    p00, p01, p10, p11 = [v.view(shape) for v in (k * (d + s), -k * b, -k * c, k * (a + s))]
    wr, wi = p00 * xr + p01 * xi, p10 * xr + p11 * xi
    if layer.weight is not None:
        W, B = layer.weight, layer.bias
        wr, wi = (W[0, 0].view(shape) * wr + W[0, 1].view(shape) * wi + B[0].view(shape),
                  W[1, 0].view(shape) * wr + W[1, 1].view(shape) * wi + B[1].view(shape))
    return torch.complex(wr, wi)


def _bias(layer):
    return None if layer.bias is None else layer.bias.complex()


class CplxConv1d(_nn.CplxConv1d):
    def forward(self, z):
        assert self.padding_mode == "zeros"
        return F.conv1d(z, self.weight.complex(), _bias(self), self.stride, self.padding, self.dilation, self.groups)


class CplxLinear(_nn.CplxLinear):
    def forward(self, z):
        return F.linear(z, self.weight.complex(), _bias(self))


class CplxBatchNorm1d(_nn.CplxBatchNorm1d):
    def forward(self, z):
        return whitening_batch_norm(z, self)


class CplxAdaptiveModReLU(_nn.CplxAdaptiveModReLU):
    def forward(self, z):
        return modrelu(z, self.threshold)
