"""Time from `%request_runtime` to the first cell result, through the magics in a
local kernel, on the idle loopback Slurm and over plain SSH (the runtime's Python
environment already cached on the resource; the first, uncached start is printed
apart). Ends with `slurm_s=<median> ssh_s=<median>`; goals <= 2.0 s and <= 1.0 s.

    python benchmarks/runtime_start.py [--runs 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import isolated_home, register_cluster  # noqa: E402


def run(kc, code: str) -> None:
    reply = kc.execute_interactive(code, timeout=600, output_hook=lambda m: None)
    if reply["content"]["status"] != "ok":
        sys.exit(f"{code!r} failed: {reply['content'].get('evalue')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    isolated_home()
    register_cluster()
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    run(kc, "import cybershuttle_magic")
    medians = {}
    try:
        for label, resource in (("ssh", "bench-ssh"), ("slurm", "bench-slurm")):
            times = []
            for i in range(runs + 1):  # the first run may build the environment: reported apart
                name = f"start{label}{i}"
                start = time.perf_counter()
                run(kc, f"%request_runtime {name} --resource {resource}\n%switch_runtime {name}")
                run(kc, "1+1")
                times.append(time.perf_counter() - start)
                run(kc, f"%stop_runtime {name}")
            medians[label] = statistics.median(times[1:])
            print(f"{label}: first={times[0]:.2f} s  cached: median={medians[label]:.2f} s  "
                  f"min={min(times[1:]):.2f} s  max={max(times[1:]):.2f} s", flush=True)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print(f"goals: slurm <= 2.0 s ({'met' if medians['slurm'] <= 2.0 else 'NOT met'}), "
          f"ssh <= 1.0 s ({'met' if medians['ssh'] <= 1.0 else 'NOT met'})")
    print(f"slurm_s={medians['slurm']:.2f} ssh_s={medians['ssh']:.2f}")


if __name__ == "__main__":
    main()
