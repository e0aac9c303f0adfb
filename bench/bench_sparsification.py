"""The sparsification pipeline cplxmodule documents, on a complex model, with cplxmodule's layers
and with cplxfast's side by side: dense training -> ARD (variational dropout with the empirical
Bayes prior, KL term weighted) -> masks from the ARD relevance (binarised) -> masked fine-tune.

    python bench/bench_sparsification.py [--quick] [--device cpu|cuda] [--out DIR]

The model is bench_e2e's MobileNet-1D classifier (symbol-rate recognition on synthetic complex
baseband), with its convolutions and head swapped per phase: CplxConv1d/CplxLinear (dense),
CplxConv1dARD/CplxLinearARD, CplxConv1dMasked/CplxLinearMasked. Both start from the same dense weights (cplxfast's model is
cplxfast.nn.convert() of cplxmodule's); each then runs the whole pipeline with its own library's
layers and utilities (penalties, compute_ard_masks, binarize_masks, deploy_masks, sparsity).
Steps of the two alternate on the same batches. Without cplxmodule,
only cplxfast's rows are measured.

Adam, lr 3e-3 for the weights and 0.1 for log_sigma2 (so that a benchmark-length ARD phase
sparsifies: with the weights' rate log_sigma2 would move 0.1 in 30 steps from its -10 start),
KL weight KL_WEIGHT / (number of weights); relevance threshold log_alpha <= THRESHOLD. The two
implementations draw different noise, so their curves agree statistically, not step by step.
Two side-by-side sections after the pipeline: masked layers with the mask in the fused op against a
masked copy of the weight, and ARD layers (and the whole ARD-phase model) on the fused Gaussian ops
(|x|^2 and the noise inside the 3M passes) against the separate passes they replaced.
Writes sparsification-<device>.json and, with matplotlib, sparsification-<device>.png (loss and
sparsity against step).
"""
import copy
import importlib
import os
import sys
import time
import types
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bench_e2e  # noqa: E402
import common  # noqa: E402

import cplxfast.nn  # noqa: E402

LR, LR_LOG_SIGMA2 = 3e-3, 0.1
KL_WEIGHT = 1.0  # times 1 / (number of weights): the penalty per weight, against the cross-entropy
THRESHOLD = 3.0  # log_alpha <= 3: kept
PHASES = ("dense", "ard", "masked")


def namespace(library, phase):
    """The layer namespace bench_e2e.Classifier builds from, for one library and phase."""
    if library == "cplxmodule":
        import cplxmodule.nn as base
        import cplxmodule.nn.masked as masked
        import cplxmodule.nn.relevance as relevance
    else:
        base, masked, relevance = cplxfast.nn, cplxfast.nn.masked, cplxfast.nn.relevance
    layers = {"dense": (base.CplxConv1d, base.CplxLinear),
              "ard": (relevance.CplxConv1dARD, relevance.CplxLinearARD),
              "masked": (masked.CplxConv1dMasked, masked.CplxLinearMasked)}[phase]
    return types.SimpleNamespace(CplxConv1d=layers[0], CplxLinear=layers[1], CplxBatchNorm1d=base.CplxBatchNorm1d,
                                 CplxAdaptiveModReLU=base.CplxAdaptiveModReLU)


def utilities(library):
    if library == "cplxmodule":
        import cplxmodule.nn.masked as masked
        import cplxmodule.nn.relevance as relevance
        sparsity = importlib.import_module("cplxmodule.nn.utils.sparsity")
        return types.SimpleNamespace(penalties=relevance.penalties, compute_ard_masks=relevance.compute_ard_masks,
                                     binarize_masks=masked.binarize_masks, deploy_masks=masked.deploy_masks,
                                     sparsity=sparsity.sparsity)
    m, r = cplxfast.nn.masked, cplxfast.nn.relevance
    return types.SimpleNamespace(penalties=r.penalties, compute_ard_masks=r.compute_ard_masks,
                                 binarize_masks=m.binarize_masks, deploy_masks=m.deploy_masks,
                                 sparsity=cplxfast.nn.sparsity.sparsity)


def next_phase(model, library, phase, device):
    """The model of the next phase, from the weights (and, for "masked", the ARD masks) of this one."""
    new = bench_e2e.Classifier(namespace(library, phase)).to(device)
    u = utilities(library)
    state = model.state_dict()
    if phase == "masked":
        masks = u.compute_ard_masks(model, threshold=THRESHOLD, hard=True)
        state, masks = u.binarize_masks(state, masks)
    new.load_state_dict(state, strict=False)  # ARD: log_sigma2 stays at its init; masked: no log_sigma2
    if phase == "masked":
        u.deploy_masks(new, state_dict=masks)
    return new


