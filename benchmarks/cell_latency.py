"""Round trip of `1+1`, measured in one run for three paths:

  L  an ipykernel started locally and driven directly (the baseline);
  P  a runtime kernel on the loopback sshd driven directly through the Cybershuttle
     provisioner (the kernelspec path JupyterLab and papermill use);
  M  the same kind of runtime reached through a local kernel after `%switch_runtime`
     (the magic path, which unavoidably crosses two kernels).
  Pi P with its forwards in this process (paramiko), as before an OpenSSH client process carried them.
  P0 P on plain TCP ports (no Unix sockets, no CurveZMQ), to show what privacy costs.
  S  the peer, sshpyk 1.25 (_peer.py), on the login node beside L, P and P0, and on the compute
     node of the node-ssh measurement (through the login node) beside N and L; --no-peer skips it.
  N  P's kernel on a compute node (the cluster's node partition), reached through the login
     node by each node transport (`measure_node(transport)`): node-ssh is SSH to the node
     through our relay on the login node; allocation (A) a relay started inside the job; node-tcp (T)
     direct-tcpip from the login node straight to the kernel bound on the node's cluster address.
  Ni node-ssh's N with its forwards in this process, as before the OpenSSH client carried them there.

Prints median and p90 of each and ends with
`ratio=<P/L median> p90_ratio=<P/L p90> magic_ratio=<M/(L+P) median> node_ratio=<N/L median>
node_p90_ratio=<N/L p90> alloc_node_ratio=<A/L median> alloc_node_p90_ratio=<A/L p90>
tcp_node_ratio=<T/L median> tcp_node_p90_ratio=<T/L p90> node_vs_in_process=<N/Ni median>
node_vs_peer=<N/S median, on the node>
vs_peer=<P/S median> vs_in_process=<P/Pi median>` (N, A and T each with its own L, measured in
alternating blocks, both kernels up; L, P and P0 likewise, all three up). Goals: ratio and the node ratios <= 1.15, the p90 ratios <= 1.3,
magic_ratio <= 1.15.

    python benchmarks/cell_latency.py [--cells 200]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import cluster_env, in_process_forwarding, isolated_home, register_cluster  # noqa: E402
from _peer import Peer, run_for_output  # noqa: E402


def measure(kc, cells: int, warm: int = 10) -> list[float]:
    if isinstance(kc, Peer):  # timed the same way, in the peer's own process
        if warm:
            kc.run("1+1", warm)
        return kc.run("1+1", cells)[0] if cells else []
    for _ in range(warm):  # warm up: first messages set up the connections
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


class Kernel:
    """A kernel started from kernelspec `kernel_name` and a client on it (a context manager)."""

    def __init__(self, kernel_name: str) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name=kernel_name)

    def __enter__(self):
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=300)
        return self.kc

    def __exit__(self, *exc) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def run_kernel(kernel_name: str, cells: int, setup: list[str] | None = None) -> tuple[float, float]:
    """(median, p90) in ms of `cells` trivial cells in a kernel started from kernelspec `kernel_name`."""
    with Kernel(kernel_name) as kc:
        try:
            for code in setup or []:
                reply = kc.execute_interactive(code, timeout=300, output_hook=lambda m: None)
                assert reply["content"]["status"] == "ok", reply["content"]
            return stats(measure(kc, cells))
        finally:
            if setup:
                kc.execute_interactive("%stop_runtime mbench", timeout=60, output_hook=lambda m: None)


def node_kernelspec(transport: str) -> str:
    """The kernelspec of a runtime on a compute node reached through `transport` (the cluster registered
    as `bench-<transport>`)."""
    from cybershuttle import compute
    from cybershuttle.runtime import provisioner

    c = cluster_env()
    name = f"bench-{transport}"
    result = compute.validate_and_register(dict(
        name=name, kind="slurm", host=c["CS_TEST_HOST"], port=int(c["CS_TEST_PORT"]), user=c["CS_TEST_USER"],
        key=c["CS_TEST_KEY"], known_hosts=c["CS_TEST_KNOWN_HOSTS"], transport=transport), replace_existing=True)
    if not result.saved:
        sys.exit(f"cannot register the cluster with transport {transport}: {result.to_dict()}")
    provisioner.install_kernelspec(name, name=f"cybershuttle-{name}", partition=c["CS_TEST_NODE_PARTITION"])
    return f"cybershuttle-{name}"


def measure_node(transport: str, cells: int, peer: bool) -> dict[str, tuple[float, float]]:
    """(median, p90) in ms through `transport` to a kernel on a compute node ("N"), of a local kernel ("L")
    and, with `peer` (node-ssh only: the peer needs SSH to the node), of the peer on the same node ("S");
    node-ssh measures "Ni" too: its kernel forwarded in-process, the baseline of the OpenSSH client.

    They are measured in alternating blocks of 10 cells, all kernels running: on a shared machine
    the load changes from minute to minute, and each block of one is compared with the others' next to it.
    """
    spec = node_kernelspec(transport)
    with contextlib.ExitStack() as kernels:
        node, local = kernels.enter_context(Kernel(spec)), kernels.enter_context(Kernel("python3"))
        clients = {"N": node, "L": local}
        if transport == "node-ssh":  # the same path with its forwards in this process: the baseline of OpenSSH's
            with in_process_forwarding():
                clients["Ni"] = kernels.enter_context(Kernel(spec))
        if peer and transport == "node-ssh":
            name = run_for_output(node, "import os; print(os.environ['SLURMD_NODENAME'], end='')")
            clients["S"] = Peer.start(node, name)
        try:
            return alternating({k: v for k, v in clients.items() if v is not None}, cells)
        finally:
            if clients.get("S") is not None:
                clients["S"].shutdown_kernel()


def alternating(clients: dict, cells: int) -> dict[str, tuple[float, float]]:
    """(median, p90) in ms of `cells` trivial cells on each client, measured in alternating blocks of 10,
    every kernel up: on a shared machine the load changes from minute to minute, and a block of one
    is compared with the others' next to it."""
    times: dict[str, list[float]] = {label: [] for label in clients}
    for kc in clients.values():
        measure(kc, 0)  # warm-up only
    for _ in range(max(1, cells // 10)):
        for label, kc in clients.items():
            times[label] += measure(kc, 10, warm=0)
    return {label: stats(ts) for label, ts in times.items()}


def node_figures(cells: int, peer: bool) -> str:
    """Measure every node transport; prints each and returns `node_ratio=... alloc_node_ratio=...`."""
    figures = []
    for transport, prefix in (("node-ssh", "node"), ("allocation", "alloc_node"), ("node-tcp", "tcp_node")):
        found = measure_node(transport, cells, peer)
        (n_med, n_p90), (l_med, l_p90) = found["N"], found["L"]
        print(f"N ({transport}): median={n_med:.2f} ms  p90={n_p90:.2f} ms; local kernel in alternating blocks: "
              f"median={l_med:.2f} ms  p90={l_p90:.2f} ms", flush=True)
        figures.append(f"{prefix}_ratio={n_med / l_med:.2f} {prefix}_p90_ratio={n_p90 / l_p90:.2f}")
        if "Ni" in found:
            figures.append(f"node_vs_in_process={n_med / found['Ni'][0]:.2f}")
            print(f"Ni ({transport}, forwarded in-process): median={found['Ni'][0]:.2f} ms  p90={found['Ni'][1]:.2f} ms",
                  flush=True)
        if "S" in found:
            s_med, s_p90 = found["S"]
            print(f"S (the peer on the same node, through the login node): median={s_med:.2f} ms  p90={s_p90:.2f} ms "
                  f"(ratio {s_med / l_med:.2f}, p90 ratio {s_p90 / l_p90:.2f})", flush=True)
            figures.append(f"node_vs_peer={n_med / s_med:.2f}")
    return " ".join(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--node-only", action="store_true", help="measure only N (and its local baseline)")
    parser.add_argument("--no-peer", action="store_true", help="do not measure the peer (sshpyk)")
    args = parser.parse_args()
    peer = not args.no_peer
    cells = args.cells
    isolated_home()
    register_cluster()
    if args.node_only:
        print(node_figures(cells, peer))
        return
    from cybershuttle.runtime import provisioner

    provisioner.install_kernelspec("bench-ssh", name="cybershuttle-bench")
    provisioner.install_kernelspec("bench-ssh", name="cybershuttle-bench-plain", encrypt=False)
    with Kernel("python3") as local, Kernel("cybershuttle-bench") as p, Kernel("cybershuttle-bench-plain") as p0, \
            in_process_forwarding(), Kernel("cybershuttle-bench") as pi:
        clients = {"L": local, "P": p, "Pi": pi, "P0": p0}
        s = Peer.start(p) if peer else None
        try:
            results = alternating({**clients, **({"S": s} if s else {})}, cells)
        finally:
            if s is not None:
                s.shutdown_kernel()
    results["M"] = run_kernel("python3", cells, ["import cybershuttle_magic",
                                                 "%request_runtime mbench --resource bench-ssh\n%switch_runtime mbench"])
    for label, (median, p90) in results.items():
        print(f"{label}: median={median:.2f} ms  p90={p90:.2f} ms", flush=True)
    nodes = node_figures(cells, peer)
    (l_med, l_p90), (p_med, p_p90), (m_med, _) = results["L"], results["P"], results["M"]
    p0_med, p0_p90 = results["P0"]
    print(f"cells={cells}; P and M are private (Unix sockets), P0 is P on plain TCP ports: "
          f"private/plain median {p_med / p0_med:.2f}, p90 {p_p90 / p0_p90:.2f}")
    vs_peer = f" vs_peer={p_med / results['S'][0]:.2f}" if "S" in results else ""
    print(f"ratio={p_med / l_med:.2f} p90_ratio={p_p90 / l_p90:.2f} magic_ratio={m_med / (l_med + p_med):.2f} "
          f"{nodes}{vs_peer} vs_in_process={p_med / results['Pi'][0]:.2f}")


if __name__ == "__main__":
    main()
