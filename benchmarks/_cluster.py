"""Shared set-up for benchmarks that need the loopback cluster: its settings and a
throwaway Cybershuttle home with the cluster registered (as `bench-ssh` and `bench-slurm`)."""
from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cluster_env() -> dict[str, str]:
    out = subprocess.run(["bash", str(REPO / "tests/cluster/cluster.sh"), "env"], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the loopback cluster is not running ({out.stderr.strip()}): sudo bash tests/cluster/cluster.sh start")
    env = {}
    for line in out.stdout.splitlines():
        key, _, value = shlex.split(line)[1].partition("=")
        env[key] = value
    return env


def isolated_home() -> dict[str, str]:
    """Point this process (and its children) at a fresh CYBERSHUTTLE_HOME and Jupyter data dir."""
    home = tempfile.mkdtemp(prefix="cs-bench-")
    os.environ["CYBERSHUTTLE_HOME"] = home
    os.environ["JUPYTER_DATA_DIR"] = os.path.join(home, "jupyter")
    os.environ.pop("CYBERSHUTTLE_SITE_CATALOG", None)
    return dict(os.environ)


def register_cluster() -> dict[str, str]:
    """Register the loopback cluster in the current home; returns its settings."""
    from cybershuttle import compute

    c = cluster_env()
    for name, kind in (("bench-ssh", "ssh"), ("bench-slurm", "slurm")):
        result = compute.validate_and_register(dict(
            name=name, kind=kind, host=c["CS_TEST_HOST"], port=int(c["CS_TEST_PORT"]), user=c["CS_TEST_USER"],
            key=c["CS_TEST_KEY"], known_hosts=c["CS_TEST_KNOWN_HOSTS"]), replace_existing=True)
        if not result.saved:
            sys.exit(f"cannot register the loopback cluster: {result.to_dict()}")
    return c


def comparator_python(venv: Path, packages: list[str], check: str, label: str) -> Path | None:
    """The python of a comparator's own venv (a peer, another library: never our dependency), made on first
    use with `python -m venv` + pip; None, with a line saying why, when it cannot be. `check` is the
    import statement that proves the venv is whole."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", check]
    if python.exists() and not subprocess.run(probe, capture_output=True).returncode:
        return python
    print(f"{label}: installing {' '.join(packages)} into {venv} (once)", flush=True)
    made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
    if not made.returncode:
        made = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True)
    if made.returncode or subprocess.run(probe, capture_output=True).returncode:
        print(f"{label}: cannot install {' '.join(packages)}, skipped: {made.stderr.strip()[-300:]}", flush=True)
        return None
    return python


@contextlib.contextmanager
def in_process_forwarding(on: bool = True):
    """Runtimes connected inside this block keep their forwards in this process (paramiko), as before the
    OpenSSH client carried a login runtime's: the baseline of that change, measured in the same run."""
    from cybershuttle.runtime import FORWARDER_ENV

    old = os.environ.get(FORWARDER_ENV)
    if on:
        os.environ[FORWARDER_ENV] = "python"
    try:
        yield
    finally:
        if on:
            if old is None:
                os.environ.pop(FORWARDER_ENV, None)
            else:
                os.environ[FORWARDER_ENV] = old
