"""The one-screen verdict of bench/gpu_check.sh: per step ok / failed / skipped, the test counts
from the JUnit XML, and the headline ratios of the CUDA benchmarks (from their JSON, as
bench/report.py reads them).

    python bench/gpu_verdict.py OUTDIR
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402


def steps(out):
    path = os.path.join(out, "steps.tsv")
    rows = []
    for line in open(path) if os.path.exists(path) else []:
        name, rc, seconds = line.rstrip("\n").split("\t")
        timed_out = rc in ("124", "137")
        if rc == "0" or rc.startswith("skipped"):
            status = "ok" if rc == "0" else rc
        elif timed_out and name.startswith("sanitize_"):
            # -x stops at the first error: a run cut by its time limit found none in what it ran.
            status = "partial: timed out, no error in what ran"
        else:
            status = f"FAILED (rc={rc}{', timed out' if timed_out else ''})"
        rows.append((name, status, seconds))
    return rows


def test_counts(out):
    path = os.path.join(out, "tests.xml")
    if not os.path.exists(path):
        return "no JUnit XML (the test step did not finish)"
    suites = ET.parse(path).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    return f"{passed} passed, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped (CUDA cases: -m cuda)"


def main(out):
    print("\n================ GPU CHECK VERDICT ================")
    for line in open(os.path.join(out, "machine.txt")).read().splitlines()[:4] if os.path.exists(os.path.join(out, "machine.txt")) else []:
        print(line)
    rows = steps(out)
    for name, status, seconds in rows:
        print(f"  {name:24s} {status:42s} {seconds:>4s} s")
    print(f"tests: {test_counts(out)}")
    headline = report.summary_rows(out, "cuda")
    for r in headline:
        vs = [f"{k} {r[k + '_ms'] / r['cplxfast_ms']:.2f}x" for k in ("torch", "cplxmodule") if r.get(k + "_ms")]
        bw = f", {100 * r['bandwidth']:.0f}% of copy BW" if r.get("bandwidth") else ""
        print(f"  {r['family']:24s} {r['case'][:40]:40s} {r['cplxfast_ms']:8.3f} ms  faster than: {', '.join(vs) or '-'}{bw}")
    if not headline:
        print("  (no CUDA benchmark results)")
    for family in ("linear", "conv"):  # the --autocast columns: speed-up over cplxfast's float32 auto
        path = os.path.join(out, f"{family}-cuda.json")
        for r in json.load(open(path))["rows"] if os.path.exists(path) else []:
            if "autocast" in r["impl"]:
                print(f"  {family + ' autocast':24s} {r['case'][:28]:28s} {r['impl'][9:]:24s} {r['fwd_bwd_ms']:8.3f} ms"
                      f"  vs fp32 {r['speedup_vs_fp32']:.2f}x, vs torch {r['speedup_vs_torch']:.2f}x")
    failed = [name for name, status, _ in rows if status.startswith("FAILED")]
    print("VERDICT:", "all steps ok" if not failed else "FAILED: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
