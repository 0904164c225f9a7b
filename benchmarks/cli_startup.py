"""How fast `cybershuttle --help` starts, beside a bare `python -c pass`.

Both are run alternately in the same run so machine noise hits both alike.
Prints the medians and ends with `ratio=<cli/python>`; the goal is an absolute
median under 150 ms (the ratio shows how much of it is ours).

    python benchmarks/cli_startup.py [--runs 30]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    cli = shutil.which("cybershuttle", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if cli is None:
        sys.exit("cybershuttle is not installed in this environment: run `make install` first")
    baseline_cmd = [sys.executable, "-c", "pass"]
    cli_cmd = [cli, "--help"]
    timed(cli_cmd), timed(baseline_cmd)  # warm the page cache
    cli_times, base_times = [], []
    for _ in range(runs):
        cli_times.append(timed(cli_cmd))
        base_times.append(timed(baseline_cmd))
    cli_ms = statistics.median(cli_times) * 1000
    base_ms = statistics.median(base_times) * 1000
    print(f"runs={runs}")
    print(f"cybershuttle --help  median={cli_ms:.1f} ms  p90={sorted(cli_times)[int(runs * 0.9) - 1] * 1000:.1f} ms")
    print(f"python -c pass       median={base_ms:.1f} ms")
    print(f"goal: cybershuttle --help under 150 ms: {'met' if cli_ms < 150 else 'NOT met'}")
    print(f"ratio={cli_ms / base_ms:.2f}")


if __name__ == "__main__":
    main()
