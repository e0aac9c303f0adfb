"""Complex linear, fwd and fwd+bwd, side by side: cplxfast (CplxLinear auto/3m/4m, and
functional.linear on native complex Parameters), torch native complex
nn.Linear(dtype=cfloat), cplxmodule's CplxLinear, and a real nn.Linear of the same features.

    python bench/bench_linear.py [--quick] [--device cpu|cuda] [--crossover] [--autocast] [--out DIR]

--crossover times 3m against 4m over a grid of sizes: the measurement behind "auto"'s threshold.
--autocast adds CplxLinear under torch.autocast (auto: the block form, and 3m), bf16 on every
device and fp16 on CUDA (the CPU has no fp16 GEMM units), with its speed-up over cplxfast's
float32 "auto" in the "vs fp32" column.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

import cplxfast  # noqa: E402
from cplxfast import _reference as ref  # noqa: E402
from cplxfast.nn import CplxLinear  # noqa: E402

FULL_CASES = [(2048, 1024, 1024), (64, 256, 256), (512, 512, 512), (8192, 256, 256)]
QUICK_CASES = [(256, 256, 256), (64, 256, 256)]


def build_impls(M, K, N, device, autocast=False):
    """name -> (fwd callable, fwd+bwd callable, output for the correctness check)."""
    torch.manual_seed(0)
    W = torch.randn(N, K, dtype=torch.complex64) / math.sqrt(K)
    b = torch.randn(N, dtype=torch.complex64) * 0.1
    X = torch.randn(M, K, dtype=torch.complex64, device=device)
    G = torch.randn(M, N, dtype=torch.complex64, device=device)
    impls = {}

    def complex_layer(layer):
        x = X.clone().requires_grad_()

        def fwd_bwd():
            layer(x).backward(G)
        return (lambda: layer(X)), fwd_bwd, (lambda: layer(X))

    for algo in ("auto", "3m", "4m"):
        layer = CplxLinear(K, N, algorithm=algo).to(device)
        with torch.no_grad():
            layer.weight.real.copy_(W.real), layer.weight.imag.copy_(W.imag)
            layer.bias.real.copy_(b.real), layer.bias.imag.copy_(b.imag)
        impls[f"cplxfast {algo}"] = complex_layer(layer)
        if autocast and algo in ("auto", "3m"):
            for dtype in common.autocast_dtypes(device):
                impls[f"cplxfast {algo} {common.autocast_name(dtype)}"] = complex_layer(
                    common.under_autocast(layer, device, dtype))

    # functional.linear with native complex Parameters (the complex-weight op variant)
    w_param, b_param = torch.nn.Parameter(W.to(device)), torch.nn.Parameter(b.to(device))
    impls["cplxfast functional"] = complex_layer(lambda z: cplxfast.functional.linear(z, w_param, b_param))

    native = torch.nn.Linear(K, N, dtype=torch.complex64, device=device)
    with torch.no_grad():
        native.weight.copy_(W), native.bias.copy_(b)
    impls["torch complex"] = complex_layer(native)

    # torch's layer after cplxfast.nn.convert (cplxfast.nn.Linear: the same complex Parameters)
    converted = cplxfast.nn.convert(torch.nn.Linear(K, N, dtype=torch.complex64, device=device))
    converted.load_state_dict(native.state_dict())
    impls["cplxfast nn.Linear"] = complex_layer(converted)

    if common.have_cplxmodule():
        from cplxmodule import Cplx
        from cplxmodule.nn import CplxLinear as TheirLinear

        theirs = TheirLinear(K, N).to(device)
        with torch.no_grad():
            theirs.weight.real.copy_(W.real), theirs.weight.imag.copy_(W.imag)
            theirs.bias.real.copy_(b.real), theirs.bias.imag.copy_(b.imag)
        xc = Cplx(X.real.clone().requires_grad_(), X.imag.clone().requires_grad_())
        Xc = Cplx(X.real.contiguous(), X.imag.contiguous())

        def theirs_fwd_bwd():
            y = theirs(xc)
            torch.autograd.backward([y.real, y.imag], [G.real, G.imag])

        def theirs_out():
            y = theirs(Xc)
            return torch.complex(y.real, y.imag)
        impls["cplxmodule"] = ((lambda: theirs(Xc)), theirs_fwd_bwd, theirs_out)

    real = torch.nn.Linear(K, N, device=device)
    xr = torch.randn(M, K, device=device, requires_grad=True)
    gr = torch.randn(M, N, device=device)
    impls["real nn.Linear"] = ((lambda: real(xr.detach())), (lambda: real(xr).backward(gr)), None)
    return impls, (X, W.to(device), b.to(device))


def run_case(M, K, N, device, rounds, autocast=False):
    impls, (X, W, b) = build_impls(M, K, N, device, autocast)
    want = ref.linear(X, W, b)
    errors = {}
    with torch.no_grad():
        for name, (_, _, out) in impls.items():
            if out is not None:
                y = out().to(torch.complex128)
                errors[name] = ((y - want).norm() / want.norm()).item()
    with torch.no_grad():
        fwd = common.time_interleaved({n: f for n, (f, _, _) in impls.items()}, device, rounds=rounds)
    both = common.time_interleaved({n: fb for n, (_, fb, _) in impls.items()}, device, rounds=rounds)
    return fwd, both, errors


def main(argv=None):
    p = common.arg_parser(__doc__)
    p.add_argument("--crossover", action="store_true", help="time 3m vs 4m over a size grid")
    p.add_argument("--autocast", action="store_true", help="add CplxLinear under torch.autocast (bf16, fp16)")
    args = p.parse_args(argv)
    devs = args.device or common.devices()
    if args.crossover:
        for device in devs:
            crossover(device, args.rounds, args.out)
        return
    cases = QUICK_CASES if args.quick else FULL_CASES
    rounds = args.rounds or (3 if args.quick else None)  # None: fill a time budget per case
    for device in devs:
        rows, table = [], []
        for M, K, N in cases:
            common.progress(f"[bench_linear] {device} {M}x{K}->{N} ...")
            fwd, both, errors = run_case(M, K, N, device, rounds, args.autocast)
            real = both["real nn.Linear"]
            for name in both:
                row = {
                    "case": f"{M}x{K}->{N}", "impl": name, "fwd_ms": fwd[name] * 1e3,
                    "fwd_bwd_ms": both[name] * 1e3, **common.spread_fields("fwd_bwd", both[name]),
                    "bwd_ms": (both[name] - fwd[name]) * 1e3, "overhead_vs_real": both[name] / real,
                    "speedup_vs_torch": both["torch complex"] / both[name],
                    "speedup_vs_fp32": both["cplxfast auto"] / both[name],
                    "speedup_vs_cplxmodule": both["cplxmodule"] / both[name] if "cplxmodule" in both else None,
                    "rel_err_vs_fp64": errors.get(name),
                }
                rows.append(row)
                table.append([
                    row["case"], name, f"{row['fwd_ms']:.2f}", f"{row['bwd_ms']:.2f}", f"{row['fwd_bwd_ms']:.2f}",
                    common.spread_ms(both[name]),
                    f"{row['overhead_vs_real']:.2f}", f"{row['speedup_vs_torch']:.2f}x",
                    f"{row['speedup_vs_fp32']:.2f}x",
                    "-" if row["speedup_vs_cplxmodule"] is None else f"{row['speedup_vs_cplxmodule']:.2f}x",
                    "-" if row["rel_err_vs_fp64"] is None else f"{row['rel_err_vs_fp64']:.1e}",
                ])
        path = common.write_json(os.path.join(args.out, f"linear-{device}.json"), "linear", device, rows)
        if not common.have_cplxmodule():
            print("(cplxmodule not installed: its column is left out)")
        common.print_table(
            ["case", "impl", "fwd ms", "bwd ms (both - fwd)", "fwd+bwd ms", "min - max", "overhead (/real)", "vs torch",
             "vs fp32", "vs cplxmodule", "rel err"],
            table, title=f"linear, complex64, {device}: {common.machine(device)} (medians; JSON: {path})",
        )


def crossover(device, rounds, out):
    """fwd+bwd time of CplxLinear with 3m over 4m on a grid of (M, K=N): where 3M starts to pay."""
    rows, table = [], []
    for dtype in (torch.complex64, torch.complex128):
        real_dtype = torch.float32 if dtype == torch.complex64 else torch.float64
        for M in (64, 256, 512, 1024, 4096):
            for KN in (64, 128, 256, 512, 1024):
                torch.manual_seed(0)
                x = torch.randn(M, KN, dtype=dtype, device=device, requires_grad=True)
                g = torch.randn(M, KN, dtype=dtype, device=device)
                layers = {a: CplxLinear(KN, KN, algorithm=a, dtype=real_dtype, device=device) for a in ("3m", "4m")}
                fns = {a: (lambda layer=layer: layer(x).backward(g)) for a, layer in layers.items()}
                t = common.time_interleaved(fns, device, rounds=rounds, budget_s=1.0)
                ratio = t["4m"] / t["3m"]
                rows.append({"dtype": str(dtype), "M": M, "K=N": KN, "ms_3m": t["3m"] * 1e3, "ms_4m": t["4m"] * 1e3, "speedup_3m": ratio})
                table.append([str(dtype).split(".")[1], M, KN, f"{t['3m']*1e3:.3f}", f"{t['4m']*1e3:.3f}", f"{ratio:.2f}"])
                common.progress(f"[crossover] {table[-1]}")
    path = common.write_json(os.path.join(out, f"linear-crossover-{device}.json"), "linear-crossover", device, rows)
    common.print_table(["dtype", "M", "K=N", "3m ms", "4m ms", "4m/3m"], table,
                       title=f"CplxLinear 3m vs 4m crossover, fwd+bwd with bias, {device} (JSON: {path})")


if __name__ == "__main__":
    main()
