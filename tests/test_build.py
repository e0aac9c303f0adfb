"""The build: every op has CPU, Autograd and fake kernels, and CUDA ones when CUDA was compiled."""
import pytest
import torch

import cplxfast

OPS = ["batch_norm", "batch_norm_backward", "batch_norm_grad_sums", "batch_norm_stats", "conv", "conv_backward", "conv_complex", "conv_complex_backward", "conv_gaussian", "conv_gaussian_backward", "gaussian_reparam", "gaussian_reparam_backward", "linear", "linear_backward", "linear_complex", "linear_complex_backward", "linear_gaussian", "linear_gaussian_backward", "modrelu", "modrelu_backward"]


def _has_kernel(op, key):
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"cplxfast::{op}", key)


def _has_backend_kernel(op, key):
    """A kernel of this backend, or one for every backend (the composed backward ops of the fused
    Gaussian layers: CompositeExplicitAutograd, built of other ops)."""
    return _has_kernel(op, key) or _has_kernel(op, "CompositeExplicitAutograd")


@pytest.mark.parametrize("op", OPS)
def test_cpu_autograd_and_fake_kernels(op):
    assert _has_backend_kernel(op, "CPU")
    assert _has_kernel(op, "Autograd") or _has_kernel(op, "AutogradCPU")
    assert torch._library.simple_registry.singleton.find(f"cplxfast::{op}").fake_impl.kernel is not None


@pytest.mark.parametrize("op", OPS)
def test_cuda_kernel_registered_when_compiled(op):
    if not cplxfast.build_info.with_cuda:
        pytest.skip("this build is CPU-only")
    assert _has_backend_kernel(op, "CUDA")


def test_build_info_matches_installed_torch():
    assert cplxfast.build_info.torch_version.split("+")[0] == torch.__version__.split("+")[0]


def test_every_schema_is_listed_here():
    """OPS above must name every op of the library, so none escapes these checks."""
    declared = {name.split("::")[1] for name in torch._C._dispatch_get_all_op_names() if name.startswith("cplxfast::")}
    assert declared == set(OPS)


def test_mismatched_torch_raises_rebuild_error(monkeypatch):
    from cplxfast import _build_info, _loader

    monkeypatch.setattr(_build_info, "torch_version", "1.0.0")
    with pytest.raises(ImportError, match="cplxfast was built against torch 1.0.0 .* Rebuild cplxfast"):
        _loader.load()
