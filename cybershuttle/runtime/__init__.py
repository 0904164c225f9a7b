"""Runtimes: remote ipykernels on a compute resource, reached as if they were local.

A runtime is a compute job (a Slurm batch job, or a detached process over
SSH) whose command is ipykernel. The connection file is made here, with the
HMAC key and a fresh CurveZMQ key pair, written 0600 into the job directory
over the SSH channel (never on a command line), with every port 0: the
kernel picks its sockets *on its own host* and writes them back, and
`wait()` reads only those. The five sockets are then forwarded in-process
over the pooled SSH transport (see `forward`).

Privacy: where the SSH servers forward Unix sockets and the transport can
reach them, the kernel binds ZeroMQ `ipc` sockets in its 0700 job directory
and they are forwarded to Unix sockets in a 0700 directory here: no TCP port
anyone could connect to, so no CurveZMQ either, which halves the cost of
large output (a 20 MB write: 1.5x a local kernel with CurveZMQ over TCP).
Elsewhere (`node-tcp`, `AllowStreamLocalForwarding no`, a job directory whose
path is too long for a Unix socket) the kernel binds 127.0.0.1 ports and
every socket speaks CurveZMQ.

The catalog keeps the runtime record (resource, job, remote ports) and the
secrets live in a 0600 file in the profile, so a restarted notebook kernel
can re-attach to a runtime that is still running instead of starting another.

    from cybershuttle import runtime
    runtime.request("hpc", "testcluster", cpus=2)
    runtime.wait("hpc")
    kc = runtime.client("hpc")          # a BlockingKernelClient
    kc.execute_interactive("import socket; print(socket.gethostname())")
    runtime.stop("hpc")
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import shlex
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .. import compute, names, profile, ssh
from ..errors import CybershuttleError, NotFoundError
from ..registry import catalog, dump_record, load_record
from .forward import Forward, forwarder
from .openssh_forward import OpenSSHForwards
from .openssh_forward import Unavailable as OpenSSHUnavailable

log = logging.getLogger(__name__)

KIND = "runtime"
PORTS = ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")
KERNEL_REQUIREMENT = "ipykernel>=7"  # 7 understands CurveZMQ keys in the connection file
#: the runtime states in which it holds a job (compute/states.py defines active and final)
LIVE_STATES = tuple(s.value for s in compute.states.RuntimeState if s.active)


def kernel_requirements() -> tuple[str, ...]:
    """What every runtime's environment holds besides the setup file's packages (part of its cache key)."""
    return (KERNEL_REQUIREMENT, *durable.REQUIREMENTS)


class RuntimeError_(CybershuttleError):
    """A runtime that could not start, died, or is not ready."""


@dataclass(frozen=True)
class Runtime:
    """One runtime as recorded in the catalog (no secrets here)."""

    name: str
    resource: str
    job_id: str
    state: str = "REQUESTED"  # REQUESTED | READY | STOPPED | DEAD
    remote_host: str = "127.0.0.1"
    node: str | None = None  # the Slurm node the kernel runs on (None: the resource's host itself)
    remote_ports: dict[str, int] = field(default_factory=dict)
    encrypted: bool = True  # private: Unix sockets (ipc_path) or CurveZMQ; False only for benchmarks
    ipc_path: str | None = None  # the kernel's Unix sockets are "{ipc_path}-{port}" (None: TCP ports)
    request: dict[str, Any] = field(default_factory=dict)
    setup_file: str | None = None
    created: float = 0.0
    ready_at: float | None = None
    message: str | None = None
    subprocess: dict[str, Any] | None = None  # {"pid", "command", "ports"} of its background process
    durable: dict[str, Any] = field(default_factory=dict)  # durable.Options: warning, checkpoints, idle stop

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- public API ------------------------------------------------------------
def request(name: str, resource: str, *, cpus: int | None = None, memory: str | int | None = None,
            gpus: int | None = None, walltime: str | int | None = None, partition: str | None = None,
            account: str | None = None, qos: str | None = None, setup_file: str | None = None,
            nodes: int | None = None, tasks_per_node: int | None = None, encrypt: bool = True,
            options: durable.Options | None = None, resume: bool | str = False) -> tuple[Runtime, bool]:
    """Start runtime `name` on `resource`, or re-attach to it if it is still running.

    `nodes` > 1 (with `tasks_per_node`) asks for a multi-node allocation: the kernel runs
    on its first node, and a parallel step launched from the kernel uses every node.
    Returns the runtime and whether it was re-attached (no new job). `encrypt`
    exists for the latency benchmark's comparison; leave it on. `options` say
    how durable it is (see `durable`); `resume` restores the namespace of its last
    checkpoint (or, a label, of the checkpoint saved under it) before the first cell.
    """
    names.validate(name, "runtime name")
    if name == "local":
        raise CybershuttleError("'local' means this notebook's own kernel: choose another runtime name")
    existing = find(name)
    if existing is not None and existing.state in LIVE_STATES:
        job = compute.status(existing.job_id)
        if not job.final:
            if existing.resource != resource:
                raise RuntimeError_(f"runtime {name!r} is already running on {existing.resource}: "
                                    "stop it first or choose another name", next_step=("runtime.stop", name))
            return existing, True
        _mark(existing, "DEAD", _ended_message(job))
    options = options or durable.Options()
    res = compute.get(resource)
    restore = durable.resume_source(name, res, resume if isinstance(resume, str) else None) if resume else None
    walltime_s = compute.request.walltime_seconds(compute.request.normalize_walltime(walltime)) if walltime else None
    files, warn = durable.job_files(name, res, options, walltime_s, restore)
    key = uuid.uuid4().hex
    import zmq

    public, secret = zmq.curve_keypair()
    curve = {"curve_publickey": public.decode(), "curve_secretkey": secret.decode()} if encrypt else {}
    # "ipc": the kernel binds Unix sockets in its job directory and drops the CurveZMQ keys, or, where
    # their path would be too long, falls back to TCP with them (durable_kernel.py; `wait` reads which).
    sockets = "ipc" if encrypt and transports.unix_sockets(res) else "tcp"
    connection = {"ip": "127.0.0.1", "transport": sockets, "signature_scheme": "hmac-sha256", "key": key,
                  "kernel_name": "", **curve, **{port: 0 for port in PORTS}}
    command = transports.kernel_command(res, durable.KERNEL_COMMAND)  # after its transport's prelude, if any
    job = compute.execute(command, resource, cpus=cpus, memory=memory, gpus=gpus, walltime=walltime,
                          partition=partition, account=account, qos=qos, setup_file=setup_file,
                          nodes=nodes, tasks_per_node=tasks_per_node,
                          name=f"runtime-{name}"[:60], extra_pip=kernel_requirements(),
                          files={"connection.json": json.dumps(connection).encode(), **files}, warn_before=warn)
    _write_secrets(name, {"key": key, **curve})
    rt = Runtime(name=name, resource=resource, job_id=job.id, request=job.request, setup_file=job.setup_file,
                 created=time.time(), encrypted=bool(curve), durable=options.to_dict(),
                 ipc_path=f"{job.jobdir}/kernel" if sockets == "ipc" else None)  # `wait` reads what the kernel chose
    catalog().private.add(KIND, name, _to_data(rt), catalog().user, replace=True)
    _close_local(name)
    return rt, False


def wait(name: str, timeout: float | None = 600.0, progress: Callable[[str], None] | None = None) -> Runtime:
    """Block until the runtime's kernel has bound its ports; returns the READY runtime.

    `progress` receives one-line updates (job state changes, environment
    setup). A job that ends first raises RuntimeError_ with its last output.
    """
    rt = get(name)
    if rt.state == "READY":
        return rt
    if rt.state not in LIVE_STATES:
        raise RuntimeError_(f"runtime {name!r} is {rt.state.lower()}" + (f" ({rt.message})" if rt.message else "")
                            + ": request it again", next_step=("runtime.request", name))
    job = compute.get_job(rt.job_id)
    res = compute.get(job.resource)
    warmed: list[str] = []

    def warm(node: str) -> None:
        # The kernel needs a moment after its job starts: reach its node meanwhile (relay, SSH handshake).
        if not warmed and res.remote:
            warmed.append(node)
            threading.Thread(target=_warm_transport, args=(replace(rt, node=node), res), daemon=True).start()

    seen = compute.watch(job, _read_ports(job, res), timeout, progress, on_node=warm)
    if seen.ready is None:
        job = compute.status(job.id)
        if job.final or seen.ended:
            message = _ended_message(job)
            _mark(rt, "DEAD", message)
            # the node it landed on is named: a node that kills its jobs is the site's to hear about
            where = f" on node {seen.node}" if seen.node else ""
            raise RuntimeError_(f"runtime {name!r} did not start{where}: {message}")
        raise RuntimeError_(f"runtime {name!r} is not ready after {timeout:.0f} s (job {job.id} is {job.state}): "
                            "wait longer", next_step=("runtime.wait", name))
    ports = json.loads(seen.ready)
    ipc_path = ports.pop("ipc_path", None)
    rt = replace(rt, state="READY", remote_ports=ports, ipc_path=ipc_path, node=seen.node, ready_at=time.time(),
                 message=None)
    catalog().private.update(KIND, name, lambda _: _to_data(rt))
    return rt


def find(name: str) -> Runtime | None:
    entry = catalog().private.find(KIND, name)
    return _from_data(entry.name, entry.data) if entry else None


def get(name: str) -> Runtime:
    rt = find(names.validate(name, "runtime name"))
    if rt is None:
        known = [r.name for r in list_all()]
        raise NotFoundError(f"no runtime named {name!r}" + (f" (known: {', '.join(known)})" if known else "")
                            + ": request it first", next_step=("runtime.request", name))
    return rt


def list_all() -> list[Runtime]:
    return [_from_data(e.name, e.data) for e in catalog().private.list(KIND)]


def status(name: str) -> dict[str, Any]:
    """The runtime, its job's live state, and whether its transport is encrypted."""
    rt = get(name)
    job = compute.status(rt.job_id)
    if rt.state in LIVE_STATES and job.final:
        rt = _mark(rt, "DEAD", _ended_message(job))
    try:
        via = f" (transport {transports.name_for(rt, compute.get(rt.resource))})"
    except CybershuttleError:
        via = ""
    return {**rt.to_dict(), "job": job.to_dict(), "transport": privacy(rt) + via}


