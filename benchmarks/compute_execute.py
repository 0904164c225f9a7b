"""End-to-end `cybershuttle compute execute 'true' --resource <slurm> --wait` against
raw `ssh ... sbatch --wait --wrap true`, alternated in the same run.

Needs the loopback cluster (`sudo bash tests/cluster/cluster.sh start`). The
resource is registered in a throwaway CYBERSHUTTLE_HOME. Prints both medians
and ends with `ratio=<cybershuttle/raw>`; the goal is <= 1.3.

    python benchmarks/compute_execute.py [--runs 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import cluster_env  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    c = cluster_env()
    cli = str(Path(sys.executable).parent / "cybershuttle")
    env = {**os.environ, "CYBERSHUTTLE_HOME": tempfile.mkdtemp(prefix="cs-bench-")}
    env.pop("CYBERSHUTTLE_SITE_CATALOG", None)
    register = [cli, "compute", "register", "--name", "bench", "--kind", "slurm", "--host", c["CS_TEST_HOST"],
                "--port", c["CS_TEST_PORT"], "--user", c["CS_TEST_USER"], "--key", c["CS_TEST_KEY"],
                "--known-hosts", c["CS_TEST_KNOWN_HOSTS"], "--partition", c["CS_TEST_SLURM_PARTITION"]]
    subprocess.run(register, env=env, check=True, capture_output=True)
    ours = [cli, "compute", "execute", "true", "--resource", "bench", "--wait"]
    raw = ["ssh", "-i", c["CS_TEST_KEY"], "-p", c["CS_TEST_PORT"], "-o", "BatchMode=yes",
           "-o", f"UserKnownHostsFile={c['CS_TEST_KNOWN_HOSTS']}", "-o", "StrictHostKeyChecking=yes",
           f"{c['CS_TEST_USER']}@{c['CS_TEST_HOST']}", f"sbatch --wait -p {c['CS_TEST_SLURM_PARTITION']} "
           "-o /dev/null --wrap true"]
    timed(ours, env), timed(raw, env)  # warm up: first job after slurmctld start is slow
    ours_t, raw_t = [], []
    for _ in range(runs):
        ours_t.append(timed(ours, env))
        raw_t.append(timed(raw, env))
    o, r = statistics.median(ours_t), statistics.median(raw_t)
    print(f"runs={runs}")
    print(f"cybershuttle compute execute --wait  median={o:.3f} s  min={min(ours_t):.3f} s  max={max(ours_t):.3f} s")
    print(f"ssh ... sbatch --wait --wrap true    median={r:.3f} s  min={min(raw_t):.3f} s  max={max(raw_t):.3f} s")
    print(f"goal: ratio <= 1.3: {'met' if o / r <= 1.3 else 'NOT met'}")
    print(f"ratio={o / r:.2f}")


if __name__ == "__main__":
    main()
