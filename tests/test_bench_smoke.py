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
    ("bench_sparsification.py", "sparsification pipeline"),
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


@pytest.mark.parametrize("script,row", [("bench_linear.py", "cplxfast auto autocast bfloat16"),
                                        ("bench_conv.py", "cplxfast auto autocast bfloat16")])
def test_bench_autocast_column(tmp_path, script, row):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", script), "--quick", "--autocast", "--device", "cpu",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert row in result.stdout and "vs fp32" in result.stdout


@pytest.fixture(scope="module")
def e2e_losses(tmp_path_factory):
    """Loss curves per implementation of one quick bench_e2e run (same model, same batches)."""
    import json

    out = tmp_path_factory.mktemp("e2e")
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_e2e.py"), "--quick", "--autocast", "--device",
                    "cpu", "--out", str(out)], check=True, capture_output=True, timeout=600, cwd=ROOT)
    assert (out / "e2e-cpu.png").exists()
    return {r["impl"]: r["losses"] for r in json.load(open(out / "e2e-cpu.json"))["rows"]}


def assert_curves_agree(losses, other, ours="cplxfast", tolerance=0.02):
    """Same weights, same batches, 4 Adam steps: fp32 rounding differences (another summation order
    in the fused kernels) grow through Adam's normalised steps, but stay far below 2% in 4 steps."""
    assert len(losses[ours]) == len(losses[other]) == 4
    for a, b in zip(losses[ours], losses[other]):
        assert abs(a - b) <= tolerance * abs(b)


def test_e2e_loss_curve_under_autocast_follows_float32(e2e_losses):
    """bf16 operands (u = 2^-8) instead of fp32 rounding: measured 0.5% apart over the 4 quick steps
    (and see bench/RESULTS.md for the 40-step run); held to 3%."""
    assert e2e_losses["cplxfast autocast bfloat16"] != e2e_losses["cplxfast"]
    assert_curves_agree(e2e_losses, "cplxfast", ours="cplxfast autocast bfloat16", tolerance=0.03)


def test_e2e_loss_curves_agree_with_torch_native_complex(e2e_losses):
    assert_curves_agree(e2e_losses, "torch complex")


@pytest.mark.cplxmodule
def test_e2e_loss_curves_agree_with_cplxmodule(e2e_losses):
    assert_curves_agree(e2e_losses, "cplxmodule")


@pytest.mark.parametrize("library", [pytest.param("torchcvnn", marks=pytest.mark.torchcvnn),
                                     pytest.param("complextorch", marks=pytest.mark.complextorch)])
def test_e2e_library_models_converted_train_as_written(e2e_losses, library):
    """The model written with torch's complex layers + torchcvnn's (or complextorch's), converted by
    convert(), trains as the model as written does."""
    name = f"torch complex + {library}"
    assert_curves_agree(e2e_losses, name, ours=f"{name}, convert()")


def test_make_bench_quick_prints_the_summary_and_plots(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run_all.py"), "--quick", "--device", "cpu",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SUMMARY, fwd+bwd, complex64, cpu" in result.stdout
    for family in ("linear", "conv", "modReLU", "batch norm (train)", "end to end (train step)", "ARD phase"):
        assert family in result.stdout
    assert (tmp_path / "overhead-cpu.png").exists() and (tmp_path / "sizes-cpu.png").exists()
