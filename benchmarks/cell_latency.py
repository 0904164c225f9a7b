"""Round trip of `1+1`, measured in one run for three paths:

  L  an ipykernel started locally and driven directly (the baseline);
  P  a runtime kernel on the loopback sshd driven directly through the Cybershuttle
     provisioner (the kernelspec path JupyterLab and papermill use);
  M  the same kind of runtime reached through a local kernel after `%switch_runtime`
     (the magic path, which unavoidably crosses two kernels).
  P0 P without CurveZMQ encryption, to show what encryption costs.

Prints median and p90 of each and ends with
`ratio=<P/L median> p90_ratio=<P/L p90> magic_ratio=<M/(L+P) median>`.
Goals: ratio <= 1.15, p90_ratio <= 1.3, magic_ratio <= 1.15.

    python benchmarks/cell_latency.py [--cells 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import isolated_home, register_cluster  # noqa: E402


def measure(kc, cells: int) -> list[float]:
    for _ in range(10):  # warm up: first messages set up the connections
        kc.execute_interactive("1+1", timeout=30, output_hook=lambda m: None)
    times = []
    for _ in range(cells):
        start = time.perf_counter()
        reply = kc.execute_interactive("1+1", timeout=30, output_hook=lambda m: None)
        times.append(time.perf_counter() - start)
        assert reply["content"]["status"] == "ok", reply["content"]
    return times


def stats(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.9) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=200)
    cells = parser.parse_args().cells
    isolated_home()
    register_cluster()
    from jupyter_client.manager import KernelManager

    from cybershuttle.runtime import provisioner

    provisioner.install_kernelspec("bench-ssh", name="cybershuttle-bench")
    provisioner.install_kernelspec("bench-ssh", name="cybershuttle-bench-plain", encrypt=False)
    results = {}
    for label, kernel_name, setup in (
        ("L", "python3", None),
        ("P", "cybershuttle-bench", None),
        ("P0", "cybershuttle-bench-plain", None),
        ("M", "python3", ["import cybershuttle_magic",
                          "%request_runtime mbench --resource bench-ssh\n%switch_runtime mbench"]),
    ):
        km = KernelManager(kernel_name=kernel_name)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=300)
        try:
            for code in setup or []:
                reply = kc.execute_interactive(code, timeout=300, output_hook=lambda m: None)
                assert reply["content"]["status"] == "ok", reply["content"]
            results[label] = stats(measure(kc, cells))
            if setup:
                kc.execute_interactive("%stop_runtime mbench", timeout=60, output_hook=lambda m: None)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        print(f"{label}: median={results[label][0]:.2f} ms  p90={results[label][1]:.2f} ms", flush=True)
    (l_med, l_p90), (p_med, p_p90), (m_med, _) = results["L"], results["P"], results["M"]
    p0_med, p0_p90 = results["P0"]
    print(f"cells={cells}; P and M are CurveZMQ-encrypted, P0 is P without encryption: "
          f"encrypted/plain median {p_med / p0_med:.2f}, p90 {p_p90 / p0_p90:.2f}")
    print(f"ratio={p_med / l_med:.2f} p90_ratio={p_p90 / l_p90:.2f} magic_ratio={m_med / (l_med + p_med):.2f}")


if __name__ == "__main__":
    main()
