"""modReLU (adaptive, per-channel threshold), fwd and fwd+bwd, side by side: cplxfast, the same
formula in native torch complex ops, cplxmodule's CplxAdaptiveModReLU, and a real ReLU over the
same bytes. Also the achieved fraction of the measured copy bandwidth.

    python bench/bench_modrelu.py [--quick] [--device cpu|cuda] [--out DIR]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

from cplxfast import _reference as ref  # noqa: E402
from cplxfast.nn import CplxAdaptiveModReLU  # noqa: E402
from torch_twins import modrelu as torch_composite  # noqa: E402

FULL_CASES = [(32, 64, 32, 32), (16, 128, 56, 56)]
QUICK_CASES = [(8, 16, 16, 16)]


def build_impls(shape, device):
    B, C, H, W = shape
    torch.manual_seed(0)
    z = torch.randn(*shape, dtype=torch.complex64, device=device)
    g = torch.randn_like(z)
    layer = CplxAdaptiveModReLU(C, 1, 1).to(device)
    with torch.no_grad():
        layer.threshold.copy_(0.5 * torch.rand(C, 1, 1))
    tau = layer.threshold.detach().clone()
    impls = {}
    zg = z.clone().requires_grad_()
    impls["cplxfast"] = ((lambda: layer(z)), (lambda: layer(zg).backward(g)), (lambda: layer(z)))
    tau_t = tau.clone().requires_grad_()
    impls["torch complex ops"] = ((lambda: torch_composite(z, tau_t)), (lambda: torch_composite(zg, tau_t).backward(g)),
                                  (lambda: torch_composite(z, tau_t)))
    if common.have_cplxmodule():
        from cplxmodule import Cplx
        from cplxmodule.nn import CplxAdaptiveModReLU as Theirs

        theirs = Theirs(C, 1, 1).to(device)
        with torch.no_grad():
            theirs.threshold.copy_(tau)
        xc = Cplx(z.real.clone().requires_grad_(), z.imag.clone().requires_grad_())
        Xc = Cplx(z.real.contiguous(), z.imag.contiguous())

        def theirs_fwd_bwd():
            y = theirs(xc)
            torch.autograd.backward([y.real, y.imag], [g.real, g.imag])

        def theirs_out():
            y = theirs(Xc)
            return torch.complex(y.real, y.imag)
        impls["cplxmodule"] = ((lambda: theirs(Xc)), theirs_fwd_bwd, theirs_out)
    xr = torch.randn(2 * z.numel(), device=device, requires_grad=True)  # same bytes, real
    gr = torch.randn_like(xr)
    impls["real ReLU (same bytes)"] = ((lambda: torch.relu(xr.detach())), (lambda: torch.relu(xr).backward(gr)), None)
    return impls, z, tau


def kernel_rows(shape, device, rounds):
    """The modrelu and modrelu_backward ops alone (per-channel thresholds), both layouts, against a
    copy of the same bytes: forward reads z and writes out (16 B per complex64), backward reads z
    and g and writes grad_z (24 B)."""
    rows = []
    torch.manual_seed(0)
    tau = 0.5 * torch.rand(shape[1], 1, 1, device=device)
    for layout, fmt in common.LAYOUTS.items():
        z = torch.randn(*shape, dtype=torch.complex64, device=device).contiguous(memory_format=fmt)
        g = torch.randn_like(z)
        n = z.numel()
        t = common.kernel_bandwidth(z, {
            "fwd": (lambda: torch.ops.cplxfast.modrelu(z, tau, 1e-5), 16 * n),
            "bwd": (lambda: torch.ops.cplxfast.modrelu_backward(g, z, tau, [True, True], 1e-5), 24 * n),
        }, device, rounds)
        rows.append(common.kernel_row("x".join(map(str, shape)), layout, t))
    return rows


def main(argv=None):
    p = common.arg_parser(__doc__)
    args = p.parse_args(argv)
    cases = QUICK_CASES if args.quick else FULL_CASES
    rounds = args.rounds or (3 if args.quick else None)
    for device in args.device or common.devices():
        rows, table = [], []
        for shape in cases:
            common.progress(f"[bench_modrelu] {device} {shape} ...")
            impls, z, tau = build_impls(shape, device)
            want = ref.modrelu(z, tau)
            errors = {n: ((o().to(torch.complex128) - want).norm() / want.norm()).item()
                      for n, (_, _, o) in impls.items() if o is not None}
            with torch.no_grad():
                fwd = common.time_interleaved({n: f for n, (f, _, _) in impls.items()}, device, rounds=rounds)
            both = common.time_interleaved({n: fb for n, (_, fb, _) in impls.items()}, device, rounds=rounds)
            # The bytes the fused kernels must move: forward reads z, writes out (16 B per
            # complex64); backward reads z and g, writes grad_z (24 B).
            nbytes = 40 * z.numel()
            bandwidth = common.copy_bandwidth(device)
            relu = both["real ReLU (same bytes)"]
            for name in both:
                row = {
                    "case": "x".join(map(str, shape)), "impl": name, "fwd_ms": fwd[name] * 1e3,
                    "fwd_bwd_ms": both[name] * 1e3, **common.spread_fields("fwd_bwd", both[name]),
                    "bwd_ms": (both[name] - fwd[name]) * 1e3, "vs_real_relu": both[name] / relu,
                    "speedup_vs_cplxmodule": both["cplxmodule"] / both[name] if "cplxmodule" in both else None,
                    "fraction_of_copy_bandwidth": nbytes / both[name] / bandwidth if name == "cplxfast" else None,
                    "rel_err_vs_fp64": errors.get(name),
                }
                rows.append(row)
                table.append([
                    row["case"], name, f"{row['fwd_ms']:.2f}", f"{row['bwd_ms']:.2f}", f"{row['fwd_bwd_ms']:.2f}",
                    common.spread_ms(both[name]), f"{row['vs_real_relu']:.2f}",
                    "-" if row["speedup_vs_cplxmodule"] is None else f"{row['speedup_vs_cplxmodule']:.1f}x",
                    "-" if row["fraction_of_copy_bandwidth"] is None else f"{100 * row['fraction_of_copy_bandwidth']:.0f}%",
                    "-" if row["rel_err_vs_fp64"] is None else f"{row['rel_err_vs_fp64']:.1e}",
                ])
            common.progress(f"[bench_modrelu] copy bandwidth {bandwidth / 1e9:.1f} GB/s")
        kernels = [r for shape in cases for r in kernel_rows(shape, device, rounds)]
        path = common.write_json(os.path.join(args.out, f"modrelu-{device}.json"), "modrelu", device, rows + kernels)
        if not common.have_cplxmodule():
            print("(cplxmodule not installed: its column is left out)")
        common.print_table(
            ["case", "impl", "fwd ms", "bwd ms (both - fwd)", "fwd+bwd ms", "min - max", "/ real ReLU", "vs cplxmodule", "of copy BW", "rel err"], table,
            title=f"adaptive modReLU (per-channel threshold), complex64, {device}: {common.machine(device)} (medians; JSON: {path})",
        )
        common.print_kernel_table(kernels, f"modrelu / modrelu_backward ops alone against a copy of the same bytes, "
                                           f"complex64, {device} (medians)")


if __name__ == "__main__":
    main()