def privacy(rt: Runtime) -> str:
    """How runtime `rt`'s kernel traffic is kept private, in a few words."""
    if rt.ipc_path:
        return "private Unix sockets, forwarded over SSH"
    return "CurveZMQ-encrypted, forwarded over SSH" if rt.encrypted else "UNENCRYPTED"


def gone_reason(name: str) -> str | None:
    """Why runtime `name` is gone, or None while its job runs (or while that cannot be told)."""
    try:
        info = status(name)
    except CybershuttleError:
        return None  # unreachable right now: the caller's heartbeat decides
    if info["state"] in LIVE_STATES:
        return None
    return f"runtime {name} is gone: {info.get('message') or info['state'].lower()}"


def connection_info(name: str) -> dict[str, Any]:
    """Connection info for a local client: 127.0.0.1 ports forwarded to the kernel."""
    rt = get(name)
    with _local_lock:
        cached = _local.get(name)
    if cached is not None and cached[2] == rt.job_id:
        return dict(cached[1])
    if cached is not None:
        _close_local(name)  # forwards to a job another process stopped or replaced (a resume from the CLI)
    if rt.state != "READY":
        rt = wait(name)
    secrets = _read_secrets(name)
    res = compute.get(rt.resource)
    forwards: list[Forward] = []
    local_ports = {p: int(rt.remote_ports[p]) for p in PORTS}
    loopback = {"transport": "tcp", "ip": "127.0.0.1"}
    where: dict[str, Any] = loopback
    carrier: OpenSSHForwards | None = None  # an OpenSSH client carrying the forwards, where one does
    if res.remote:  # (a kernel on this machine listens on 127.0.0.1 ports: nothing to forward)
        transport = transports.for_runtime(rt, res)  # login host, node over SSH, or a relay in the allocation
        transport.start()
        host = transport.kernel_address(rt.remote_host)
        remotes = {p: f"{rt.ipc_path}-{p}" if rt.ipc_path else f"{host}:{p}" for p in local_ports.values()}
        if rt.ipc_path or transport.openssh() is not None:
            # Unix sockets here, in a fresh 0700 directory: a shared machine (JupyterHub) has other users.
            # (A kernel on TCP ports gets them too where OpenSSH carries it: its -L forwards to any address.)
            local_dir = tempfile.mkdtemp(prefix=_LOCAL_PREFIX, dir=_short_tmp())
            where = {"transport": "ipc", "ip": f"{local_dir}/kernel"}  # a fixed name: a socket's path is short
            carrier = _openssh_forwards(transport, rt, [(f"{where['ip']}-{p}", r) for p, r in remotes.items()])
            if carrier is None and not rt.ipc_path:  # TCP ports forwarded in-process: 127.0.0.1 ports here
                os.rmdir(local_dir)
                where = loopback
        for port_name in PORTS:
            port = local_ports[port_name]
            if carrier is not None:  # the client forwards; the forwarder only probes (a stopping kernel's port)
                opens = (lambda r=remotes[port]: transport.open_unix(r)) if rt.ipc_path else \
                    (lambda p=port: transport.open_channel(rt.remote_host, p))
                fwd = forwarder().add_probe(f"{where['ip']}-{port}", remotes[port], opens)
            elif rt.ipc_path:
                fwd = forwarder().add_unix(f"{where['ip']}-{port}", remotes[port], transport.open_unix)
            else:
                fwd = forwarder().add(rt.remote_host, port, transport.open_channel)
                local_ports[port_name] = fwd.local_port
            forwards.append(fwd)
    curve = {k: secrets[k] for k in ("curve_publickey", "curve_secretkey") if k in secrets and not rt.ipc_path}
    info = {**where, "signature_scheme": "hmac-sha256", "key": secrets["key"], **curve, **local_ports}
    with _local_lock:
        _local[name] = (forwards, info, rt.job_id, carrier)
    return dict(info)


