"""Shared fixtures: an isolated Cybershuttle home per test, the CLI as a
subprocess, and the loopback test cluster (`tests/cluster/cluster.sh`)."""
from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLUSTER_SH = REPO / "tests" / "cluster" / "cluster.sh"
CLI = Path(sys.executable).parent / "cybershuttle"


@pytest.fixture(autouse=True)
def cs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own CYBERSHUTTLE_HOME and no site-catalog override."""
    home = tmp_path / "cshome"
    monkeypatch.setenv("CYBERSHUTTLE_HOME", str(home))
    monkeypatch.delenv("CYBERSHUTTLE_SITE_CATALOG", raising=False)
    monkeypatch.delenv("CYBERSHUTTLE_USER", raising=False)
    from cybershuttle import registry, ssh

    registry._catalogs.clear()
    yield home
    ssh.pool.close_all()
    for cat in registry._catalogs.values():
        cat.private.close()
        cat.public.close()
    registry._catalogs.clear()
    _unseal_dataset_caches(home)


# `make test` runs the suite as two pytest processes side by side: the tests marked `waits` (most of their
# time spent waiting: for Slurm's clock to end a job, for a timeout to pass) in one, everything else in the
# other. Tests marked `cluster_alone` change what every job on the cluster sees (they fill every node, cut
# every SSH session of the test user, turn node SSH off, wipe the test user's environments), so none runs
# while a `waits` test runs beside it: a `waits` test holds a lock shared (its function fixtures' runtimes
# included: no module fixture of theirs holds a job), a `cluster_alone` test holds it alone. flock alone
# favours the waiting side: it lets go between tests and takes the lock again before a `cluster_alone`
# test has woken, test after test. So both first pass a turnstile: a `cluster_alone` test keeps it while
# it waits and runs, which holds the waiting side's next test back until it is done.
_CLUSTER_LOCK = Path(os.environ.get("CS_TEST_CLUSTER_LOCK", "/tmp/cybershuttle-tests-cluster.lock"))


def _lock_file(path: Path):
    lock = open(path, "a")  # noqa: SIM115 - held across a yield
    try:
        os.chmod(path, 0o666)  # tests run as root; a developer's run may not: either may take it
    except PermissionError:
        pass
    return lock


@contextmanager
def _holding_the_cluster(mode: int):
    turnstile, lock = _lock_file(_CLUSTER_LOCK.with_name(_CLUSTER_LOCK.name + ".turn")), _lock_file(_CLUSTER_LOCK)
    try:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, mode)
        if mode == fcntl.LOCK_SH:
            turnstile.close()  # in: let the next one queue
        yield
    finally:
        lock.close()
        turnstile.close()


@pytest.fixture(autouse=True)
def _sharing_the_cluster(request):
    """A `waits` test shares the cluster with the other side's tests; a `cluster_alone` test has it alone."""
    if request.node.get_closest_marker("cluster_alone") is not None:
        mode = fcntl.LOCK_EX
    elif request.node.get_closest_marker("waits") is not None:
        mode = fcntl.LOCK_SH
    else:
        yield
        return
    with _holding_the_cluster(mode):
        yield


