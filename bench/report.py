"""The one table of `make bench`, and its plots, from the JSON the family benchmarks wrote.

    python bench/report.py [--out DIR] [--device cpu|cuda]

Per layer and case: fwd+bwd time of cplxfast, torch native complex, cplxmodule and the real
layer (same features for GEMM/conv, same bytes for batch norm and modReLU), the complex overhead
factor of each (time / real; 3.0 is the floor of the 3M trick for GEMM/conv layers), cplxfast's
speed-ups, and for the memory-bound layers the fraction of the measured copy bandwidth. Plots
(with matplotlib): overhead-<device>.png, the overhead factor per layer for each implementation,
and sizes-<device>.png, fwd+bwd time against layer width for linear and conv2d.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# family -> (JSON file prefix, cplxfast's row, fwd+bwd key, overhead key, real row prefix)
FAMILIES = {
    "linear": ("linear", "cplxfast auto", "fwd_bwd_ms", "overhead_vs_real", "real"),
    "conv": ("conv", "cplxfast auto", "fwd_bwd_ms", "overhead_vs_real", "real"),
    "modReLU": ("modrelu", "cplxfast", "fwd_bwd_ms", "vs_real_relu", "real"),
    "batch norm (train)": ("batchnorm", "cplxfast", "train_fwd_bwd_ms", "train_vs_real", "real"),
}
OTHERS = ("torch complex", "torch complex ops", "cplxmodule")


def load(out, name, device):
    path = os.path.join(out, f"{name}-{device}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def summary_rows(out, device):
    """One row per (family, case) with the times and overhead factors of each implementation."""
    rows = []
    for family, (prefix, ours, t_key, o_key, real_prefix) in FAMILIES.items():
        doc = load(out, prefix, device)
        if doc is None:
            continue
        by_case = {}
        for r in doc["rows"]:
            if "section" in r:  # the kernels-alone rows of bench_modrelu / bench_batchnorm
                continue
            by_case.setdefault(r["case"], {})[r["impl"]] = r
        for case, impls in by_case.items():
            if ours not in impls:
                continue
            real = next(r for name, r in impls.items() if name.startswith(real_prefix))
            row = {"family": family, "case": case, "cplxfast_ms": impls[ours][t_key], "real_ms": real[t_key],
                   "overhead": {"cplxfast": impls[ours][o_key]},
                   "bandwidth": impls[ours].get("fraction_of_copy_bandwidth")}
            for other in OTHERS:
                if other in impls:
                    key = "torch" if other.startswith("torch") else other
                    row[f"{key}_ms"] = impls[other][t_key]
                    row["overhead"][key] = impls[other][o_key]
            rows.append(row)
    e2e = load(out, "e2e", device)
    if e2e is not None:
        t = {r["impl"]: r["ms_per_step"] for r in e2e["rows"]}
        rows.append({"family": "end to end (train step)", "case": e2e["rows"][0]["case"], "cplxfast_ms": t["cplxfast"],
                     "torch_ms": t.get("torch complex"), "cplxmodule_ms": t.get("cplxmodule"), "real_ms": None,
                     "overhead": {}, "bandwidth": None})
    sparsification = load(out, "sparsification", device)
    if sparsification is not None:
        t = {r["impl"]: r["ms_per_step"] for r in sparsification["rows"] if r.get("phase") == "ard"}
        case = sparsification["rows"][0]["case"]
        rows.append({"family": "ARD phase (train step)", "case": case, "cplxfast_ms": t["cplxfast"],
                     "torch_ms": None, "cplxmodule_ms": t.get("cplxmodule"), "real_ms": None, "overhead": {},
                     "bandwidth": None})
    return rows


def fmt(v, spec=".2f", suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def print_summary(rows, device):
    table = []
    for r in rows:
        speedup = lambda k: r[f"{k}_ms"] / r["cplxfast_ms"] if r.get(f"{k}_ms") else None  # noqa: E731
        o = r["overhead"]
        table.append([
            r["family"], r["case"], fmt(r["cplxfast_ms"]), fmt(r.get("torch_ms")), fmt(r.get("cplxmodule_ms")),
            fmt(r["real_ms"]), f"{fmt(o.get('cplxfast'))} / {fmt(o.get('torch'))} / {fmt(o.get('cplxmodule'))}",
            fmt(speedup("torch"), suffix="x"), fmt(speedup("cplxmodule"), suffix="x"),
            fmt(None if r["bandwidth"] is None else 100 * r["bandwidth"], ".0f", "%"),
        ])
    common.print_table(
        ["layer", "case", "cplxfast ms", "torch ms", "cplxmodule ms", "real ms",
         "overhead cplxfast / torch / cplxmodule", "vs torch", "vs cplxmodule", "of copy BW"],
        table, title=f"SUMMARY, fwd+bwd, complex64, {device}: {common.machine(device)}",
    )


def plot_overhead(rows, path):
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["overhead"]]
    impls = ["cplxfast", "torch", "cplxmodule"]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(rows)), 5.5))
    width = 0.8 / len(impls)
    for i, impl in enumerate(impls):
        xs = [j + (i - 1) * width for j, r in enumerate(rows) if impl in r["overhead"]]
        ys = [r["overhead"][impl] for r in rows if impl in r["overhead"]]
        ax.bar(xs, ys, width, label=impl)
    ax.axhline(3.0, color="gray", linestyle=":", label="3M floor (GEMM/conv)")
    ax.axhline(4.0, color="gray", linestyle="--", label="naive complex (4 real mults)")
    ax.set_xticks(range(len(rows)), [f"{r['family']}: {r['case']}" for r in rows], fontsize=7, rotation=30,
                  ha="right")
    ax.set_ylabel("complex overhead factor (time / real layer)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sizes(doc, path):
    import matplotlib.pyplot as plt

    families = sorted({r["family"] for r in doc["rows"]})
    fig, axes = plt.subplots(1, len(families), figsize=(5.5 * len(families), 4))
    for ax, family in zip(axes if len(families) > 1 else [axes], families):
        rows = [r for r in doc["rows"] if r["family"] == family]
        for impl in dict.fromkeys(r["impl"] for r in rows):
            pts = sorted((r["size"], r["fwd_bwd_ms"]) for r in rows if r["impl"] == impl)
            ax.plot(*zip(*pts), marker="o", label=impl)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("features (linear: in = out, 1024 rows)" if family == "linear" else "channels (in = out)")
        ax.set_ylabel("fwd+bwd ms")
        ax.set_title(f"{family}: {rows[0]['case']} ... {rows[-1]['case']}", fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = common.arg_parser(__doc__).parse_args(argv)
    for device in args.device or common.devices():
        rows = summary_rows(args.out, device)
        if not rows:
            print(f"(no benchmark JSON for {device} in {args.out})")
            continue
        print_summary(rows, device)
        try:
            import matplotlib
            matplotlib.use("Agg")
        except ImportError:
            print("(no matplotlib: no plots)")
            continue
        plot_overhead(rows, os.path.join(args.out, f"overhead-{device}.png"))
        plots = [f"overhead-{device}.png"]
        sizes = load(args.out, "sizes", device)
        if sizes is not None:
            plot_sizes(sizes, os.path.join(args.out, f"sizes-{device}.png"))
            plots.append(f"sizes-{device}.png")
        print(f"plots in {args.out}: {', '.join(plots)}")


if __name__ == "__main__":
    main()
