"""`make bench`: every benchmark family on every device present, then the one summary table and
the plots (bench/report.py). --quick: CI smoke sizes, well under a minute."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILIES = ["bench_linear.py", "bench_conv.py", "bench_modrelu.py", "bench_batchnorm.py", "bench_e2e.py",
            "bench_sparsification.py", "bench_sizes.py"]


def main():
    args = sys.argv[1:]
    status = 0
    for script in FAMILIES + ["report.py"]:
        print(f"== {script} {' '.join(args)}", file=sys.stderr, flush=True)
        status |= subprocess.call([sys.executable, os.path.join(HERE, script), *args])
    sys.exit(status)


if __name__ == "__main__":
    main()
