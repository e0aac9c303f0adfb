"""Complex convolution, fwd and fwd+bwd, side by side: cplxfast (auto/3m/4m), torch native complex
nn.ConvNd(dtype=cfloat) and cplxfast's drop-in for it (cplxfast.nn.ConvNd, complex Parameters), cplxmodule's CplxConvNd, and a real nn.ConvNd of the same channels.

    python bench/bench_conv.py [--quick] [--device cpu|cuda] [--autocast] [--out DIR]

Cases: a dense 3x3 conv2d, depthwise 3x3 conv2d (MobileNet), depthwise and dense conv1d as in 1-D
signal models. For depthwise layers "auto" and "4m" run the fused direct kernel, "3m" the grouped 3M path.
--autocast adds CplxConvNd "auto" under torch.autocast (bf16; fp16 on CUDA too), with its speed-up
over cplxfast's float32 "auto" in the "vs fp32" column (depthwise layers stay float32 under autocast).
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

import cplxfast  # noqa: E402,F401
from cplxfast import _reference as ref  # noqa: E402
from cplxfast import nn as cnn  # noqa: E402

# (name, dims, batch, channels in, channels out, spatial size, kernel, padding, groups)
FULL_CASES = [
    ("conv2d 16x64x32x32 64->64 k3", 2, 16, 64, 64, (32, 32), 3, 1, 1),
    ("depthwise2d 16x128x56x56 k3", 2, 16, 128, 128, (56, 56), 3, 1, 128),
    ("depthwise1d 64x64x1024 k9", 1, 64, 64, 64, (1024,), 9, 4, 64),
    ("conv1d 64x64x1024 64->64 k7", 1, 64, 64, 64, (1024,), 7, 3, 1),
    ("pointwise1d 64x128x256 128->32 k1", 1, 64, 128, 32, (256,), 1, 0, 1),  # bench_e2e's projection
]
QUICK_CASES = [
    ("conv2d 4x16x16x16 16->16 k3", 2, 4, 16, 16, (16, 16), 3, 1, 1),
    ("depthwise2d 4x32x16x16 k3", 2, 4, 32, 32, (16, 16), 3, 1, 32),
    ("conv1d 8x16x256 16->16 k7", 1, 8, 16, 16, (256,), 7, 3, 1),
    ("pointwise1d 8x32x64 32->16 k1", 1, 8, 32, 16, (64,), 1, 0, 1),
]


def build_impls(dims, B, Cin, Cout, size, k, pad, groups, device, autocast=False):
    """name -> (fwd callable, fwd+bwd callable, output for the correctness check)."""
    torch.manual_seed(0)
    W = torch.randn(Cout, Cin // groups, *(k,) * dims, dtype=torch.complex64) / math.sqrt(Cin // groups * k ** dims)
    b = torch.randn(Cout, dtype=torch.complex64) * 0.1
    X = torch.randn(B, Cin, *size, dtype=torch.complex64, device=device)
    out_shape = (B, Cout, *size)  # stride 1, "same"-sized padding
    G = torch.randn(*out_shape, dtype=torch.complex64, device=device)
    impls = {}

    def complex_layer(layer):
        x = X.clone().requires_grad_()

        def fwd_bwd():
            layer(x).backward(G)
        return (lambda: layer(X)), fwd_bwd, (lambda: layer(X))

    ours = (cnn.CplxConv1d, cnn.CplxConv2d, cnn.CplxConv3d)[dims - 1]
    for algo in ("auto", "3m", "4m"):
        layer = ours(Cin, Cout, k, padding=pad, groups=groups, algorithm=algo).to(device)
        with torch.no_grad():
            layer.weight.real.copy_(W.real), layer.weight.imag.copy_(W.imag)
            layer.bias.real.copy_(b.real), layer.bias.imag.copy_(b.imag)
        impls[f"cplxfast {algo}"] = complex_layer(layer)
        if autocast and algo == "auto":
            for dtype in common.autocast_dtypes(device):
                impls[f"cplxfast auto {common.autocast_name(dtype)}"] = complex_layer(
                    common.under_autocast(layer, device, dtype))

    torch_conv = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[dims - 1]
    native = torch_conv(Cin, Cout, k, padding=pad, groups=groups, dtype=torch.complex64, device=device)
    with torch.no_grad():
        native.weight.copy_(W), native.bias.copy_(b)
    impls["torch complex"] = complex_layer(native)
    # The same layer with torch's complex Parameters on cplxfast's conv_complex (what convert() makes of it).
    native_ours = (cnn.Conv1d, cnn.Conv2d, cnn.Conv3d)[dims - 1](Cin, Cout, k, padding=pad, groups=groups,
                                                                dtype=torch.complex64, device=device)
    native_ours.load_state_dict(native.state_dict())
    impls["cplxfast nn.Conv"] = complex_layer(native_ours)

    if common.have_cplxmodule():
        from cplxmodule import Cplx
        from cplxmodule import nn as theirs_nn

        theirs = getattr(theirs_nn, f"CplxConv{dims}d")(Cin, Cout, k, padding=pad, groups=groups).to(device)
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

    real = torch_conv(Cin, Cout, k, padding=pad, groups=groups, device=device)
    xr = torch.randn(B, Cin, *size, device=device, requires_grad=True)
    gr = torch.randn(*out_shape, device=device)
    impls["real, same channels"] = ((lambda: real(xr.detach())), (lambda: real(xr).backward(gr)), None)
    return impls, (X, W.to(device), b.to(device), pad, groups)


def run_case(case, device, rounds, autocast=False):
    _, dims, B, Cin, Cout, size, k, pad, groups = case
    impls, (X, W, b, pad, groups) = build_impls(dims, B, Cin, Cout, size, k, pad, groups, device, autocast)
    want = ref.conv(X, W, b, 1, pad, 1, groups)
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
    p.add_argument("--autocast", action="store_true", help="add CplxConvNd under torch.autocast (bf16, fp16)")
    args = p.parse_args(argv)
    cases = QUICK_CASES if args.quick else FULL_CASES
    rounds = args.rounds or (3 if args.quick else None)
    for device in args.device or common.devices():
        rows, table = [], []
        for case in cases:
            common.progress(f"[bench_conv] {device} {case[0]} ...")
            fwd, both, errors = run_case(case, device, rounds, args.autocast)
            real = both["real, same channels"]
            for name in both:
                row = {
                    "case": case[0], "impl": name, "fwd_ms": fwd[name] * 1e3, "fwd_bwd_ms": both[name] * 1e3,
                    **common.spread_fields("fwd_bwd", both[name]),
                    "bwd_ms": (both[name] - fwd[name]) * 1e3,
                    "overhead_vs_real": both[name] / real, "speedup_vs_torch": both["torch complex"] / both[name],
                    "speedup_vs_fp32": both["cplxfast auto"] / both[name],
                    "speedup_vs_cplxmodule": both["cplxmodule"] / both[name] if "cplxmodule" in both else None,
                    "rel_err_vs_fp64": errors.get(name),
                }
                rows.append(row)
                table.append([
                    row["case"], name, f"{row['fwd_ms']:.2f}", f"{row['bwd_ms']:.2f}", f"{row['fwd_bwd_ms']:.2f}",
                    common.spread_ms(both[name]),
                    f"{row['overhead_vs_real']:.2f}", f"{row['speedup_vs_torch']:.2f}x", f"{row['speedup_vs_fp32']:.2f}x",
                    "-" if row["speedup_vs_cplxmodule"] is None else f"{row['speedup_vs_cplxmodule']:.2f}x",
                    "-" if row["rel_err_vs_fp64"] is None else f"{row['rel_err_vs_fp64']:.1e}",
                ])
        path = common.write_json(os.path.join(args.out, f"conv-{device}.json"), "conv", device, rows)
        if not common.have_cplxmodule():
            print("(cplxmodule not installed: its column is left out)")
        common.print_table(
            ["case", "impl", "fwd ms", "bwd ms (both - fwd)", "fwd+bwd ms", "min - max", "overhead (/real)", "vs torch",
             "vs fp32", "vs cplxmodule", "rel err"],
            table, title=f"conv, complex64, {device}: {common.machine(device)} (medians; JSON: {path})",
        )


if __name__ == "__main__":
    main()
