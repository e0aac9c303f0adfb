"""Sparsity statistics of a model (cplxmodule.nn.utils.sparsity's API and numbers).

Layers that can be sparse say how many of their parameters' entries are dropped (``sparsity``,
keyed by the parameter's id, so that shared parameters count once); ``named_sparsity`` and
``sparsity`` collect it over a model. Both recognise cplxmodule's layers as well as cplxfast's,
so a model converted half way reports the same numbers.
"""
import sys

import torch


class SparsityStats:
    """Trait of layers that report sparsity: ``sparsity(**kwargs)`` returns [(id(parameter),
    number of dropped entries), ...]; ``__sparsity_ignore__`` names their service parameters and
    buffers (log_sigma2, mask), which are not counted."""

    __sparsity_ignore__ = ()

    def sparsity(self, **kwargs):
        raise NotImplementedError("Derived classes must implement a method to estimate sparsity.")


def library_kinds(ours, module_name, class_name):
    """(ours,) plus cplxmodule's class ``module_name.class_name`` when cplxmodule is imported (a model
    holding cplxmodule layers has imported it; nothing is imported here)."""
    module = sys.modules.get(module_name)
    theirs = getattr(module, class_name, None) if module is not None else None
    return (ours,) if theirs is None else (ours, theirs)


def named_sparsity(module, prefix="", **kwargs):
    """(name, (number of dropped entries, number of entries)) for every parameter and buffer of
    ``module`` except the layers' service ones; ``kwargs`` (threshold=, hard=) go to each layer's
    ``sparsity``."""
    kinds = library_kinds(SparsityStats, "cplxmodule.nn.utils.sparsity", "SparsityStats")
    n_dropped, service = {}, set()
    for name, mod in module.named_modules(prefix=prefix):
        if isinstance(mod, kinds):
            dot = name + ("." if name else "")
            service.update(dot + k for k in mod.__sparsity_ignore__)
            n_dropped.update(mod.sparsity(**kwargs))
    for name, tensor in (*module.named_parameters(prefix=prefix), *module.named_buffers(prefix=prefix)):
        if name not in service:
            yield name, (n_dropped.get(id(tensor), 0.0), tensor.numel())


def sparsity(module, **kwargs):
    """The fraction of dropped entries over all counted parameters and buffers of ``module``."""
    pairs = [s for _, s in named_sparsity(module, **kwargs)]
    n_zero, n_total = (sum(p[0] for p in pairs), sum(p[1] for p in pairs))
    return n_zero / max(n_total, 1)


def _n_dropped_complex(weight, kept):
    """Both parts of a complex weight drop the same entries."""
    n = float(weight.real.numel()) - float(kept)
    return [(id(weight.real), n), (id(weight.imag), n)]


def count_kept(mask):
    return float(mask.sum().item())


__all__ = ["SparsityStats", "named_sparsity", "sparsity"]
