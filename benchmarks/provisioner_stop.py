"""How long stopping a kernel takes: `KernelManager.shutdown_kernel()` of a kernel started
through the Cybershuttle provisioner on the loopback sshd, against a local ipykernel's, in one run.

Each stop is the user's "Shut down kernel": a shutdown request, then waiting until the
kernel is gone and its runtime released. A kernel on a compute node (Slurm, through each node
transport the cluster allows) is measured too. Ends with `stop_s=<median> local_stop_s=<median>
node_stop_s=<worst transport's median>`; the goal is stop_s <= 1.0 and node_stop_s <= 1.0.

    python benchmarks/provisioner_stop.py [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import isolated_home, register_cluster  # noqa: E402


def stop_time(kernel_name: str) -> float:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=300)
        kc.execute_interactive("1+1", timeout=60, output_hook=lambda m: None)
    finally:
        kc.stop_channels()
    start = time.perf_counter()
    km.shutdown_kernel()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    isolated_home()
    register_cluster()
    from cybershuttle import runtime
    from cybershuttle.runtime import provisioner

    provisioner.install_kernelspec("bench-ssh", name="cybershuttle-bench")
    from cell_throughput import node_kernelspecs

    nodes = {transport: [] for transport in node_kernelspecs()}
    remote, local = [], []
    for _ in range(runs):
        remote.append(stop_time("cybershuttle-bench"))
        local.append(stop_time("python3"))
        for transport, times in nodes.items():
            times.append(stop_time(f"cybershuttle-bench-{transport}"))
        print(f"stop {remote[-1]:.2f} s (local {local[-1]:.2f} s"
              + "".join(f", node via {t} {times[-1]:.2f} s" for t, times in nodes.items()) + ")", flush=True)
    left = [r.name for r in runtime.list_all() if r.state in runtime.LIVE_STATES]
    assert not left, f"runtimes still running after their kernels were shut down: {left}"
    node = f" node_stop_s={max(statistics.median(t) for t in nodes.values()):.2f}" if nodes else ""
    print(f"stop_s={statistics.median(remote):.2f} local_stop_s={statistics.median(local):.2f}{node}")


if __name__ == "__main__":
    main()