#: `CYBERSHUTTLE_FORWARDER=python` keeps every runtime's forwards in this process (the OpenSSH client is used
#: where it can be otherwise): for a site whose OpenSSH client misbehaves, and for the benchmarks' comparison
FORWARDER_ENV = "CYBERSHUTTLE_FORWARDER"


def _openssh_forwards(transport: Any, rt: Runtime, pairs: list[tuple[str, str]]) -> OpenSSHForwards | None:
    """The OpenSSH client carrying the kernel's Unix sockets `pairs`, started; None where it cannot
    (then the in-process forwarder does: see `openssh_forward`)."""
    endpoint = transport.openssh()
    if not pairs or endpoint is None or os.environ.get(FORWARDER_ENV, "openssh") == "python":
        return None
    carrier = OpenSSHForwards(endpoint, pairs, rt.name)
    try:
        carrier.start()
    except OpenSSHUnavailable as exc:
        log.debug("runtime %s: forwarded in-process: %s", rt.name, exc)
        return None
    return carrier


def kernel_endpoint(rt: Runtime, res: compute.Resource) -> ssh.Endpoint:
    """Where the kernel's loopback is: the resource's host, or its compute node reached through it.

    The kernel binds 127.0.0.1 on the host it runs on, so a kernel on a compute
    node is reached by a second SSH session to that node inside the first (same
    user, key and known_hosts; port 22 unless the resource sets `node_port`),
    carried by our relay on the login node (`relay.py`: the
    login sshd's own direct-tcpip costs ~40 ms a cell to Nagle and delayed ACKs).
    """
    if not rt.node or rt.node in (res.facts.get("hostname"), res.host, "localhost"):
        return res.endpoint
    from .transports.node_ssh import node_endpoint

    return node_endpoint(res, rt.node)


