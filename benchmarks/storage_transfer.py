"""`storage cp` of a 512 MiB file over the loopback sftp, get and put, against OpenSSH
`scp` with the same key and known_hosts, alternated in the same run.

Needs the loopback cluster (`sudo bash tests/cluster/cluster.sh start`). A storage
`bench` on the registered resource is made in a throwaway CYBERSHUTTLE_HOME. Ours is
`cybershuttle.storage.copy` (what `storage cp` runs, without the CLI's interpreter
start-up); `--cli` times the `cybershuttle storage cp` command instead. Prints the
medians and ends with `ratio=<min of the get and put throughput ratios, ours/scp>`;
the goal is >= 0.8.

    python benchmarks/storage_transfer.py [--runs 3] [--mib 512] [--cli]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import isolated_home, register_cluster


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--cli", action="store_true", help="time the `cybershuttle storage cp` command")
    args = parser.parse_args()
    env = isolated_home()
    c = register_cluster()
    from cybershuttle import ssh, storage

    remote_dir = f"cs-bench-transfer-{uuid.uuid4().hex[:8]}"
    endpoint = ssh.Endpoint(c["CS_TEST_HOST"], int(c["CS_TEST_PORT"]), c["CS_TEST_USER"], c["CS_TEST_KEY"],
                            c["CS_TEST_KNOWN_HOSTS"])
    conn = ssh.connect(endpoint)
    conn.run(f"mkdir -p {remote_dir}")
    storage.register("bench", f"~/{remote_dir}", resource="bench-ssh")
    work = Path(tempfile.mkdtemp(prefix="cs-bench-transfer-"))
    src = work / "src.bin"
    with src.open("wb") as f:
        for _ in range(args.mib):
            f.write(os.urandom(1 << 20))
    size = src.stat().st_size
    scp = ["scp", "-q", "-P", c["CS_TEST_PORT"], "-i", c["CS_TEST_KEY"], "-o", "IdentitiesOnly=yes",
           "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={c['CS_TEST_KNOWN_HOSTS']}"]
    login = f"{c['CS_TEST_USER']}@{c['CS_TEST_HOST']}"
    cli = str(Path(sys.executable).parent / "cybershuttle")

    def run(cmd: list[str]) -> None:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")

    def clean() -> None:
        conn.run(f"rm -f {remote_dir}/*")
        for p in work.glob("got*"):
            p.unlink()

    def ours(source: str, target: str) -> None:
        if args.cli:
            run([cli, "storage", "cp", "--quiet", source, target])
        else:
            result = storage.copy(source, target)
            assert result.resumed_bytes == 0 and result.bytes == size

    cases = {
        "put scp": lambda: run([*scp, str(src), f"{login}:{remote_dir}/scp.bin"]),
        "put ours": lambda: ours(str(src), "bench:/ours.bin"),
        "get scp": lambda: run([*scp, f"{login}:{remote_dir}/scp.bin", str(work / "got-scp.bin")]),
        "get ours": lambda: ours("bench:/ours.bin", str(work / "got-ours.bin")),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    try:
        for i in range(args.runs):
            clean()
            # Who goes first alternates: the first writer of a run meets a colder page cache.
            order = ["put scp", "put ours", "get scp", "get ours"] if i % 2 == 0 else \
                ["put ours", "put scp", "get ours", "get scp"]
            for name in order:
                times[name].append(timed(cases[name]))
        if (work / "got-ours.bin").stat().st_size != size:
            sys.exit("the copy came back with the wrong size")
    finally:
        conn.run(f"rm -rf {remote_dir}")
        shutil.rmtree(work, ignore_errors=True)
        ssh.pool.close_all()
        shutil.rmtree(env["CYBERSHUTTLE_HOME"], ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    mib = size / (1 << 20)
    print(f"runs={args.runs} size={mib:.0f} MiB ours={'cybershuttle storage cp' if args.cli else 'storage.copy'}")
    for k, v in times.items():
        print(f"{k:9s} median={med[k]:.2f} s  ({mib / med[k]:.0f} MiB/s)  all={', '.join(f'{t:.2f}' for t in v)}")
    put, get = med["put scp"] / med["put ours"], med["get scp"] / med["get ours"]
    ratio = min(put, get)
    print(f"put ratio={put:.2f}  get ratio={get:.2f}  (throughput ours/scp)")
    print(f"goal: ratio >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'}")
    print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
