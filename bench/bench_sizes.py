"""How cost grows with problem size, linear and conv2d, fwd+bwd, side by side: cplxfast auto,
torch native complex, cplxmodule and the real layer of the same features, at several widths.

    python bench/bench_sizes.py [--quick] [--device cpu|cuda] [--out DIR]

Writes sizes-<device>.json; bench/report.py plots it (time against size, log-log).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bench_conv  # noqa: E402
import bench_linear  # noqa: E402
import common  # noqa: E402

IMPLS = ("cplxfast auto", "torch complex", "cplxmodule")


def sweeps(quick):
    """(family, size label, x value, impls builder) per point."""
    widths = (64, 128) if quick else (128, 256, 512, 1024, 2048)
    channels = (8, 16) if quick else (16, 32, 64, 128)
    rows, batch, side = (64, 2, 8) if quick else (1024, 16, 32)
    for w in widths:
        yield "linear", f"{rows}x{w}->{w}", w, lambda d, w=w: bench_linear.build_impls(rows, w, w, d)[0]
    for c in channels:
        yield ("conv2d", f"{batch}x{c}x{side}x{side} {c}->{c} k3", c,
               lambda d, c=c: bench_conv.build_impls(2, batch, c, c, (side, side), 3, 1, 1, d)[0])


def main(argv=None):
    args = common.arg_parser(__doc__).parse_args(argv)
    for device in args.device or common.devices():
        rows, table = [], []
        for family, label, x, build in sweeps(args.quick):
            common.progress(f"[bench_sizes] {device} {family} {label} ...")
            impls = build(device)
            real_name = next(n for n in impls if n.startswith("real"))
            names = [n for n in IMPLS if n in impls] + [real_name]
            both = common.time_interleaved({n: impls[n][1] for n in names}, device, rounds=args.rounds or
                                           (3 if args.quick else None), budget_s=1.0)
            for n in names:
                rows.append({"family": family, "case": label, "size": x, "impl": "real" if n == real_name else n,
                             "fwd_bwd_ms": both[n] * 1e3, "overhead_vs_real": both[n] / both[real_name]})
                table.append([family, label, rows[-1]["impl"], f"{both[n] * 1e3:.2f}", f"{both[n] / both[real_name]:.2f}"])
        path = common.write_json(os.path.join(args.out, f"sizes-{device}.json"), "sizes", device, rows)
        common.print_table(["family", "case", "impl", "fwd+bwd ms", "overhead (/real)"], table,
                           title=f"cost against size, complex64, {device}: {common.machine(device)} (JSON: {path})")


if __name__ == "__main__":
    main()
