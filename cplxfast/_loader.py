"""Load the compiled op library, checking it matches the installed torch."""
import torch


class BuildMismatchError(ImportError):
    pass


def _rebuild_hint():
    return (
        "Rebuild cplxfast against the installed torch: `make build` in a source checkout, or "
        "`pip install --no-build-isolation --force-reinstall --no-deps .`."
    )


def load():
    try:
        from . import _build_info
    except ImportError:
        raise BuildMismatchError("cplxfast's compiled library has not been built. " + _rebuild_hint()) from None
    built, installed = _build_info.torch_version, torch.__version__
    if built.split("+")[0] != installed.split("+")[0] or _build_info.torch_cuda != torch.version.cuda:
        raise BuildMismatchError(
            f"cplxfast was built against torch {built} (CUDA {_build_info.torch_cuda}) but torch "
            f"{installed} (CUDA {torch.version.cuda}) is installed; the extension is tied to the "
            f"exact torch it was built with. " + _rebuild_hint()
        )
    try:
        from . import _C  # noqa: F401  (registers the torch.ops.cplxfast ops)
    except ImportError as e:
        raise BuildMismatchError(f"cplxfast's compiled library failed to load ({e}). " + _rebuild_hint()) from e
    return _build_info
