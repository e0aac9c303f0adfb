"""Shared benchmark machinery: interleaved timing with medians, result tables and JSON.

Implementations of one case are timed round-robin in the same process (A B C A B C ...), so
drift on a shared machine hits them alike; each reports the median of its rounds.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch


def arg_parser(doc):
    """The options every bench script takes: --quick, --device (repeatable), --rounds, --out."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, few rounds (a smoke run)")
    p.add_argument("--device", choices=["cpu", "cuda"], action="append", help="default: every device present")
    p.add_argument("--rounds", type=int, help="timing rounds per case (default: fill a time budget)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"),
                   help="folder for the JSON results")
    return p


def autocast_dtypes(device):
    """The --autocast columns' dtypes: bf16 everywhere, fp16 on CUDA too (CPUs have no fp16 GEMM units)."""
    return [torch.bfloat16] + ([torch.float16] if device == "cuda" else [])


def under_autocast(layer, device, dtype):
    """layer's call inside torch.autocast(device, dtype)."""
    def run(*args):
        with torch.autocast(device, dtype=dtype):
            return layer(*args)
    return run


def autocast_name(dtype):
    return f"autocast {str(dtype).split('.')[1]}"


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns, device, rounds=None, warmup=3, budget_s=2.0, max_rounds=300):
    """Median seconds per call (a Timing: also its min and max) for each of fns (dict name ->
    zero-arg callable), interleaved.

    rounds=None: as many rounds as fit in about budget_s (at least 11, at most max_rounds), so
    small cases get enough samples for a stable median.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    if rounds is None:
        t0 = time.perf_counter()
        for fn in fns.values():
            fn()
        sync(device)
        per_round = max(time.perf_counter() - t0, 1e-9)
        rounds = int(min(max(budget_s / per_round, 11), max_rounds))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            samples[name].append(time.perf_counter() - t0)
    return {name: Timing(s) for name, s in samples.items()}


class Timing(float):
    """The median of a set of timings (seconds), carrying their min and max: the tables report the
    spread, since one step on these shared machines can vary 2x within a process."""

    def __new__(cls, samples):
        t = super().__new__(cls, statistics.median(samples))
        t.min, t.max = min(samples), max(samples)
        return t


def spread_ms(t):
    """'min - max' in ms of a Timing, for a table cell."""
    return f"{t.min * 1e3:.2f} - {t.max * 1e3:.2f}"


def spread_fields(prefix, t):
    """JSON fields <prefix>_min_ms and <prefix>_max_ms of a Timing."""
    return {f"{prefix}_min_ms": t.min * 1e3, f"{prefix}_max_ms": t.max * 1e3}


def copy_bandwidth(device, nbytes=256 << 20):
    """Bytes per second of a large device-to-device copy (read + write counted), median; large
    enough to measure memory, not cache."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = time_interleaved({"copy": lambda: dst.copy_(src)}, device, budget_s=1.0)["copy"]
    return 2 * nbytes / t


LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def kernel_bandwidth(z, kernels, device, rounds=None):
    """The memory-bound kernels alone against a copy of z into a preallocated tensor, interleaved:
    {name: (Timing, fraction of the copy's bandwidth)} for kernels {name: (fn, bytes it must
    move)}. Each kernel writes a fresh output, so with glibc's default allocator that output may be
    page-faulted again on every call (README, "Known limits"); run with MALLOC_MMAP_THRESHOLD_ and
    MALLOC_TRIM_THRESHOLD_ raised to see the kernels without the faults."""
    dst = torch.empty_like(z)
    fns = {"copy": lambda: dst.copy_(z), **{name: fn for name, (fn, _) in kernels.items()}}
    t = time_interleaved(fns, device, rounds=rounds)
    copy_rate = 2 * z.numel() * z.element_size() / t["copy"]
    return {name: (t[name], nbytes / t[name] / copy_rate) for name, (_, nbytes) in kernels.items()}


def print_kernel_table(rows, title):
    """The rows of kernel_bandwidth runs: case, layout, forward and backward ms and fractions."""
    print_table(
        ["case", "layout", "fwd ms", "fwd of copy BW", "bwd ms", "bwd of copy BW", "bwd / fwd"],
        [[r["case"], r["layout"], f"{r['fwd_ms']:.2f}", f"{100 * r['fwd_of_copy_bw']:.0f}%", f"{r['bwd_ms']:.2f}",
          f"{100 * r['bwd_of_copy_bw']:.0f}%", f"{r['bwd_ms'] / r['fwd_ms']:.2f}"] for r in rows],
        title=title)


def kernel_row(case, layout, t):
    """A JSON row of kernel_bandwidth's result for kernels "fwd" and "bwd"."""
    return {"case": case, "impl": "cplxfast ops", "layout": layout, "section": "kernels alone",
            "fwd_ms": t["fwd"][0] * 1e3, **spread_fields("fwd", t["fwd"][0]), "fwd_of_copy_bw": t["fwd"][1],
            "bwd_ms": t["bwd"][0] * 1e3, **spread_fields("bwd", t["bwd"][0]), "bwd_of_copy_bw": t["bwd"][1]}


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


def commit():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True, stderr=subprocess.DEVNULL).strip()
    except Exception:
        return "unknown"


def machine(device):
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def write_json(path, family, device, rows):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    doc = {
        "family": family, "device": device, "machine": machine(device), "torch": torch.__version__,
        "cuda": torch.version.cuda, "commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return path


def print_table(headers, rows, title=None):
    if title:
        print(f"\n{title}")
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = " | ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def have(name):
    """Whether the optional library ``name`` (cplxmodule, torchcvnn, complextorch) is installed."""
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def have_cplxmodule():
    return have("cplxmodule")


def devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
