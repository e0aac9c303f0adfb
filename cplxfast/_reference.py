"""Pure-PyTorch float64 references: the executable spec of every op (SEMANTICS.md).

Written with real arithmetic on (re, im) pairs, the way SEMANTICS.md states the maths, and
independent of the kernels. Gradients come from autograd through these functions.
"""
import torch


def _parts(z):
    z = z.to(torch.complex128).resolve_conj()
    return z.real, z.imag


def linear(x, weight, bias=None):
    """y = x W^T + b: Re = xr Wr^T - xi Wi^T (+ br), Im = xr Wi^T + xi Wr^T (+ bi)."""
    xr, xi = _parts(x)
    wr, wi = _parts(weight)
    re = xr @ wr.T - xi @ wi.T
    im = xr @ wi.T + xi @ wr.T
    if bias is not None:
        br, bi = _parts(bias)
        re, im = re + br, im + bi
    return torch.complex(re, im)


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, transposed=False, output_padding=0):
    """Complex (transposed) convolution with torch's real convolution in float64 and the 4M formula:
    Re = conv(xr, Wr) - conv(xi, Wi) (+ br), Im = conv(xr, Wi) + conv(xi, Wr) (+ bi). padding: ints or
    "same"/"valid" (torch's meaning, zero padding)."""
    F = torch.nn.functional
    n = x.dim() - 2
    if transposed:
        fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]

        def op(a, w):
            return fn(a, w, None, stride, padding, output_padding, groups, dilation)
    else:
        fn = (F.conv1d, F.conv2d, F.conv3d)[n - 1]

        def op(a, w):
            return fn(a, w, None, stride, padding, dilation, groups)
    xr, xi = _parts(x)
    wr, wi = _parts(weight)
    re = op(xr, wr) - op(xi, wi)
    im = op(xr, wi) + op(xi, wr)
    if bias is not None:
        br, bi = _parts(bias)
        shape = [1, -1] + [1] * n
        re, im = re + br.view(shape), im + bi.view(shape)
    return torch.complex(re, im)


def modrelu(z, threshold, eps=1e-5):
    """modReLU with modulus floor eps: z * relu(1 - tau / max(|z|, eps)), tau broadcast on trailing
    dims (cplxmodule: eps = 1e-5); eps = 0: relu(|z| - tau) z/|z|, relu(-tau) + 0i at z = 0.

    |z| is computed as sqrt(re^2 + im^2) with a zero-safe gradient (a plain sqrt gives 0/0 at
    z = 0). Near z = 0 the map is z * relu(1 - tau / eps), so at z = 0 the gradient is that
    factor, 0 for tau >= eps, as cplxmodule computes it; with eps = 0 the gradient to z at z = 0 is 0.
    """
    zr, zi = _parts(z)
    tau = threshold.to(torch.float64)
    sq = zr * zr + zi * zi
    safe = torch.where(sq > 0, sq, torch.ones_like(sq))
    modulus = torch.where(sq > 0, torch.sqrt(safe), torch.zeros_like(sq))
    if eps == 0:
        origin = sq == 0
        scale = torch.where(origin, 0.0, torch.relu(1.0 - tau / torch.where(origin, 1.0, modulus)))
        re = torch.where(origin, torch.relu(-tau) + 0 * zr, zr * scale)
        return torch.complex(re, zi * scale)
    scale = torch.relu(1.0 - tau / torch.clamp(modulus, min=eps))
    return torch.complex(zr * scale, zi * scale)


def gaussian_reparam(mu, s2, noise):
    """The local reparametrisation of the Gaussian layers, with the noise given: mu + noise * sqrt(max(s2,
    1e-8)) (cplxmodule's torch.clamp, whose gradient is 0 where s2 <= 1e-8)."""
    mr, mi = _parts(mu)
    er, ei = _parts(noise)
    sigma = torch.sqrt(torch.clamp(s2.to(torch.float64), 1e-8))
    return torch.complex(mr + er * sigma, mi + ei * sigma)


def linear_gaussian(x, weight, bias, log_sigma2, noise):
    """The Gaussian linear layer's training forward with the noise given: mu = linear(x, W, b),
    s2 = (xr^2 + xi^2) exp(log_sigma2)^T, mu + noise * sqrt(max(s2, 1e-8))."""
    xr, xi = _parts(x)
    s2 = (xr * xr + xi * xi) @ torch.exp(log_sigma2.to(torch.float64)).T
    return gaussian_reparam(linear(x, weight, bias), s2, noise)


def conv_gaussian(x, weight, bias, log_sigma2, noise, stride=1, padding=0, dilation=1, groups=1):
    """The same for a convolution: s2 = conv(xr^2 + xi^2, exp(log_sigma2)), no bias."""
    F = torch.nn.functional
    fn = (F.conv1d, F.conv2d, F.conv3d)[x.dim() - 3]
    xr, xi = _parts(x)
    s2 = fn(xr * xr + xi * xi, torch.exp(log_sigma2.to(torch.float64)), None, stride, padding, dilation, groups)
    return gaussian_reparam(conv(x, weight, bias, stride, padding, dilation, groups), s2, noise)


def batch_norm(z, weight=None, bias=None, running_mean=None, running_var=None, training=True, eps=1e-5):
    """cplxmodule's complex batch norm with 2x2 whitening, per channel (dim 1).

    Returns (out, mean [2, C], cov [2, 2, C]); in training the batch statistics (cov with eps on
    the diagonal), in eval the running statistics as given.
    """
    zr, zi = _parts(z)
    C = z.shape[1]
    axes = [d for d in range(z.dim()) if d != 1]
    shape = [1, C] + [1] * (z.dim() - 2)
    if training:
        mr, mi = zr.mean(axes), zi.mean(axes)
        xr, xi = zr - mr.view(shape), zi - mi.view(shape)
        a = (xr * xr).mean(axes) + eps
        d = (xi * xi).mean(axes) + eps
        b = c = (xr * xi).mean(axes)
    else:
        rm, rv = running_mean.to(torch.float64), running_var.to(torch.float64)
        mr, mi = rm[0], rm[1]
        xr, xi = zr - mr.view(shape), zi - mi.view(shape)
        a, b, c, d = rv[0, 0], rv[0, 1], rv[1, 0], rv[1, 1]
    s = torch.sqrt(a * d - b * c)
    t = torch.sqrt(a + d + 2 * s)
    k = 1 / (s * t)
    p00, p01, p10, p11 = k * (d + s), -k * b, -k * c, k * (a + s)
    wr = p00.view(shape) * xr + p01.view(shape) * xi
    wi = p10.view(shape) * xr + p11.view(shape) * xi
    if weight is not None:
        W = weight.to(torch.float64)
        wr, wi = (W[0, 0].view(shape) * wr + W[0, 1].view(shape) * wi,
                  W[1, 0].view(shape) * wr + W[1, 1].view(shape) * wi)
    if bias is not None:
        B = bias.to(torch.float64)
        wr, wi = wr + B[0].view(shape), wi + B[1].view(shape)
    mean = torch.stack([mr, mi])
    cov = torch.stack([torch.stack([a, b]), torch.stack([c, d])])
    return torch.complex(wr, wi), mean, cov
