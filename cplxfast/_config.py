"""The global choice of complex GEMM algorithm.

"auto" (default): the Gauss 3M trick (3 real GEMMs) where it measured faster on the backend,
    the backend's complex GEMM (cgemm/zgemm, 4 real multiplications) for small problems.
"3m": always 3M. Normwise stable, but when |Im| << |Re| the imaginary part loses
    componentwise accuracy: on near-real fp32 data (Im/Re ~ 1e-4) its relative error is ~1e-3
    instead of ~1e-7 (Higham 1992).
"4m": always the backend's complex GEMM, componentwise accurate. Choose it for
    accuracy-critical layers whose data is nearly real (or nearly imaginary).
"""
import contextlib

ALGORITHMS = ("auto", "3m", "4m")
_default = "auto"


def _check(algorithm):
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return algorithm


def get_default_algorithm():
    """The algorithm used by ops and layers that are not given one."""
    return _default


def set_default_algorithm(algorithm):
    """Set the global default algorithm ("auto", "3m" or "4m")."""
    global _default
    _default = _check(algorithm)


@contextlib.contextmanager
def default_algorithm(algorithm):
    """Context manager: use ``algorithm`` as the global default inside the block."""
    global _default
    previous, _default = _default, _check(algorithm)
    try:
        yield
    finally:
        _default = previous


def resolve(algorithm):
    """A per-call or per-layer choice if given, else the global default."""
    return _default if algorithm is None else _check(algorithm)
