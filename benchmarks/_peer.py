"""The peer, sshpyk 1.25 (an SSH kernel provisioner: OpenSSH client port forwarding over one
ControlMaster connection, no encryption of kernel traffic), as a comparator for the cell benchmarks.

Never a dependency: it lives in a venv of its own (made on first use with `python -m venv` + pip
into PEER_VENV) and its kernel is driven by this file run in that venv (a worker process that times
each cell itself, with `time.perf_counter` around `execute_interactive`, as our benchmarks do).
It runs the same remote interpreter as one of our runtime kernels, on the login node or (`node`)
on a compute node through the login node (OpenSSH's ProxyJump; the node's sshd lets it in because
our runtime holds a job there).

Worker protocol: one JSON request per line on stdin, `{"code": ..., "n": N}`; one JSON answer per
line, `{"times": [seconds per run], "received": <stream characters of the last run>}`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import cluster_env, comparator_python  # noqa: E402

PEER = "sshpyk==1.25"
PEER_VENV = Path("/var/tmp/cybershuttle-bench-sshpyk-1.25")


class Peer:
    """The peer's kernel, driven through a worker process in the peer's venv."""

    def __init__(self, proc: subprocess.Popen, config: Path, alias: str):
        self.proc = proc
        self.config = config
        self.alias = alias

    @classmethod
    def start(cls, ours, node: str | None = None) -> "Peer | None":
        """The peer's kernel on the login node, or on compute node `node` (where `ours`, a client of our
        runtime kernel whose interpreter the peer uses, holds a job); None, with a line saying why, if it
        cannot start."""
        label = f"S:{node}" if node else "S"
        python = peer_python()
        if python is None:
            return None
        remote_python = run_for_output(ours, "import sys; print(sys.executable, end='')")
        c = cluster_env()
        home = Path(os.environ["CYBERSHUTTLE_HOME"])  # private (mkdtemp, 0700) and thrown away
        alias = "cs-bench-sshpyk" + (f"-{node}" if node else "")
        config = home / f"peer-ssh-config-{alias}"
        # sshpyk requires a dedicated host alias with a ControlMaster (its jump host too); host keys stay checked.
        common = f"""  User {c["CS_TEST_USER"]}
  IdentityFile {c["CS_TEST_KEY"]}
  IdentitiesOnly yes
  UserKnownHostsFile {c["CS_TEST_KNOWN_HOSTS"]}
  StrictHostKeyChecking yes
  BatchMode yes
  ControlMaster auto
  ControlPath {home}/peer-cm-%C
  ControlPersist 10m
"""
        where = (f"  HostName {node}\n  ProxyJump cs-bench-login\n" if node
                 else f"  HostName {c['CS_TEST_HOST']}\n  Port {c['CS_TEST_PORT']}\n")
        config.write_text(f"""Host {alias}
{where}{common}Host cs-bench-login
  HostName {c["CS_TEST_HOST"]}
  Port {c["CS_TEST_PORT"]}
{common}""")
        add = subprocess.run([
            str(python.parent / "sshpyk"), "add", "--kernel-name", alias, "--display-name", "sshpyk",
            "--language", "python", "--ssh-host-alias", alias, "--ssh-config", str(config),
            "--remote-python", remote_python, "--remote-kernel-name", "python3", "--replace"],
            capture_output=True, text=True)
        if add.returncode:
            print(f"{label}: sshpyk add failed, peer skipped: {(add.stdout + add.stderr).strip()[-500:]}", flush=True)
            return None
        proc = subprocess.Popen([str(python), __file__, alias], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        peer = cls(proc, config, alias)
        if proc.stdout.readline().strip() != "ready":
            print(f"{label}: the peer's kernel did not start, peer skipped", flush=True)
            peer.shutdown_kernel()
            return None
        return peer

    def run(self, code: str, n: int = 1) -> tuple[list[float], int]:
        """Run `code` `n` times in the peer's kernel: each run's seconds, and the last run's stream characters."""
        self.proc.stdin.write(json.dumps({"code": code, "n": n}) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"the peer's worker ended (exit {self.proc.wait()})")
        out = json.loads(answer)
        return out["times"], out["received"]

    def stop_channels(self) -> None:
        pass

    def shutdown_kernel(self, now: bool = False) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=120)
        # The peer's ControlMasters would outlive this run by ControlPersist otherwise.
        for alias in (self.alias, "cs-bench-login"):
            subprocess.run(["ssh", "-F", str(self.config), "-O", "exit", alias], capture_output=True)


def peer_python() -> Path | None:
    """The peer's venv python, made on first use; None (and a line saying why) when it cannot be."""
    return comparator_python(PEER_VENV, [PEER], "import sshpyk.provisioning", "S")


def run_for_output(kc, code: str) -> str:
    """The stream output of `code` in the kernel of client `kc`."""
    out = []
    reply = kc.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(m["content"].get("text", "")))
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def worker(kernel_name: str) -> None:
    """In the peer's venv: start its kernel, then run what stdin asks, answering one JSON line each."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the peer prints stays off the answer channel
    from jupyter_core.paths import jupyter_runtime_dir

    os.makedirs(jupyter_runtime_dir(), mode=0o700, exist_ok=True)  # the peer writes there before it exists
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel()
    kc = km.client()
    try:  # the remote kernel goes down with this worker, whatever happens
        kc.start_channels()
        kc.wait_for_ready(timeout=300)
        print("ready", file=answers, flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            times, received = [], 0
            for _ in range(request["n"]):
                received = 0

                def hook(msg):
                    nonlocal received
                    received += len(msg["content"].get("text", ""))

                start = time.perf_counter()
                reply = kc.execute_interactive(request["code"], timeout=600, output_hook=hook)
                times.append(time.perf_counter() - start)
                assert reply["content"]["status"] == "ok", reply["content"]
            print(json.dumps({"times": times, "received": received}), file=answers, flush=True)
    finally:
        kc.stop_channels()
        km.shutdown_kernel()


if __name__ == "__main__":
    worker(sys.argv[1])
