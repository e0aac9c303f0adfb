"""The benchmarks still run (smoke sizes): `make bench` must not rot. Nothing here is timed."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("script,title", [
    ("bench_linear.py", "linear, complex64, cpu"),
    ("bench_conv.py", "conv, complex64, cpu"),
    ("bench_modrelu.py", "adaptive modReLU"),
    ("bench_batchnorm.py", "complex batch norm 2d"),
    ("bench_e2e.py", "end to end training"),
    ("bench_sizes.py", "cost against size"),
])
def test_bench_script_runs_quick(tmp_path, script, title):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", script), "--quick", "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert title in result.stdout and "cplxfast" in result.stdout
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_e2e_loss_curves_agree(tmp_path):
    """The two implementations train the same model on the same batches: their losses agree."""
    import json

    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_e2e.py"), "--quick", "--device", "cpu",
                    "--out", str(tmp_path)], check=True, capture_output=True, timeout=600, cwd=ROOT)
    rows = json.load(open(tmp_path / "e2e-cpu.json"))["rows"]
    losses = {r["impl"]: r["losses"] for r in rows}
    assert len(losses["cplxfast"]) == len(losses["cplxmodule"]) == 4
    for a, b in zip(losses["cplxfast"], losses["cplxmodule"]):
        assert abs(a - b) <= 0.02 * abs(b)
    assert (tmp_path / "e2e-cpu.png").exists()


def test_make_bench_quick_prints_the_summary_and_plots(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run_all.py"), "--quick", "--device", "cpu",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SUMMARY, fwd+bwd, complex64, cpu" in result.stdout
    for family in ("linear", "conv", "modReLU", "batch norm (train)", "end to end (train step)"):
        assert family in result.stdout
    assert (tmp_path / "overhead-cpu.png").exists() and (tmp_path / "sizes-cpu.png").exists()
