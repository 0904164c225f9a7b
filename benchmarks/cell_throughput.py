"""Output-heavy cells from a runtime against the same cells in a local kernel, in one run.

Two cells, each timed from execute_request to the kernel's idle status with all
output received by the client:

  one   one `sys.stdout.write` of 20 MB (one IOPub message of 20 MB);
  many  200,000 writes of 100 bytes (20 MB in the kernel's periodic flushes).

Paths, all on the loopback sshd and all started before the first measurement:

  L   an ipykernel started locally and driven directly (the baseline);
  P   a runtime kernel driven through the Cybershuttle provisioner (the kernelspec
      path of JupyterLab, nbclient and papermill): Unix sockets in its 0700 job
      directory, forwarded in-process over the pooled SSH transport to Unix sockets
      in a 0700 directory here (private without CurveZMQ);
  Pi  P with its forwards in this process (paramiko), as before an OpenSSH client process carried them;
  P0  P on plain 127.0.0.1 ports without CurveZMQ, as the peer runs (never used for real);
  M   a runtime reached through a local kernel after `%switch_runtime` (the magic
      path, whose local kernel re-publishes every remote IOPub message);
  N:<transport>  P's kernel on a compute node of the cluster's node partition, reached
      through the login node by that transport (node-ssh, allocation, node-tcp), when the cluster has nodes.
  Ni:node-ssh  N:node-ssh with its forwards in this process (the baseline of the OpenSSH client there);
  S   the peer, sshpyk 1.25 (an SSH kernel provisioner: OpenSSH client port forwarding over
      one ControlMaster connection, no encryption of kernel traffic), running the same
      ipykernel in the same remote environment as P's kernel on the login node. A comparator
      only, never a dependency (see _peer.py); skipped with --no-peer or when it cannot be installed.
  S:node  the peer on the compute node our node-ssh kernel runs on, through the login node
      (OpenSSH's ProxyJump: both hops OpenSSH in C; the node's sshd lets it in because our
      runtime holds a job there), when the cluster has nodes and allows SSH to them.

Runs are interleaved (L, P, P0, M, L, P, ...) so that load from other processes on
a shared machine falls on every path alike; each figure is the median of its runs.
The last line is `ratio=<worst P/L of the two cells> one_ratio= many_ratio=
magic_ratio=<worst M/L> node_ratio=<worst N/L of every transport> node_vs_peer=<worst N/S:node, one>
vs_peer=<P/S, one> vs_in_process=<P/Pi, one>`; the goal is ratio <= 1.25 and node_ratio <= 1.25, and vs_peer and node_vs_peer
< 1 (ahead of the peer).

    python benchmarks/cell_throughput.py [--runs 7] [--no-peer]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import cluster_env, in_process_forwarding, isolated_home, register_cluster  # noqa: E402
from _peer import Peer, run_for_output  # noqa: E402

SIZE = 20_000_000
CELLS = {
    "one": f"import sys\nsys.stdout.write('x' * {SIZE})\n",
    "many": f"import sys\nline = 'x' * 99 + '\\n'\nfor _ in range({SIZE // 100}):\n    sys.stdout.write(line)\n",
}
MAGIC_SETUP = ("import cybershuttle_magic", "%request_runtime tput --resource bench-ssh\n%switch_runtime tput")


def timed(kc, code: str) -> tuple[float, int]:
    if isinstance(kc, Peer):  # timed the same way, in the peer's own process
        times, received = kc.run(code)
        return times[0], received
    received = 0

    def hook(msg):
        nonlocal received
        received += len(msg["content"].get("text", ""))

    start = time.perf_counter()
    reply = kc.execute_interactive(code, timeout=600, output_hook=hook)
    elapsed = time.perf_counter() - start
    assert reply["content"]["status"] == "ok", reply["content"]
    return elapsed, received


def start(kernel_name: str, setup: tuple[str, ...] = ()):
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=300)
    for code in setup:
        timed(kc, code)
    return km, kc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-peer", action="store_true", help="do not measure the peer (sshpyk)")
    parser.add_argument("--samples", action="store_true", help="also print every run's time, sorted")
    args = parser.parse_args()
    runs = args.runs
    isolated_home()
    register_cluster()
    from cybershuttle.runtime import provisioner

    provisioner.install_kernelspec("bench-ssh", name="cybershuttle-bench")
    provisioner.install_kernelspec("bench-ssh", name="cybershuttle-bench-plain", encrypt=False)
    paths = {"L": ("python3", ()), "P": ("cybershuttle-bench", ()), "Pi": ("cybershuttle-bench", ()),
             "P0": ("cybershuttle-bench-plain", ()),
             "M": ("python3", MAGIC_SETUP)}
    paths.update({f"N:{t}": (kernel, ()) for t, kernel in node_kernelspecs().items()})
    if "N:node-ssh" in paths:
        paths["Ni:node-ssh"] = paths["N:node-ssh"]
    kernels = {}
    times: dict[str, dict[str, list[float]]] = {label: {cell: [] for cell in CELLS} for label in paths}
    try:
        for label, (kernel_name, setup) in paths.items():
            with in_process_forwarding(label.startswith(("Pi", "Ni:"))):
                kernels[label] = start(kernel_name, setup)
        if not args.no_peer:
            peer = Peer.start(kernels["P"][1])
            if peer:
                kernels["S"] = (peer, peer)
                times["S"] = {cell: [] for cell in CELLS}
            if "N:node-ssh" in kernels:  # the peer on the node our node-ssh runtime holds a job on
                ours = kernels["N:node-ssh"][1]
                node = run_for_output(ours, "import os; print(os.environ['SLURMD_NODENAME'], end='')")
                peer = Peer.start(ours, node)
                if peer:
                    kernels["S:node"] = (peer, peer)
                    times["S:node"] = {cell: [] for cell in CELLS}
        for label, (_, kc) in kernels.items():  # warm up: the first large message grows buffers
            timed(kc, CELLS["one"])
        for _ in range(runs):
            for label, (_, kc) in kernels.items():
                for cell, code in CELLS.items():
                    elapsed, received = timed(kc, code)
                    assert received >= SIZE, (label, cell, received)
                    times[label][cell].append(elapsed)
    finally:
        # newest first: the peer on a node lives inside our node runtime's job, which ends with its kernel
        for label, (km, kc) in reversed(kernels.items()):
            if label == "M":
                timed(kc, "%stop_runtime tput")
            kc.stop_channels()
            km.shutdown_kernel(now=label != "P")
    med = {label: {cell: statistics.median(ts) for cell, ts in by_cell.items()} for label, by_cell in times.items()}
    for label in times:
        print(f"{label}: one 20 MB write {med[label]['one']:.3f} s, many small writes {med[label]['many']:.3f} s",
              flush=True)
        if args.samples:
            for cell, ts in times[label].items():
                print(f"  {cell}: " + " ".join(f"{t:.3f}" for t in sorted(ts)))
    ratio = {label: {cell: med[label][cell] / med["L"][cell] for cell in CELLS} for label in times}
    print("P0_ratio=%.2f (plain TCP ports, not private)" % max(ratio["P0"].values()))
    print("Pi_one_ratio=%.2f Pi_many_ratio=%.2f (forwards in this process); OpenSSH client / in-process: one %.2f, "
          "many %.2f" % (ratio["Pi"]["one"], ratio["Pi"]["many"], med["P"]["one"] / med["Pi"]["one"],
                         med["P"]["many"] / med["Pi"]["many"]))
    if "Ni:node-ssh" in ratio:
        print("Ni_one_ratio=%.2f Ni_many_ratio=%.2f (node-ssh forwarded in this process); OpenSSH client / in-process: "
              "one %.2f, many %.2f" % (ratio["Ni:node-ssh"]["one"], ratio["Ni:node-ssh"]["many"],
                                       med["N:node-ssh"]["one"] / med["Ni:node-ssh"]["one"],
                                       med["N:node-ssh"]["many"] / med["Ni:node-ssh"]["many"]))
    vs_peer = ""
    if "S" in ratio:
        print(f"peer_one_ratio={ratio['S']['one']:.2f} peer_many_ratio={ratio['S']['many']:.2f} "
              f"(sshpyk; ours: one_ratio={ratio['P']['one']:.2f} many_ratio={ratio['P']['many']:.2f})")
        vs_peer = f" vs_peer={med['P']['one'] / med['S']['one']:.2f}"
    nodes = [max(r.values()) for label, r in ratio.items() if label.startswith("N:")]
    node = f" node_ratio={max(nodes):.2f}" if nodes else ""
    if "S:node" in ratio:
        print(f"node_peer_one_ratio={ratio['S:node']['one']:.2f} node_peer_many_ratio={ratio['S:node']['many']:.2f} "
              "(sshpyk on the same node through the login node; ours: " + " ".join(
                  f"{label[2:]} {r['one']:.2f}/{r['many']:.2f}" for label, r in ratio.items() if label.startswith("N:"))
              + ")")
        node += " node_vs_peer=%.2f" % max(med[label]["one"] / med["S:node"]["one"] for label in ratio
                                           if label.startswith("N:"))
    print(f"ratio={max(ratio['P'].values()):.2f} one_ratio={ratio['P']['one']:.2f} "
          f"many_ratio={ratio['P']['many']:.2f} magic_ratio={max(ratio['M'].values()):.2f}{node}{vs_peer} "
          f"vs_in_process={med['P']['one'] / med['Pi']['one']:.2f}")


def node_kernelspecs() -> dict[str, str]:
    """A kernelspec per node transport the cluster allows (none on a cluster without nodes)."""
    from cybershuttle import compute
    from cybershuttle.runtime import provisioner

    c = cluster_env()
    if not c.get("CS_TEST_NODES"):
        return {}
    out = {}
    for transport in ("node-ssh", "allocation", "node-tcp"):
        name = f"bench-{transport}"
        result = compute.validate_and_register(dict(
            name=name, kind="slurm", host=c["CS_TEST_HOST"], port=int(c["CS_TEST_PORT"]), user=c["CS_TEST_USER"],
            key=c["CS_TEST_KEY"], known_hosts=c["CS_TEST_KNOWN_HOSTS"], transport=transport), replace_existing=True)
        if result.saved:
            provisioner.install_kernelspec(name, name=f"cybershuttle-{name}", walltime=30,
                                           partition=c.get("CS_TEST_NODE_PARTITION") or None)
            out[transport] = f"cybershuttle-{name}"
        else:
            print(f"N:{transport}: not allowed on this cluster", flush=True)
    return out


if __name__ == "__main__":
    main()