def optimizer(model):
    log_sigma2 = [p for n, p in model.named_parameters() if n.endswith("log_sigma2")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("log_sigma2")]
    groups = [{"params": rest, "lr": LR}] + ([{"params": log_sigma2, "lr": LR_LOG_SIGMA2}] if log_sigma2 else [])
    return torch.optim.Adam(groups)


def n_weights(model):
    return sum(p.numel() for n, p in model.named_parameters() if n.endswith("log_sigma2")) or 1


def train_phase(models, batches, phase, device):
    """Alternate one step of each model per batch: per model (losses, step seconds, sparsity)."""
    opts = {name: optimizer(m) for name, (m, _, _) in models.items()}
    out = {name: ([], [], []) for name in models}
    for x, labels in batches:
        for name, (model, wrap, library) in models.items():
            u = utilities(library)
            common.sync(device)
            t0 = time.perf_counter()
            opts[name].zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(wrap(x)), labels)
            if phase == "ard":
                loss = loss + KL_WEIGHT / n_weights(model) * sum(u.penalties(model))
            loss.backward()
            opts[name].step()
            common.sync(device)
            out[name][1].append(time.perf_counter() - t0)
            out[name][0].append(loss.item())
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # cplxmodule's named_sparsity warns on every call
                out[name][2].append(u.sparsity(model, threshold=THRESHOLD, hard=True) if phase != "dense" else 0.0)
    return out


