"""`cybershuttle application list --resource <cluster> --kind module --json` (cached catalog, and a
fresh `--refresh` gathering) against the raw `ssh ... bash -lc 'module -t avail'` a user would
type, alternated in the same run.

The raw listing gives names only; ours adds versions, defaults, descriptions, families, conflicts,
the Python packages and registered executables. Needs the loopback cluster
(`sudo bash tests/cluster/cluster.sh start`); the resource is registered in a throwaway
CYBERSHUTTLE_HOME. Ends with `ratio=<raw ssh / cached list>` (> 1: the cache answers faster than
asking the cluster).

    python benchmarks/application_catalog.py [--runs 10]
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
    if proc.returncode or "hello" not in proc.stdout + proc.stderr:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    c = cluster_env()
    cli = str(Path(sys.executable).parent / "cybershuttle")
    env = {**os.environ, "CYBERSHUTTLE_HOME": tempfile.mkdtemp(prefix="cs-bench-")}
    env.pop("CYBERSHUTTLE_SITE_CATALOG", None)
    register = [cli, "compute", "register", "--name", "bench", "--kind", "ssh", "--host", c["CS_TEST_HOST"],
                "--port", c["CS_TEST_PORT"], "--user", c["CS_TEST_USER"], "--key", c["CS_TEST_KEY"],
                "--known-hosts", c["CS_TEST_KNOWN_HOSTS"]]
    subprocess.run(register, env=env, check=True, capture_output=True)
    listing = [cli, "application", "list", "--resource", "bench", "--kind", "module", "--json"]
    raw = ["ssh", "-i", c["CS_TEST_KEY"], "-p", c["CS_TEST_PORT"], "-o", "BatchMode=yes",
           "-o", f"UserKnownHostsFile={c['CS_TEST_KNOWN_HOSTS']}", "-o", "StrictHostKeyChecking=yes",
           f"{c['CS_TEST_USER']}@{c['CS_TEST_HOST']}", "bash -lc 'module -t avail'"]
    timed(listing + ["--refresh"], env), timed(raw, env)  # warm up (and fill the cache)
    cached_t, fresh_t, raw_t = [], [], []
    for _ in range(runs):
        cached_t.append(timed(listing, env))
        fresh_t.append(timed(listing + ["--refresh"], env))
        raw_t.append(timed(raw, env))
    cached, fresh, r = statistics.median(cached_t), statistics.median(fresh_t), statistics.median(raw_t)
    print(f"runs={runs}")
    print(f"application list (cached)            median={cached:.3f} s  min={min(cached_t):.3f} s")
    print(f"application list --refresh (gather)  median={fresh:.3f} s  min={min(fresh_t):.3f} s")
    print(f"ssh ... bash -lc 'module -t avail'   median={r:.3f} s  min={min(raw_t):.3f} s")
    print(f"fresh gathering / raw listing: {fresh / r:.2f}")
    print(f"ratio={r / cached:.2f}")


if __name__ == "__main__":
    main()