def client(name: str):
    """A started BlockingKernelClient talking to the runtime's kernel."""
    from jupyter_client.blocking import BlockingKernelClient

    info = connection_info(name)
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.session.key = info["key"].encode()
    kc.start_channels()
    # Until the IOPub subscription has reached the kernel, its output is dropped
    # (ZeroMQ's slow joiner): wait until IOPub answers, asking on the control
    # channel, which a kernel busy with a cell (a re-attach) answers too.
    durable.wait_ready(kc, timeout=120)
    return kc


def stop(name: str) -> Runtime:
    """Stop the kernel's job and its subprocess, close its forwards and tunnels, delete its files and secrets."""
    rt = get(name)
    if rt.subprocess:
        stop_subprocess(name)
    tunnels.close_tunnels(name)
    _close_local(name)
    job = compute.status(rt.job_id)
    if not job.final:
        try:
            compute.cancel(job.id)
        except CybershuttleError as exc:
            if "already ended" not in str(exc):
                raise
    _remove_remote_files(job)
    _secrets_path(name).unlink(missing_ok=True)
    return _mark(rt, "STOPPED", None)


def restart(name: str, *, timeout: float | None = 600.0, progress: Callable[[str], None] | None = None) -> Runtime:
    """A fresh kernel for runtime `name`: its job is stopped and a new one asked with the same request.

    Waits until the new kernel is ready (see `wait`); a notebook's variables do not survive.
    """
    rt = get(name)
    stop(name)
    req = rt.request
    request(name, rt.resource, cpus=req.get("cpus"), memory=req.get("memory_mb"), gpus=req.get("gpus"),
            walltime=req.get("walltime"), partition=req.get("partition"), account=req.get("account"),
            qos=req.get("qos"), setup_file=rt.setup_file, encrypt=rt.encrypted,
            options=durable.Options.from_dict(rt.durable))
    return wait(name, timeout=timeout, progress=progress)