def plot(path, curves, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    for i, (name, (losses, sparsity, bounds)) in enumerate(curves.items()):
        style = "-" if name == "cplxfast" else "--"
        a.plot(range(1, len(losses) + 1), losses, style, color=f"C{i}", label=name)
        b.plot(range(1, len(sparsity) + 1), [100 * s for s in sparsity], style, color=f"C{i}", label=name)
    for ax in (a, b):
        for edge in bounds[:-1]:
            ax.axvline(edge + 0.5, color="grey", lw=0.8)
        ax.set_xlabel("training step (phases: dense | ARD | masked)")
        ax.legend()
    a.set_ylabel("training loss (ARD: with the KL term)")
    b.set_ylabel(f"sparsity, % (log_alpha > {THRESHOLD} / masked)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class _MaskedCopy:
    """The path weight_mask replaced (mixed in before a masked layer's class): the weight parts
    multiplied by the mask before the op, two weight-sized copies and their backward per step."""

    def _weight_mask(self):
        return None

    def _weight_and_bias_parts(self, z):
        w_re, w_im, b_re, b_im = super()._weight_and_bias_parts(z)
        return w_re * self.mask, w_im * self.mask, b_re, b_im


def masked_layer_rows(device, quick):
    """One masked layer's fwd+bwd with the mask in the fused op (weight_mask) against the masked
    copy it replaced, interleaved, after checking that both give the same output bit for bit."""
    masked = cplxfast.nn.masked
    cases = [("CplxLinearMasked(1024, 1024), 64 rows", lambda: masked.CplxLinearMasked(1024, 1024), (64, 1024)),
             ("CplxConv1dMasked(64, 64, 7), 32 x 64 x 512", lambda: masked.CplxConv1dMasked(64, 64, 7), (32, 64, 512))]
    if quick:
        cases = [("CplxLinearMasked(64, 32), 8 rows", lambda: masked.CplxLinearMasked(64, 32), (8, 64))]
    rows = []
    for case, make, shape in cases:
        torch.manual_seed(0)
        layer = make().to(device)
        layer.mask = (torch.rand(layer.weight.shape) > 0.5).float()
        before = copy.deepcopy(layer)
        before.__class__ = type("Before" + type(layer).__name__, (_MaskedCopy, type(layer)), {})
        x = torch.randn(shape, dtype=torch.complex64, device=device)
        assert torch.equal(layer(x), before(x)), case
        rows += side_by_side(case, {"mask in the op": layer, "masked copy (before)": before},
                             lambda m: m(x).abs().sum().backward(), "speedup_vs_masked_copy", device)
    return rows


def side_by_side(case, models, step, speedup_key, device):
    """Rows of step(model) timed interleaved for each of models (name -> model; the last is the
    baseline the speed-ups are against)."""
    t = common.time_interleaved({name: (lambda m=m: step(m)) for name, m in models.items()}, device)
    base = t[list(models)[-1]]
    return [{"case": case, "impl": name, "fwd_bwd_ms": v * 1e3, **common.spread_fields("fwd_bwd", v),
             speedup_key: base / v} for name, v in t.items()]


class _SeparatePasses:
    """The path the fused Gaussian ops replaced (mixed in before a complex ARD layer's class): mu on
    the plain fused layer, s2 from torch's |x|^2 (abs, square) and real layer, then the noise pass."""

    def _reparametrised(self, *zs):
        return cplxfast.ops.gaussian_reparam(self._forward_complex(*zs), self._variance(*zs))[0]


def with_separate_passes(model):
    """A copy of model whose complex Gaussian layers take _SeparatePasses."""
    before = copy.deepcopy(model)
    for m in before.modules():
        if isinstance(m, cplxfast.nn.relevance._CplxGaussian):
            m.__class__ = type("Before" + type(m).__name__, (_SeparatePasses, type(m)), {})
    return before


def ard_rows(device, quick, batch):
    """ARD layers and the whole ARD-phase model, training fwd+bwd, on the fused Gaussian ops against
    the separate passes they replaced, interleaved, after checking that both give the same output
    from the same seed (to rounding: |x|^2 is computed differently)."""
    r = cplxfast.nn.relevance
    cases = [("CplxLinearARD(1024, 1024), 1024 rows", lambda: r.CplxLinearARD(1024, 1024), (1024, 1024)),
             ("CplxConv1dARD(64, 64, 7), 32 x 64 x 512", lambda: r.CplxConv1dARD(64, 64, 7), (32, 64, 512))]
    if quick:
        cases = [("CplxLinearARD(64, 32), 8 rows", lambda: r.CplxLinearARD(64, 32), (8, 64))]
    rows = []
    x, labels = batch
    for case, make, shape in cases + [("ARD-phase MobileNet-1D step (loss + KL)", None, None)]:
        torch.manual_seed(0)
        if make is None:
            model = next_phase(bench_e2e.Classifier(namespace("cplxfast", "dense")).to(device), "cplxfast", "ard",
                               device)
            inp = x

            def step(m):
                loss = torch.nn.functional.cross_entropy(m(inp), labels)
                (loss + KL_WEIGHT / n_weights(m) * sum(r.penalties(m))).backward()
        else:
            model = make().to(device)
            inp = torch.randn(shape, dtype=torch.complex64, device=device)

            def step(m):
                m(inp).abs().sum().backward()
        with torch.no_grad():  # log_sigma2 where training leaves it (its -10 init makes s2 negligible)
            for n, prm in model.named_parameters():
                if n.endswith("log_sigma2"):
                    prm.uniform_(-6, 0)
        before = with_separate_passes(model)
        outs = []
        for m in (model, before):
            torch.manual_seed(1)
            outs.append(m(inp))
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)
        rows += side_by_side(case, {"fused Gaussian op": model, "separate passes (before)": before}, step,
                             "speedup_vs_separate", device)
    return rows


def main(argv=None):
    p = common.arg_parser(__doc__)
    p.add_argument("--steps", type=int, nargs=3, metavar=("DENSE", "ARD", "MASKED"),
                   help="steps per phase (default 10 40 10; quick 2 2 2)")
    args = p.parse_args(argv)
    steps = args.steps or ((2, 2, 2) if args.quick else (10, 40, 10))
    batch, length = (8, 256) if args.quick else (32, 512)
    libraries = ["cplxmodule", "cplxfast"] if common.have_cplxmodule() else ["cplxfast"]
    if len(libraries) == 1:
        print("(cplxmodule not installed: only cplxfast's rows are measured)")
    for device in args.device or common.devices():
        gen = torch.Generator().manual_seed(1)
        batches = [tuple(t.to(device) for t in bench_e2e.make_batch(gen, batch, length)) for _ in range(sum(steps) + 1)]
        torch.manual_seed(0)
        models = {}
        if "cplxmodule" in libraries:
            from cplxmodule import Cplx
            theirs = bench_e2e.Classifier(namespace("cplxmodule", "dense")).to(device)
            models["cplxmodule"] = [theirs, lambda x: Cplx(x.real.contiguous(), x.imag.contiguous()), "cplxmodule"]
            models["cplxfast"] = [cplxfast.nn.convert(copy.deepcopy(theirs)), lambda x: x, "cplxfast"]
        else:
            models["cplxfast"] = [bench_e2e.Classifier(namespace("cplxfast", "dense")).to(device), lambda x: x,
                                  "cplxfast"]
        common.progress(f"[bench_sparsification] {device}: {steps} steps (dense, ARD, masked) of batch {batch} x "
                        f"{length} ...")
        train_phase({k: tuple(v) for k, v in models.items()}, batches[:1], "dense", device)  # warm-up
        results = {name: {"losses": [], "sparsity": [], "phases": {}} for name in models}
        start = 1
        bounds = []
        for phase, n in zip(PHASES, steps):
            if phase != "dense":
                for entry in models.values():
                    entry[0] = next_phase(entry[0], entry[2], phase, device)
            out = train_phase({k: tuple(v) for k, v in models.items()}, batches[start:start + n], phase, device)
            start += n
            bounds.append(sum(len(r["losses"]) for r in results.values()) // len(results) + n)
            for name, (losses, times, sparsity) in out.items():
                results[name]["losses"] += losses
                results[name]["sparsity"] += sparsity
                results[name]["phases"][phase] = common.Timing(times)
        rows = []
        for phase in PHASES:
            for name in models:
                t = results[name]["phases"][phase]
                base = results.get("cplxmodule", {}).get("phases", {}).get(phase)
                rows.append({"phase": phase, "impl": name, "ms_per_step": t * 1e3, **common.spread_fields("step", t),
                             "speedup_vs_cplxmodule": (base / t) if base is not None else None})
        final = {name: {"last_loss": r["losses"][-1], "sparsity": r["sparsity"][-1]} for name, r in results.items()}
        case = f"MobileNet-1D, batch {batch} x {length}, steps {steps}"
        layer_rows = masked_layer_rows(device, args.quick)
        gauss_rows = ard_rows(device, args.quick, batches[0])
        path = common.write_json(os.path.join(args.out, f"sparsification-{device}.json"), "sparsification", device,
                                 [{**r, "case": case} for r in rows] +
                                 [{"case": case, "impl": n, "curves": results[n]["losses"],
                                   "sparsity_curve": results[n]["sparsity"], **final[n]} for n in results] +
                                 [{**r, "section": "masked layers"} for r in layer_rows] +
                                 [{**r, "section": "ARD layers"} for r in gauss_rows])
        png = plot(os.path.join(args.out, f"sparsification-{device}.png"),
                   {n: (r["losses"], r["sparsity"], bounds) for n, r in results.items()},
                   f"sparsification pipeline, {case}, {device}: {common.machine(device)}")
        x_of = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
        common.print_table(
            ["phase", "impl", "ms / step (median)", "min - max", "vs cplxmodule"],
            [[r["phase"], r["impl"], f"{r['ms_per_step']:.1f}", f"{r['step_min_ms']:.1f} - {r['step_max_ms']:.1f}",
              x_of(r["speedup_vs_cplxmodule"])] for r in rows],
            title=f"sparsification pipeline, {case}, complex64, {device}: {common.machine(device)} (JSON: {path})")
        print("at the end: " + ", ".join(f"{n} loss {f['last_loss']:.4f}, sparsity {100 * f['sparsity']:.1f}%"
                                         for n, f in final.items()) + (f"; plot: {png}" if png else ""))
        common.print_table(
            ["case", "impl", "fwd+bwd ms (median)", "min - max", "vs masked copy"],
            [[r["case"], r["impl"], f"{r['fwd_bwd_ms']:.2f}", f"{r['fwd_bwd_min_ms']:.2f} - {r['fwd_bwd_max_ms']:.2f}",
              f"{r['speedup_vs_masked_copy']:.2f}x"] for r in layer_rows],
            title=f"masked layers: the mask in the fused op against a masked copy of the weight, complex64, "
                  f"{device}: {common.machine(device)} (JSON: {path})")
        common.print_table(
            ["case", "impl", "fwd+bwd ms (median)", "min - max", "vs separate passes"],
            [[r["case"], r["impl"], f"{r['fwd_bwd_ms']:.2f}", f"{r['fwd_bwd_min_ms']:.2f} - {r['fwd_bwd_max_ms']:.2f}",
              f"{r['speedup_vs_separate']:.2f}x"] for r in gauss_rows],
            title=f"ARD layers, training: the fused Gaussian ops against the separate passes they replaced, "
                  f"complex64, {device}: {common.machine(device)} (JSON: {path})")


if __name__ == "__main__":
    main()
