"""End to end: train the same complex MobileNetV2-style 1-D classifier built with cplxfast.nn,
with torch's native complex ops (bench/torch_twins.py: torch's complex conv1d and linear, batch
norm and modReLU as torch op chains) and, where it is installed, with cplxmodule.nn, from the
same initial weights on the same batches, and compare the time per training step and the loss
curves.

    python bench/bench_e2e.py [--quick] [--device cpu|cuda] [--steps N] [--autocast] [--out DIR]

The task is symbol-rate recognition on synthetic complex baseband signals generated here: the
label is the number of samples per symbol (2, 4, 8 or 16); each signal carries BPSK, QPSK, 8PSK
or 16QAM symbols (drawn at random, a nuisance), with rectangular pulses, a random carrier phase,
a small frequency offset and white noise at a random SNR of 0-20 dB. (Modulation type itself was
tried first: with random phase this small network did not learn it in the 40-60 steps a benchmark
can afford, and a flat loss curve shows little.) The model: a strided stem convolution,
inverted-residual blocks (1x1 expand, depthwise k=9, 1x1 project, each followed by complex batch
norm, the first two by an adaptive modReLU; a skip connection where shapes allow), and a
CplxLinear head applied at every time step whose output moduli, averaged over time, are the
class logits (phase-invariant).

The same architecture is also built the native-complex way (bench/library_models.py): torch's
complex Conv1d/Linear with torchcvnn's batch norm and modReLU, and complextorch's layers, each
trained as written and converted with cplxfast.nn.convert() (same initial weights, so their loss
curves must agree); and as a real-valued twin with the same channel counts, whose step time gives
each implementation's complex overhead factor (its time / the real model's).

cplxmodule layers pass cplxmodule.Cplx objects between them, the others native complex tensors;
the architecture code is the same for all (it takes the layer namespace). Steps of the models
alternate in one process; the table reports the median time per step with its min and max. Writes e2e-<device>.json and, with matplotlib, e2e-<device>.png (loss curves and
time per step).

--autocast adds the cplxfast model trained under torch.autocast (bf16; fp16 on CUDA too), from the
same initial weights: its loss curve against the float32 one, and its step time.
"""
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
import library_models  # noqa: E402
import torch_twins  # noqa: E402

import cplxfast.nn  # noqa: E402

MODULATIONS = ("BPSK", "QPSK", "8PSK", "16QAM")
SAMPLES_PER_SYMBOL = (2, 4, 8, 16)  # the classes
LR = 3e-3
CONVERTED = "cplxfast convert() (Cplx flow)"
REAL = "real, same channels"
PROFILED_OPS = 15  # rows of the per-op breakdown kept in the JSON


# ------------------------------------------------------------------------------ data
def constellations():
    """[4, 16] complex table of constellation points per class (unit mean power), and the
    number of points each class uses."""
    table = torch.zeros(len(MODULATIONS), 16, dtype=torch.complex64)
    table[0, :2] = torch.tensor([1, -1], dtype=torch.complex64)
    table[1, :4] = torch.exp(1j * (math.pi / 4 + math.pi / 2 * torch.arange(4)))
    table[2, :8] = torch.exp(1j * (math.pi / 4 * torch.arange(8)))
    levels = torch.tensor([-3.0, -1.0, 1.0, 3.0])
    table[3] = torch.complex(levels.repeat(4), levels.repeat_interleave(4)) / math.sqrt(10)
    return table, torch.tensor([2, 4, 8, 16])


