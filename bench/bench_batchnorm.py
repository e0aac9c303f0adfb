"""Complex batch norm (2x2 whitening), complex64: training fwd+bwd and eval forward, side by side:
cplxfast, cplxmodule's CplxBatchNorm2d, and a real BatchNorm2d(2C) over the same bytes. Also the
achieved fraction of the measured copy bandwidth.

    python bench/bench_batchnorm.py [--quick] [--device cpu|cuda] [--out DIR]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

from cplxfast import _reference as ref  # noqa: E402
from cplxfast.nn import CplxBatchNorm2d  # noqa: E402

FULL_CASES = [(32, 64, 32, 32), (16, 128, 56, 56)]
QUICK_CASES = [(8, 16, 16, 16)]


def build(shape, device):
    B, C, H, W = shape
    torch.manual_seed(0)
    z = torch.randn(*shape, dtype=torch.complex64, device=device) * 2 + (0.5 + 0.3j)
    g = torch.randn_like(z)
    ours = CplxBatchNorm2d(C).to(device)
    with torch.no_grad():
        ours.weight.add_(0.1 * torch.randn_like(ours.weight))
        ours.bias.normal_()
    zg = z.clone().requires_grad_()
    train, evals, outs = {}, {}, {}
    train["cplxfast"] = lambda: ours.train()(zg).backward(g)
    evals["cplxfast"] = lambda: ours.eval()(z)
    outs["cplxfast"] = lambda: ours.train()(z)
    if common.have_cplxmodule():
        from cplxmodule import Cplx
        from cplxmodule.nn import CplxBatchNorm2d as Theirs

        theirs = Theirs(C).to(device)
        theirs.load_state_dict(ours.state_dict())
        xc = Cplx(z.real.clone().requires_grad_(), z.imag.clone().requires_grad_())
        Xc = Cplx(z.real.contiguous(), z.imag.contiguous())

        def theirs_train():
            y = theirs.train()(xc)
            torch.autograd.backward([y.real, y.imag], [g.real, g.imag])

        def theirs_out():
            y = theirs.train()(Xc)
            return torch.complex(y.real, y.imag)
        train["cplxmodule"] = theirs_train
        evals["cplxmodule"] = lambda: theirs.eval()(Xc)
        outs["cplxmodule"] = theirs_out
    real = torch.nn.BatchNorm2d(2 * C).to(device)
    xr = torch.randn(B, 2 * C, H, W, device=device, requires_grad=True)
    gr = torch.randn_like(xr)
    train["real BatchNorm2d(2C)"] = lambda: real.train()(xr).backward(gr)
    evals["real BatchNorm2d(2C)"] = lambda: real.eval()(xr.detach())
    return z, ours, train, evals, outs


def kernel_rows(shape, device, rounds):
    """The training batch_norm and batch_norm_backward ops alone, both layouts, against a copy of
    the same bytes: forward reads z twice and writes out (24 B per complex64), backward reads z
    and g twice and writes grad_z (40 B)."""
    rows = []
    C = shape[1]
    weight = torch.eye(2, device=device).unsqueeze(-1).repeat(1, 1, C).contiguous()
    bias = torch.zeros(2, C, device=device)
    for layout, fmt in common.LAYOUTS.items():
        torch.manual_seed(0)
        z = (torch.randn(*shape, dtype=torch.complex64, device=device) * 2 + (0.5 + 0.3j)).contiguous(memory_format=fmt)
        g = torch.randn_like(z)
        _, mean, cov = torch.ops.cplxfast.batch_norm(z, weight, bias, None, None, True, 1e-5)
        n = z.numel()
        t = common.kernel_bandwidth(z, {
            "fwd": (lambda: torch.ops.cplxfast.batch_norm(z, weight, bias, None, None, True, 1e-5), 24 * n),
            "bwd": (lambda: torch.ops.cplxfast.batch_norm_backward(g, z, weight, mean, cov, True, [True, True, True]),
                    40 * n),
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
        bandwidth = common.copy_bandwidth(device)
        for shape in cases:
            common.progress(f"[bench_batchnorm] {device} {shape} ...")
            z, ours, train, evals, outs = build(shape, device)
            with torch.no_grad():
                w, b = ours.weight.detach(), ours.bias.detach()
            want = ref.batch_norm(z, w, b)[0]
            with torch.no_grad():
                errors = {n: ((o().to(torch.complex128) - want).norm() / want.norm()).item() for n, o in outs.items()}
                t_eval = common.time_interleaved(evals, device, rounds=rounds)
            t_train = common.time_interleaved(train, device, rounds=rounds)
            # Bytes the fused kernels must move, complex64 (8 B per element): training forward
            # reads z twice and writes out; backward reads z and g twice and writes grad_z.
            nbytes = 8 * z.numel() * (3 + 5)
            real_train, real_eval = t_train["real BatchNorm2d(2C)"], t_eval["real BatchNorm2d(2C)"]
            for name in t_train:
                row = {
                    "case": "x".join(map(str, shape)), "impl": name, "train_fwd_bwd_ms": t_train[name] * 1e3,
                    **common.spread_fields("train_fwd_bwd", t_train[name]),
                    "eval_fwd_ms": t_eval[name] * 1e3, "train_vs_real": t_train[name] / real_train,
                    "eval_vs_real": t_eval[name] / real_eval,
                    "speedup_vs_cplxmodule": t_train["cplxmodule"] / t_train[name] if "cplxmodule" in t_train else None,
                    "fraction_of_copy_bandwidth": nbytes / t_train[name] / bandwidth if name == "cplxfast" else None,
                    "rel_err_vs_fp64": errors.get(name),
                }
                rows.append(row)
                table.append([
                    row["case"], name, f"{row['train_fwd_bwd_ms']:.2f}",
                    common.spread_ms(t_train[name]), f"{row['train_vs_real']:.2f}",
                    f"{row['eval_fwd_ms']:.2f}", f"{row['eval_vs_real']:.2f}",
                    "-" if row["speedup_vs_cplxmodule"] is None else f"{row['speedup_vs_cplxmodule']:.1f}x",
                    "-" if row["fraction_of_copy_bandwidth"] is None else f"{100 * row['fraction_of_copy_bandwidth']:.0f}%",
                    "-" if row["rel_err_vs_fp64"] is None else f"{row['rel_err_vs_fp64']:.1e}",
                ])
        kernels = [r for shape in cases for r in kernel_rows(shape, device, rounds)]
        path = common.write_json(os.path.join(args.out, f"batchnorm-{device}.json"), "batchnorm", device,
                                 rows + kernels)
        if not common.have_cplxmodule():
            print("(cplxmodule not installed: its column is left out)")
        common.print_table(
            ["case", "impl", "train fwd+bwd ms", "min - max", "/ real BN", "eval fwd ms", "/ real BN", "vs cplxmodule", "of copy BW", "rel err"],
            table, title=f"complex batch norm 2d, complex64, {device}: {common.machine(device)} (medians; JSON: {path})",
        )
        common.print_kernel_table(kernels, f"training batch_norm / batch_norm_backward ops alone against a copy of the "
                                           f"same bytes, complex64, {device} (medians)")


if __name__ == "__main__":
    main()