def _unseal_dataset_caches(home: Path) -> None:
    """Sealed dataset cache entries are immutable for root; open them so tmp_path can be deleted."""
    from cybershuttle.dataset import cache

    for entry in home.glob("users/*/cache/datasets/*"):
        if entry.is_dir() and not entry.is_symlink():
            cache.unseal(entry)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli():
    """Run `cybershuttle ARGS...` as a user would, in a subprocess."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> CliResult:
        proc = subprocess.run([str(CLI), *args], capture_output=True, text=True, input=input,
                              env={**os.environ, **(env or {})}, timeout=120)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@dataclass(frozen=True)
class Cluster:
    host: str
    port: int
    user: str
    key: str
    known_hosts: str
    partition: str
    other_user: str
    other_key: str
    state_dir: str
    no_unix_port: int = 0  # the same sshd: no forwards to Unix sockets, TCP forwards to 127.0.0.1 only

    def endpoint(self, **overrides):
        from cybershuttle.ssh import Endpoint

        values = dict(host=self.host, port=self.port, user=self.user, key=self.key, known_hosts=self.known_hosts)
        values.update(overrides)
        return Endpoint(**values)

    def resource_yaml(self, name: str, kind: str = "slurm", partition: str | None = None, more: str = "") -> str:
        """One entry of a resources file (the site file form) reaching this cluster's login node;
        `more`: further lines of the entry, already indented."""
        lines = [f"  - name: {name}", f"    kind: {kind}", f"    host: {self.host}", f"    port: {self.port}",
                 f"    user: {self.user}", f"    key: {self.key}", f"    known_hosts: {self.known_hosts}"]
        if partition:
            lines.append(f"    partition: {partition}")
        return "\n".join(lines) + "\n" + more


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The running loopback cluster; `make test` starts it."""
    proc = subprocess.run(["bash", str(CLUSTER_SH), "env"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"the loopback test cluster is not running ({proc.stderr.strip()}): "
                    f"start it with `sudo bash {CLUSTER_SH} start` or run `make test`", pytrace=False)
    env: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value
    return Cluster(
        host=env["CS_TEST_HOST"], port=int(env["CS_TEST_PORT"]), user=env["CS_TEST_USER"],
        key=env["CS_TEST_KEY"], known_hosts=env["CS_TEST_KNOWN_HOSTS"],
        partition=env["CS_TEST_SLURM_PARTITION"], other_user=env.get("CS_TEST_OTHER_USER", ""),
        other_key=env.get("CS_TEST_OTHER_KEY", ""), state_dir=env.get("CS_CLUSTER_DIR", ""),
        no_unix_port=int(env.get("CS_TEST_NO_UNIX_PORT", 0)),
    )


@pytest.fixture
def ssh_pool():
    """A fresh connection pool, closed after the test."""
    from cybershuttle.ssh import Pool

    pool = Pool()
    yield pool
    pool.close_all()


@pytest.fixture
def resources_yml(cluster, tmp_path):
    """The site file form from the issue, pointing at the loopback cluster."""
    path = tmp_path / "resources.yml"
    path.write_text("resources:\n" + cluster.resource_yaml("testcluster", partition=cluster.partition)
                    + cluster.resource_yaml("workstation", kind="ssh"))
    return path


@pytest.fixture
def registered(resources_yml):
    """`testcluster` (slurm), `workstation` (ssh) and `local`, registered for real."""
    from cybershuttle import compute

    results = compute.import_file(resources_yml)
    assert [r.saved for r in results] == [True, True], [r.to_dict() for r in results]
    compute.register_local()
    return {r.resource.name: r for r in results}


def start_local_kernel():
    """A real local ipykernel (the notebook's own kernel, on 127.0.0.1 ports as JupyterLab starts it)
    and a started client playing the frontend.

    jupyter_client picks free ports by binding and closing them; the kernel binds them again a moment
    later, and in between the other pytest process of `make test` may take one (CI saw the kernel die
    with "Address already in use"). A kernel that dies before it answers is started again on fresh ports,
    twice at most: one that cannot start at all still fails the test."""
    from jupyter_client.manager import KernelManager

    for attempt in range(3):
        km = KernelManager(kernel_name="python3")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            return km, kc
        except RuntimeError as exc:  # "Kernel died before replying ..." (or did not answer in time: no retry)
            stop_local_kernel(km, kc)
            if attempt == 2 or "died" not in str(exc):
                raise
    raise AssertionError("not reached")


def stop_local_kernel(km, kc) -> None:
    kc.stop_channels()
    km.shutdown_kernel(now=True)


@pytest.fixture
def local_kernel():
    """A real local ipykernel and a client playing the notebook frontend."""
    km, kc = start_local_kernel()
    yield kc
    stop_local_kernel(km, kc)


def run_ok(kc, code: str, hook=None, **kwargs):
    """Execute `code` through `kc`, asserting it succeeded; returns the reply."""
    kwargs.setdefault("timeout", 240)
    reply = kc.execute_interactive(code, output_hook=hook or (lambda m: None), **kwargs)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


LARGE_OUTPUT = 20_000_000


def assert_large_output_whole(kc) -> None:
    """20 MB of output, in one write and in 200,000 numbered writes of 100 bytes, reaches `kc` whole and
    in order (every hop of a runtime's sockets: a piece lost or reordered shows as a wrong text)."""
    one = f"import sys\nsys.stdout.write('x' * {LARGE_OUTPUT})\n"
    many = f"import sys\nfor i in range({LARGE_OUTPUT // 100}):\n    sys.stdout.write('%099d\\n' % i)\n"
    for code, expected in ((one, "x" * LARGE_OUTPUT),
                           (many, "".join("%099d\n" % i for i in range(LARGE_OUTPUT // 100)))):
        pieces: list[str] = []
        run_ok(kc, code, hook=lambda m: pieces.append(m["content"].get("text", "")), timeout=120)
        text = "".join(pieces)
        assert len(text) == len(expected) and text == expected, (code[:40], len(text))