def make_batch(gen, batch, length):
    """(signals [batch, 1, length] complex64, labels [batch]: the index of the symbol rate)."""
    table, points = constellations()
    labels = torch.randint(len(SAMPLES_PER_SYMBOL), (batch,), generator=gen)
    modulation = torch.randint(len(MODULATIONS), (batch,), generator=gen)
    n_sym = length // min(SAMPLES_PER_SYMBOL) + 1
    which = (torch.rand(batch, n_sym, generator=gen) * points[modulation, None]).long()
    symbols = table[modulation[:, None], which]
    sps = torch.tensor(SAMPLES_PER_SYMBOL)[labels]
    n = torch.arange(length)
    x = symbols.gather(1, n[None, :] // sps[:, None])  # rectangular pulses
    phase = 2 * math.pi * torch.rand(batch, 1, generator=gen)
    freq = 0.002 * (torch.rand(batch, 1, generator=gen) - 0.5)  # cycles per sample
    x = x * torch.exp(1j * (phase + 2 * math.pi * freq * n.float()))
    snr_db = 20 * torch.rand(batch, 1, generator=gen)
    noise = torch.complex(torch.randn(batch, length, generator=gen), torch.randn(batch, length, generator=gen))
    x = x + noise * (10 ** (-snr_db / 20) / math.sqrt(2))
    return x.to(torch.complex64).unsqueeze(1), labels


# ------------------------------------------------------------------------------ model
class InvertedResidual(torch.nn.Module):
    def __init__(self, nn, c_in, c_out, stride, expand=4, k=9):
        super().__init__()
        hidden = c_in * expand
        self.expand = nn.CplxConv1d(c_in, hidden, 1, bias=False)
        self.bn1 = nn.CplxBatchNorm1d(hidden)
        self.act1 = nn.CplxAdaptiveModReLU(hidden, 1)
        self.depthwise = nn.CplxConv1d(hidden, hidden, k, stride=stride, padding=k // 2, groups=hidden, bias=False)
        self.bn2 = nn.CplxBatchNorm1d(hidden)
        self.act2 = nn.CplxAdaptiveModReLU(hidden, 1)
        self.project = nn.CplxConv1d(hidden, c_out, 1, bias=False)
        self.bn3 = nn.CplxBatchNorm1d(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, z):
        y = self.act1(self.bn1(self.expand(z)))
        y = self.act2(self.bn2(self.depthwise(y)))
        y = self.bn3(self.project(y))
        return z + y if self.residual else y


class Classifier(torch.nn.Module):
    """MobileNetV2-style 1-D classifier from a layer namespace (cplxmodule.nn or cplxfast.nn)."""

    def __init__(self, nn, width=16, n_classes=len(SAMPLES_PER_SYMBOL)):
        super().__init__()
        w = width
        self.stem = nn.CplxConv1d(1, w, 7, stride=2, padding=3, bias=False)
        self.stem_bn = nn.CplxBatchNorm1d(w)
        self.stem_act = nn.CplxAdaptiveModReLU(w, 1)
        plan = [(w, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1)]
        self.blocks = torch.nn.Sequential(*[InvertedResidual(nn, a, b, s) for a, b, s in plan])
        self.head = nn.CplxLinear(4 * w, n_classes)

    def forward(self, z):
        z = self.blocks(self.stem_act(self.stem_bn(self.stem(z))))
        per_step = z.transpose(1, 2) if isinstance(z, torch.Tensor) else type(z)(z.real.transpose(1, 2), z.imag.transpose(1, 2))
        return abs(self.head(per_step)).mean(1)  # time-averaged output moduli: the logits


class UnderAutocast(torch.nn.Module):
    """A model whose forward runs under torch.autocast(device, dtype) (the loss stays outside)."""

    def __init__(self, model, device, dtype):
        super().__init__()
        self.model, self.device, self.dtype = model, device, dtype

    def forward(self, z):
        with torch.autocast(self.device, dtype=self.dtype):
            return self.model(z)


# ------------------------------------------------------------------------------ training
def train_side_by_side(models, batches, lr, device):
    """Alternate one Adam step of each model per batch; (losses per model, step seconds per model)."""
    opts = {name: torch.optim.Adam(m.parameters(), lr=lr) for name, (m, _) in models.items()}
    losses = {name: [] for name in models}
    times = {name: [] for name in models}
    for x, labels in batches:
        for name, (model, wrap) in models.items():
            common.sync(device)
            t0 = time.perf_counter()
            opts[name].zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(wrap(x)), labels)
            loss.backward()
            opts[name].step()
            common.sync(device)
            times[name].append(time.perf_counter() - t0)
            losses[name].append(loss.item())
    return losses, times


def op_breakdown(model, wrap, batch, lr, device):
    """Per-op self time of one training step (torch.profiler), the top PROFILED_OPS rows."""
    from torch.profiler import ProfilerActivity, profile

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    x, labels = batch
    with profile(activities=activities) as prof:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(wrap(x)), labels).backward()
        opt.step()
        common.sync(device)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    rows = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[:PROFILED_OPS]
    return [{"op": e.key, "self_ms": getattr(e, key, 0) / 1e3, "calls": e.count,
             "share_of_cpu": e.self_cpu_time_total / total} for e in rows]