def reconcile(jobs: dict[str, compute.Job] | None = None) -> list[Runtime]:
    """Every runtime; those whose job ended behind their back (cancelled outside Cybershuttle, walltime,
    a crash) are marked DEAD first, with why.

    `jobs` (by id, with live states) spares asking the resources again when the caller
    just did; a runtime whose job is not among them is asked about on its own.
    """
    out = []
    for rt in list_all():
        if rt.state in LIVE_STATES:
            job = jobs.get(rt.job_id) if jobs is not None else None
            try:
                job = job or compute.status(rt.job_id)
            except CybershuttleError:
                job = None  # unreachable now: not evidence that it died
            if job is not None and job.final:
                rt = _mark(rt, "DEAD", _ended_message(job))
        out.append(rt)
    return out


# -- helpers ---------------------------------------------------------------
# name -> (forwards, info, job id, the OpenSSH client carrying them or None)
_local: dict[str, tuple[list[Forward], dict[str, Any], str, OpenSSHForwards | None]] = {}
_local_lock = threading.Lock()


def _close_local(name: str) -> None:
    with _local_lock:
        cached = _local.pop(name, None)
    if cached:
        if cached[3] is not None:
            cached[3].close()
        for fwd in cached[0]:
            forwarder().remove(fwd)
        _remove_local_dir(cached[1])
    transports.close(name)


_LOCAL_PREFIX = "cybershuttle-"  # of the 0700 directories of a runtime's local sockets


def _remove_local_dir(info: dict[str, Any]) -> None:
    """The 0700 directory of the local sockets of a connection `info` (and the sockets), if it has one."""
    where = os.path.dirname(info["ip"]) if info.get("transport") == "ipc" else ""
    if os.path.basename(where).startswith(_LOCAL_PREFIX):
        shutil.rmtree(where, ignore_errors=True)


@atexit.register
def _remove_local_sockets() -> None:
    """This process's local Unix sockets end with it, as their forwards do (and the OpenSSH clients carrying
    some: their sessions would end a moment later anyway, when their stdin closes): no directory left in /tmp."""
    with _local_lock:
        cached = list(_local.values())
    for _, info, _, carrier in cached:
        if carrier is not None:
            carrier.close()
        _remove_local_dir(info)


def _short_tmp() -> str | None:
    """Where the local Unix sockets go: the temporary directory, unless its path leaves too little of
    a socket path's ~107 bytes (then /tmp)."""
    base = tempfile.gettempdir()
    return base if len(base) <= 60 else "/tmp"


