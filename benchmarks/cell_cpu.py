"""Where a trivial cell's time goes: on-CPU time per cell of every process on each path, in one run.

cell_latency.py gives the ratios; this says what they are made of. On the test cluster every
hop (client, forwarder, sshd, relay, node sshd, kernel) shares this machine's cores with each
other and with whatever else runs, so each CPU millisecond a path adds is close to a millisecond
of round trip. On a real site those hops run on different machines.

Paths (all kernels up, measured in alternating blocks of 10 cells like cell_latency's node figures):
  L            a local ipykernel driven directly (the baseline);
  P            a runtime kernel on the login host through the provisioner (kernelspec path);
  <transport>  P's kernel on a compute node, reached through that node transport.

For each block every process's on-CPU time (all its threads, /proc/PID/task/*/schedstat) is read
before and after. A process counts for a path when it ran in that path's blocks and (nearly) not in
L's, in at least 4 of 5 of its blocks: other users' processes run in every block alike, or now and then,
and drop out. This process (the notebook's
side: jupyter_client, the forwarder, paramiko) is listed per thread. Ends with
`cpu_ms_per_cell L=... P=... <transport>=...` (every counted process, summed).

    python benchmarks/cell_cpu.py [--cells 300] [--transports node-ssh allocation node-tcp]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import isolated_home, register_cluster  # noqa: E402
from cell_latency import Kernel, measure, node_kernelspec, stats  # noqa: E402

ME = os.getpid()
NETNS = os.readlink("/proc/self/ns/net")


def on_cpu() -> dict:
    """ns on a CPU so far: per process, and per thread of this process (keys ("thread", tid))."""
    out = {}
    for path in glob.glob("/proc/[0-9]*"):
        pid = int(path[6:])
        try:
            threads = {int(t.rsplit("/", 1)[1]): int(open(t + "/schedstat").read().split()[0])
                       for t in glob.glob(path + "/task/*")}
        except (OSError, ValueError, IndexError):
            continue
        if pid == ME:
            out.update({("thread", tid): ns for tid, ns in threads.items()})
        else:
            out[pid] = sum(threads.values())
    return out


def role(key) -> str:
    """What a process (or a thread of this one) is, in a few words."""
    if isinstance(key, tuple):
        names = {t.native_id: t.name for t in threading.enumerate()}
        try:  # threads started outside Python (ZeroMQ's I/O thread) have only their OS name
            name = names.get(key[1]) or open(f"/proc/self/task/{key[1]}/comm").read().strip()
        except OSError:
            name = "(ended)"
        if name.startswith("Thread-"):
            name = "paramiko transport"  # paramiko's Transport threads keep Thread's default name
        return f"client: {name}"
    try:
        cmd = open(f"/proc/{key}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        netns = os.readlink(f"/proc/{key}/ns/net")
    except OSError:
        return "(ended)"
    where = "" if netns == NETNS else " [node]"
    if "durable_kernel" in cmd:
        return "runtime kernel" + where
    if "ipykernel_launcher" in cmd:
        return "local kernel"
    if "cybershuttle-relay" in cmd or "relay" in cmd and " -c " in cmd:
        return "relay" + where
    if cmd.startswith("sshd"):
        return ("node sshd" if where else "login sshd") + f" ({cmd.split(':', 1)[-1].strip()[:20]})"
    return cmd[:40] + where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--transports", nargs="*", default=["node-ssh", "allocation", "node-tcp"])
    args = parser.parse_args()
    isolated_home()
    register_cluster()
    from cybershuttle.runtime import provisioner

    provisioner.install_kernelspec("bench-ssh", name="cybershuttle-bench")
    specs = {"L": "python3", "P": "cybershuttle-bench", **{t: node_kernelspec(t) for t in args.transports}}
    with contextlib.ExitStack() as stack:
        clients = {label: stack.enter_context(Kernel(spec)) for label, spec in specs.items()}
        for kc in clients.values():
            measure(kc, 0)
        times: dict[str, list[float]] = {label: [] for label in clients}
        cpu: dict[str, collections.Counter] = {label: collections.Counter() for label in clients}
        active: dict[str, collections.Counter] = {label: collections.Counter() for label in clients}
        roles: dict = {}
        for _ in range(max(1, args.cells // 10)):
            for label, kc in clients.items():
                before = on_cpu()
                times[label] += measure(kc, 10, warm=0)
                for key, ns in on_cpu().items():
                    used = ns - before.get(key, ns)
                    if used:
                        cpu[label][key] += used
                        active[label][key] += 1
                        if key not in roles and used > 100_000:
                            roles[key] = role(key)  # named now: a kernel may be gone by the end
    local_median = stats(times["L"])[0]
    totals = []
    for label in clients:
        cells = len(times[label])
        blocks = cells // 10
        median, p90 = stats(times[label])
        print(f"{label}: median={median:.2f} ms p90={p90:.2f} ms ({median / local_median:.2f}x L)")
        rows = collections.Counter()
        for key, ns in cpu[label].items():
            if isinstance(key, tuple):
                counted = True
            elif active[label][key] < 0.8 * blocks:
                counted = False  # not on the path: something else ran now and then
            elif label == "L":
                counted = ns > 3 * max(cpu[other][key] for other in clients if other != "L")
            else:
                counted = ns > 10 * cpu["L"][key]
            if counted and ns / cells > 5_000:  # at least 5 us a cell
                rows[roles.get(key) or role(key)] += ns / cells / 1e6
        for name, ms in sorted(rows.items(), key=lambda kv: -kv[1]):
            print(f"    {ms:6.3f} ms/cell  {name}")
        totals.append(f"{label}={sum(rows.values()):.2f}")
    print("cpu_ms_per_cell " + " ".join(totals))


if __name__ == "__main__":
    main()