def plot(path, losses, medians, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    for name, ls in losses.items():
        a.plot(range(1, len(ls) + 1), ls, label=name, linestyle="-" if "cplxfast" in name or "convert" in name else "--")
    a.set_xlabel("training step")
    a.set_ylabel("cross-entropy loss")
    a.set_title("loss curves (same weights, same batches)")
    a.legend()
    names = list(medians)
    b.bar(range(len(names)), [medians[n] * 1e3 for n in names], color=[f"C{i}" for i in range(len(names))])
    b.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
    b.set_ylabel("ms per training step (median)")
    b.set_title("time per step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def library_models_as_written_and_converted(device):
    """name -> (model, wrap) for the torchcvnn and complextorch models (where installed), as written
    and converted from the same initial weights; and the pairs whose loss curves must agree."""
    import copy
    import warnings

    models, pairs = {}, []
    for library, layers in (("torchcvnn", library_models.torchcvnn_layers),
                            ("complextorch", library_models.complextorch_layers)):
        if not common.have(library):
            print(f"({library} not installed: its rows are left out)")
            continue
        torch.manual_seed(0)
        written = Classifier(layers()).to(device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nothing is left unconverted in this model; the test checks it
            converted = cplxfast.nn.convert(copy.deepcopy(written), left="raise")
        name = f"torch complex + {library}"
        models[name], models[f"{name}, convert()"] = (written, lambda x: x), (converted, lambda x: x)
        pairs.append((f"{name}, convert()", name))
    return models, pairs


def main(argv=None):
    p = common.arg_parser(__doc__)
    p.add_argument("--steps", type=int, help="training steps (default 40, quick 4)")
    p.add_argument("--autocast", action="store_true", help="add the cplxfast model under torch.autocast")
    args = p.parse_args(argv)
    steps = args.steps or (4 if args.quick else 40)
    batch, length = (8, 256) if args.quick else (64, 1024)
    if not common.have_cplxmodule():
        print("(cplxmodule not installed: its column is left out)")
    for device in args.device or common.devices():
        torch.manual_seed(0)
        ours = Classifier(cplxfast.nn).to(device)
        twin = Classifier(torch_twins).to(device)
        twin.load_state_dict(ours.state_dict(), strict=True)  # the same initial weights
        models = {"cplxfast": (ours, lambda x: x), "torch complex": (twin, lambda x: x)}
        if common.have_cplxmodule():
            from cplxmodule import Cplx
            import cplxmodule.nn as theirs_nn

            as_cplx = lambda x: Cplx(x.real.contiguous(), x.imag.contiguous())  # noqa: E731
            theirs = Classifier(theirs_nn).to(device)
            theirs.load_state_dict(ours.state_dict(), strict=True)
            models["cplxmodule"] = (theirs, as_cplx)
            # The seed user's path: a cplxmodule model converted in place, Cplx between the layers.
            converted = cplxfast.nn.convert(Classifier(theirs_nn).to(device))
            converted.load_state_dict(ours.state_dict(), strict=True)
            models[CONVERTED] = (converted, as_cplx)
        if args.autocast:
            for dtype in common.autocast_dtypes(device):
                mixed = Classifier(cplxfast.nn).to(device)
                mixed.load_state_dict(ours.state_dict(), strict=True)
                models[f"cplxfast {common.autocast_name(dtype)}"] = (UnderAutocast(mixed, device, dtype), lambda x: x)
        pairs = [(name, "cplxfast") for name in models if name != "cplxfast"]
        library, library_pairs = library_models_as_written_and_converted(device)
        models.update(library)
        pairs += library_pairs
        torch.manual_seed(0)
        models[REAL] = (Classifier(library_models.REAL).to(device), lambda x: x.real.contiguous())
        gen = torch.Generator().manual_seed(1)
        batches = [tuple(t.to(device) for t in make_batch(gen, batch, length)) for _ in range(steps + 2)]
        common.progress(f"[bench_e2e] {device}: {steps} steps of batch {batch} x {length} ...")
        train_side_by_side(models, batches[:2], LR, device)  # warm-up steps (same for all)
        losses, times = train_side_by_side(models, batches[2:], LR, device)
        med = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
        gaps = {f"{name} against {base}": max(abs(a - b) / abs(b) for a, b in zip(losses[name], losses[base]))
                for name, base in pairs}
        n_params = sum(p.numel() for p in ours.parameters())
        case = f"MobileNet-1D ({n_params} real params), batch {batch} x {length}, {steps} Adam steps"
        speedup = lambda other, name: med[other] / med[name] if other in med else None  # noqa: E731
        rows = [{
            "case": case, "impl": name, "ms_per_step": med[name] * 1e3, "min_ms": min(times[name]) * 1e3,
            "max_ms": max(times[name]) * 1e3, "speedup_vs_torch": speedup("torch complex", name),
            "speedup_vs_cplxmodule": speedup("cplxmodule", name),
            "speedup_vs_as_written": speedup(name[: -len(", convert()")], name) if name.endswith(", convert()") else None,
            "overhead_vs_real": med[name] / med[REAL], "losses": losses[name],
            "first_loss": losses[name][0], "last_loss": losses[name][-1],
        } for name in models]
        for r in rows:
            if r["impl"] in ("cplxfast", CONVERTED):
                model, wrap = models[r["impl"]]
                r["op_breakdown"] = op_breakdown(model, wrap, batches[-1], LR, device)
        path = common.write_json(os.path.join(args.out, f"e2e-{device}.json"), "e2e", device, rows)
        png = plot(os.path.join(args.out, f"e2e-{device}.png"), losses, med,
                   f"{case}, {device}: {common.machine(device)}")
        x_of = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
        common.print_table(
            ["case", "impl", "ms / step (median)", "min - max", "overhead (/real)", "vs torch", "vs cplxmodule",
             "vs as written", "loss: first", "last"],
            [[case, r["impl"], f"{r['ms_per_step']:.1f}", f"{r['min_ms']:.1f} - {r['max_ms']:.1f}",
              f"{r['overhead_vs_real']:.2f}", x_of(r["speedup_vs_torch"]), x_of(r["speedup_vs_cplxmodule"]),
              x_of(r["speedup_vs_as_written"]), f"{r['first_loss']:.4f}", f"{r['last_loss']:.4f}"] for r in rows],
            title=f"end to end training, complex64, {device}: {common.machine(device)} (JSON: {path})",
        )
        for r in rows:
            if "op_breakdown" in r:
                common.print_table(["op", "self ms", "calls", "share of CPU time"],
                                   [[o["op"][:60], f"{o['self_ms']:.2f}", o["calls"], f"{100 * o['share_of_cpu']:.1f}%"]
                                    for o in r["op_breakdown"][:8]],
                                   title=f"one training step of {r['impl']}, by op (top 8 of the JSON's {PROFILED_OPS})")
        print("largest relative difference between loss curves that must agree: "
              + ", ".join(f"{name} {gap:.1e}" for name, gap in gaps.items())
              + (f"; plot: {png}" if png else " (no matplotlib: no plot)"))


if __name__ == "__main__":
    main()