def forward_key(info: dict[str, Any], port_name: str) -> int | str:
    """What `forward.Forwarder.probe` takes for `port_name` of a connection `info` from `connection_info`."""
    if info.get("transport") == "ipc":
        return f"{info['ip']}-{int(info[port_name])}"
    return int(info.get(port_name, 0))


def _warm_transport(rt: Runtime, res: compute.Resource) -> None:
    try:
        transports.for_runtime(rt, res).start()
    except Exception:  # noqa: BLE001 - only a head start: connection_info connects again and says what failed
        pass


def _read_ports(job: compute.Job, res: compute.Resource) -> str:
    """A command that prints the kernel's ports (JSON) once it has written them, and fails before."""
    conn = shlex.quote(f"{job.jobdir}/connection.json")
    python = shlex.quote(res.python or "python3")
    code = ("import json,sys; d=json.load(open(sys.argv[1])); "
            f"p={{k: d.get(k, 0) for k in {list(PORTS)!r}}}; "
            "sys.exit(1) if not all(p.values()) else "
            "print(json.dumps(dict(p, ipc_path=d['ip']) if d.get('transport') == 'ipc' else p))")
    return f"{python} -c {shlex.quote(code)} {conn}"


def _ended_message(job: compute.Job) -> str:
    stopped = durable.ended_reason(job)  # the kernel gave its allocation back by itself (idle)
    if stopped:
        return stopped
    tail = ""
    try:
        out = compute.read_log(job.id, -2**20).data.decode(errors="replace").strip().splitlines()  # its last MiB
        # The conda environment's builder says in one line what failed (compute/envbuilder.py).
        failed = [ln[len("cybershuttle: error: "):] for ln in out if ln.startswith("cybershuttle: error: ")]
        if failed:
            return f"{failed[-1]} (job {job.id} ended {job.state})"
        if out:
            tail = "; last output: " + " | ".join(out[-3:])
    except CybershuttleError:
        pass
    code = f", exit code {job.exit_code}" if job.exit_code is not None else ""
    return f"job {job.id} ended {job.state}{code}{tail}"


def _remove_remote_files(job: compute.Job) -> None:
    try:
        # the connection file, and the kernel's Unix sockets (a kernel that was killed leaves them behind)
        compute.get(job.resource).shell().run(f"rm -f {shlex.quote(job.jobdir + '/connection.json')} "
                                              f"{shlex.quote(job.jobdir)}/kernel-*", timeout=30)
    except CybershuttleError:
        pass  # unreachable now: removed on the next contact (see issue note)


def _mark(rt: Runtime, state: str, message: str | None) -> Runtime:
    if state == "DEAD":
        # Ended behind our back (cancelled outside Cybershuttle, walltime, a crash): its connection file
        # may survive the kernel, so remove it on this first contact.
        try:
            _remove_remote_files(compute.get_job(rt.job_id))
        except CybershuttleError:
            pass
    new = replace(rt, state=state, message=message)
    catalog().private.update(KIND, rt.name, lambda _: _to_data(new))
    return new


def _secrets_path(name: str) -> Path:
    return profile.active().subdir("runtimes") / f"{name}.json"


def _write_secrets(name: str, secrets: dict[str, str]) -> None:
    path = _secrets_path(name)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(secrets, fh)
    os.replace(tmp, path)


def _read_secrets(name: str) -> dict[str, str]:
    try:
        return json.loads(_secrets_path(name).read_text())
    except FileNotFoundError:
        raise RuntimeError_(f"the keys of runtime {name!r} are missing from this profile: stop it and request "
                            "it again") from None


def _to_data(rt: Runtime) -> dict[str, Any]:
    return dump_record(rt, "name")


def _from_data(name: str, data: dict[str, Any]) -> Runtime:
    return load_record(Runtime, "name", name, data)


# Actions that live in their own modules, part of this one's API (imported last: they use the above).
from . import durable, tunnels  # noqa: E402
from .processes import start_subprocess, stop_subprocess  # noqa: E402
from .transfer import copy  # noqa: E402
from .terminal import terminal_command  # noqa: E402
from . import transports  # noqa: E402
