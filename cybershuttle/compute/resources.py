"""Compute resources: what they are, how they are checked and registered.

A resource is `local` (this machine), `ssh` (a workstation reached over SSH)
or `slurm` (a cluster whose login node is reached over SSH, or this machine
when it is a Slurm node: no `host`) -- or of any kind an installed scheduler
serves (compute/schedulers: the kind picks the scheduler). Registration
connects, checks, detects what the resource offers (the scheduler's own
checks: Slurm partitions and limits; GPUs, Lmod, Python, free disk, conda)
and saves only when every required check passed.

The parts that belong to one person (login name, key, Slurm account, default
partition, QoS) can be set per user with `configure()`: they are kept in that
user's private catalog and override a site resource's defaults.

So do the facts that describe an account rather than the machine (PER_USER_FACTS:
the home directory and the free space in it). Registration probes them in the
registering account; anyone else using a public resource (or a login configured
in place of the registered one) gets their own from `home_dir()`, probed once
over their own login and kept beside their settings.
"""
from __future__ import annotations

import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .. import names, ssh, trust
from ..errors import CybershuttleError, SSHError
from ..registry import Entry, catalog
from . import schedulers
from .shell import LocalShell, RemoteShell, Shell

KIND = "compute"
PROFILE_KIND = "compute-profile"
PERSONAL_FIELDS = ("user", "key", "account", "partition", "qos")
#: Facts of the account they were probed in, not of the machine. Host facts (hostname, CPUs,
#: partitions, transports) and the interpreter (what trust pins) are the same for every user.
PER_USER_FACTS = ("home", "free_disk_mb")


class ResourceSpecError(CybershuttleError):
    """A resource description with a missing or wrong field."""


@dataclass(frozen=True)
class Resource:
    """One registered compute resource, with the active user's own settings applied."""

    name: str
    kind: str
    host: str | None = None  # None: this machine
    port: int = 22
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    python: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    scope: str = "private"
    conda: dict[str, Any] = field(default_factory=dict)  # the site's conda channels (see compute/condaenv.py)
    transport: str | None = None  # how runtimes on compute nodes are reached (None: the detected one)
    node_port: int = 22  # the compute nodes' SSH port (the login host's `port` is often a gateway's)

    @property
    def remote(self) -> bool:
        return bool(self.host)

    @property
    def endpoint(self) -> ssh.Endpoint:
        trust.require(KIND, self)  # another user's host and host key: reached only when trusted
        if not self.host:
            raise CybershuttleError(f"resource {self.name!r} is this machine; it has no SSH endpoint")
        return ssh.Endpoint(self.host, self.port, self.user or _login_name(), self.key, self.known_hosts)

    def shell(self, prompter: ssh.Prompter | None = None) -> Shell:
        trust.require(KIND, self)  # another user's interpreter and host: used only when trusted
        return RemoteShell(self.endpoint, prompter) if self.remote else LocalShell()

    @property
    def partitions(self) -> list[dict[str, Any]]:
        return list(self.facts.get("partitions", []))

    def partition_info(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.partitions if p["name"] == name), None)

    @property
    def default_partition(self) -> str | None:
        if self.partition:
            return self.partition
        return next((p["name"] for p in self.partitions if p.get("default")), None)

    def to_data(self) -> dict[str, Any]:
        """What the catalog keeps (everything but name and scope)."""
        data = asdict(self)
        data.pop("name")
        data.pop("scope")
        return data


@dataclass(frozen=True)
class Check:
    """One registration check, as the CLI, the REST API and the form show it."""

    name: str
    ok: bool
    required: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Registration:
    resource: Resource
    checks: list[Check]
    saved: bool

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.resource.name, "saved": self.saved, "ok": self.ok,
                "checks": [c.to_dict() for c in self.checks], "resource": self.resource.to_data()}


# -- public API ------------------------------------------------------------
def kinds() -> list[str]:
    """Every resource kind some installed scheduler serves (local, ssh, slurm, ...)."""
    return list(schedulers.kinds())


def get(name: str) -> Resource:
    """The resource called `name`, with the user's own settings applied."""
    return _from_entry(catalog().get(KIND, name))


def list_all() -> list[Resource]:
    """Every resource the user can see (`cybershuttle compute list`)."""
    return [_from_entry(e) for e in catalog().list(KIND)]


def register_local() -> tuple[Resource, bool]:
    """Register this machine as resource `local` (idempotent, no checks needed)."""
    cat = catalog()
    existing = cat.find(KIND, "local")
    if existing is not None:
        return _from_entry(existing), False
    shell = LocalShell()
    facts = {"cpus": os.cpu_count() or 1, "memory_mb": _local_memory_mb(), "gpus": 0,
             "home": str(Path.home()), "hostname": socket.gethostname()}
    facts.update(_probe_tools(shell))
    resource = Resource("local", "local", python=sys.executable, facts=facts)
    try:
        cat.add(KIND, "local", resource.to_data())
    except CybershuttleError:
        # Registered meanwhile by another thread or process (a new user's server answers several
        # sidebar lists at once, each wanting `local`): that one is as good.
        existing = cat.find(KIND, "local")
        if existing is None:
            raise
        return _from_entry(existing), False
    return resource, True


def validate_and_register(spec: dict[str, Any], *, public: bool = False, replace_existing: bool = False,
                          prompter: ssh.Prompter | None = None, save: bool = True) -> Registration:
    """Check a resource described by `spec` and save it when all required checks pass.

    `spec` holds name, kind, host, port, user, key, known_hosts, partition,
    account, qos (the keys of a `resources.yml` entry). Returns every check's
    result, whether or not it was saved. `save=False` only runs the checks
    (the web form's "test connection").
    """
    resource = _parse_spec(spec)
    if not replace_existing and catalog().find(KIND, resource.name) is not None:
        raise CybershuttleError(f"a compute resource named {resource.name!r} already exists: "
                                "choose another name, or re-import to update it")
    checks, facts = _inspect(resource, prompter)
    resource = replace(resource, facts=facts, python=resource.python or facts.get("python"))
    registration = Registration(resource, checks, saved=False)
    if registration.ok and save:
        catalog().add(KIND, resource.name, resource.to_data(), public=public, replace=replace_existing)
        registration.saved = True
    return registration


def import_file(path: str | os.PathLike[str], *, public: bool = False,
                prompter: ssh.Prompter | None = None) -> list[Registration]:
    """Validate and register every resource of a `resources.yml` (re-import updates)."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ResourceSpecError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ResourceSpecError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    items = doc.get("resources") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise ResourceSpecError(f"{path}: expected a top-level 'resources:' list of resources")
    specs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ResourceSpecError(f"{path}: resources[{i}] must be a mapping with name, kind, host, ...")
        specs.append(item)
    for i, item in enumerate(specs):  # every spec is checked before anything connects
        try:
            _parse_spec(item)
        except ResourceSpecError as exc:
            raise ResourceSpecError(f"{path}: resources[{i}]: {exc}") from None
    return [validate_and_register(item, public=public, replace_existing=True, prompter=prompter) for item in specs]


def configure(name: str, **settings: str | None) -> Resource:
    """Set the active user's own login, key, account, partition or QoS on a resource."""
    unknown = set(settings) - set(PERSONAL_FIELDS)
    if unknown:
        raise ResourceSpecError(f"cannot configure {', '.join(sorted(unknown))}: only {', '.join(PERSONAL_FIELDS)}")
    resource = get(name)
    values = {k: v for k, v in settings.items() if v is not None}
    if "key" in values:
        values["key"] = _existing_file(values["key"], "key")
    if "partition" in values and resource.partitions and resource.partition_info(values["partition"]) is None:
        raise ResourceSpecError(unknown_partition(resource, values["partition"]))
    cat = catalog()
    current = cat.private.find(PROFILE_KIND, name)
    merged = {**(current.data if current else {}), **values}
    cat.private.add(PROFILE_KIND, name, merged, cat.user, replace=True)
    return get(name)


def home_dir(res: Resource, shell: Shell | None = None) -> str:
    """The active user's home directory on `res`: where their job, runtime and template-run directories go.

    Recorded at registration for the one who registered, so their hot paths make no round
    trip; another user's is read over their own login (so only once they trust the
    resource: `res.shell()` asks) the first time, and kept in their private catalog.
    """
    home = res.facts.get("home") or _remembered(res, _personal(res.name)).get("home")
    if home:
        return home
    values = _basic_facts(_key_values((shell or res.shell()).run(_PER_USER, timeout=30).stdout))
    facts = {k: values[k] for k in PER_USER_FACTS if values.get(k) is not None}
    if not facts.get("home"):
        raise CybershuttleError(f"{res.name}: $HOME is empty for {res.user or _login_name()} there; "
                                f"check the login with `cybershuttle compute configure {res.name} --user NAME`")
    cat = catalog()
    facts["login"] = _login(res)
    current = cat.private.find(PROFILE_KIND, res.name)
    cat.private.add(PROFILE_KIND, res.name, {**(current.data if current else {}), "facts": facts}, cat.user,
                    replace=True)
    return facts["home"]


def status(resource: Resource, timeout: float = 10.0) -> dict[str, Any]:
    """Live status: reachable, and what its scheduler says (for Slurm the idle/total nodes)."""
    try:
        return schedulers.for_resource(resource).load(resource.shell(), timeout)
    except CybershuttleError as exc:
        return {"reachable": False, "idle_nodes": None, "nodes": None, "error": str(exc)}


def statuses(resources: list[Resource]) -> dict[str, dict[str, Any]]:
    """`status()` of several resources at once (one thread each)."""
    if not resources:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(resources))) as pool:
        return dict(zip([r.name for r in resources], pool.map(status, resources)))


def soonest(choices: str, partition: str | None = None) -> tuple[str, str | None]:
    """Pick, among `R:P[,R2:P2...]`, the choice that can start a job soonest.

    Ranked by: idle nodes in the partition (a job starts now), then the number
    of jobs already pending there, then the order given. A plain SSH or local
    resource starts at once. Unreachable or unknown choices come last.
    """
    parsed = []
    for item in choices.split(","):
        name, _, part = item.strip().partition(":")
        parsed.append((name, part or partition))
    if len(parsed) == 1:
        return parsed[0]
    ranked = []
    for order, (name, part) in enumerate(parsed):
        try:
            ranked.append((_start_score(get(name), part), order, (name, part)))
        except CybershuttleError:
            ranked.append(((3, 0), order, (name, part)))
    return min(ranked)[2]


# -- helpers ---------------------------------------------------------------
def _start_score(res: Resource, part: str | None) -> tuple[int, int]:
    sched = schedulers.for_resource(res)
    return sched.start_rank(res.shell(), part)


def _from_entry(entry: Entry) -> Resource:
    data = dict(entry.data)
    known = {f.name for f in fields(Resource)}
    personal = _personal(entry.name)
    data.update({k: v for k, v in personal.items() if k in PERSONAL_FIELDS})
    res = Resource(name=entry.name, scope=entry.scope,
                   **{k: v for k, v in data.items() if k in known and k != "scope"})
    if catalog().owns(entry) and res.user == entry.data.get("user"):
        return res  # probed in this very account at registration
    shared = {k: v for k, v in res.facts.items() if k not in PER_USER_FACTS}
    return replace(res, facts={**shared, **_remembered(res, personal)})


def _personal(name: str) -> dict[str, Any]:
    """The active user's own settings (and per-user facts) for resource `name`."""
    found = catalog().private.find(PROFILE_KIND, name)
    return found.data if found is not None else {}


def _remembered(res: Resource, personal: dict[str, Any]) -> dict[str, Any]:
    """The per-user facts `home_dir` kept, while they are still those of the login `res` uses."""
    facts = personal.get("facts") or {}
    return {k: facts[k] for k in PER_USER_FACTS if k in facts} if facts.get("login") == _login(res) else {}


def _login(res: Resource) -> str:
    return f"{res.user or _login_name()}@{res.host}:{res.port}" if res.remote else f"{_login_name()}@this machine"


def _port(name: str, key: str, port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ResourceSpecError(f"resource {name!r}: {key} must be a number from 1 to 65535, got {port!r}")
    return port


def _parse_spec(spec: dict[str, Any]) -> Resource:
    if not isinstance(spec, dict):
        raise ResourceSpecError("a resource must be a mapping with name, kind, host, ...")
    allowed = {f.name for f in fields(Resource)} - {"facts", "scope"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ResourceSpecError(f"unknown key(s) {', '.join(unknown)}: use {', '.join(sorted(allowed))}")
    name = names.validate(spec.get("name"), "compute resource name")
    kind = spec.get("kind")
    known = kinds()
    if kind not in known:
        raise ResourceSpecError(f"resource {name!r}: kind must be one of {', '.join(known)}, got {kind!r} "
                                "(another kind needs its scheduler installed)")
    host = spec.get("host")
    if host is not None and (not isinstance(host, str) or not host or any(c.isspace() for c in host)
                             or host.startswith("-")):
        raise ResourceSpecError(f"resource {name!r}: host must be a host name or address, got {host!r}")
    if kind == "ssh" and not host:
        raise ResourceSpecError(f"resource {name!r}: an ssh resource needs a host")
    if kind == "local" and host:
        raise ResourceSpecError(f"resource {name!r}: a local resource has no host (use kind ssh)")
    port = _port(name, "port", spec.get("port", 22))
    node_port = _port(name, "node_port", spec.get("node_port", 22))
    values: dict[str, Any] = {"name": name, "kind": kind, "host": host or None, "port": port, "node_port": node_port}
    for key in ("user", "partition", "account", "qos", "python", "transport"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ResourceSpecError(f"resource {name!r}: {key} must be a non-empty string, got {value!r}")
        if value is not None and key != "python":
            names.validate(value, f"{key} of resource {name!r}")
        values[key] = value
    if values["transport"] is not None:
        from ..runtime import transports

        if values["transport"] not in transports.installed():
            raise ResourceSpecError(f"resource {name!r}: transport must be one of {', '.join(transports.installed())}, "
                                    f"got {values['transport']!r}")
    if spec.get("conda") is not None:
        from .condaenv import validate_settings

        try:
            values["conda"] = validate_settings(spec["conda"], name)
        except CybershuttleError as exc:
            raise ResourceSpecError(str(exc)) from None
    for key in ("key", "known_hosts"):
        if spec.get(key) is not None:
            values[key] = _existing_file(spec[key], f"{key} of resource {name!r}")
    return Resource(**values)


def _inspect(resource: Resource, prompter: ssh.Prompter | None) -> tuple[list[Check], dict[str, Any]]:
    checks: list[Check] = []
    facts: dict[str, Any] = {}
    if resource.remote:
        try:
            conn = ssh.connect(resource.endpoint, prompter)
            key = conn.transport.get_remote_server_key()
            checks.append(Check("connect", True, True, f"{resource.endpoint.label}, host key {key.get_name()} "
                                                       f"{ssh.fingerprint(key)} matches known_hosts"))
        except SSHError as exc:
            checks.append(Check("connect", False, True, str(exc)))
            return checks, facts
    shell = resource.shell(prompter)
    try:
        facts.update(_probe_basics(shell))
        facts.update(_probe_tools(shell))
    except CybershuttleError as exc:
        checks.append(Check("shell", False, True, f"cannot run commands: {exc}"))
        return checks, facts
    python = facts.get("python")
    sched = schedulers.for_resource(resource)
    checks.append(Check("python", bool(python), sched.needs_python,
                        f"{python} ({facts.get('python_version')})" if python else
                        "no python3 on PATH in a login shell (needed to run jobs and kernels)"))
    checks += sched.inspect(shell, facts)
    from ..runtime import transports  # the runtime layer's registry, asked only here

    checks += transports.detect(resource, shell, facts)
    checks.append(Check("lmod", bool(facts.get("lmod")), False,
                        f"Lmod {facts['lmod']}" if facts.get("lmod") else "no Lmod (module files cannot be loaded)"))
    conda = facts.get("conda")
    checks.append(Check("conda", bool(conda), False, conda or "no conda/micromamba: Cybershuttle builds setup files' "
                                                              "conda environments with py-rattler here"))
    disk = facts.get("free_disk_mb")
    checks.append(Check("disk", disk is not None, False, f"{disk} MB free in {facts.get('home')}" if disk is not None
                        else "could not read free disk space"))
    return checks, facts


def unknown_partition(resource: Resource, wanted: str) -> str:
    known = ", ".join(p["name"] for p in resource.partitions) or "none"
    return f"{resource.name} has no partition {wanted!r} (partitions: {known})"


_PER_USER = ('printf "home=%s\\n" "$HOME"; '
             "df -Pk \"$HOME\" | awk 'NR==2 {printf \"free_disk_kb=%s\\n\", $4}'")
_BASICS = (
    _PER_USER + '; printf "hostname=%s\\n" "$(hostname)"; '
    'printf "cpus=%s\\n" "$(nproc)"; '
    "awk '/MemTotal/ {printf \"memory_kb=%s\\n\", $2}' /proc/meminfo; "
    'if command -v nvidia-smi >/dev/null 2>&1; then printf "gpus=%s\\n" "$(nvidia-smi -L | wc -l)"; fi'
)
_TOOLS = (
    'p=$(command -v python3); if [ -n "$p" ]; then printf "python=%s\\n" "$p"; '
    'printf "python_version=%s\\n" "$("$p" -c "import platform; print(platform.python_version())")"; fi; '
    'if [ -n "$LMOD_VERSION" ]; then printf "lmod=%s\\n" "$LMOD_VERSION"; fi; '
    'for c in micromamba mamba conda; do q=$(command -v $c) && { printf "conda=%s\\n" "$q"; break; }; done; '
    'q=$(command -v uv) && printf "uv=%s\\n" "$q"; true'
)


def _probe_basics(shell: Shell) -> dict[str, Any]:
    return _basic_facts(_key_values(shell.run(_BASICS, timeout=30).stdout))


def _basic_facts(values: dict[str, str]) -> dict[str, Any]:
    facts: dict[str, Any] = {"home": values.get("home"), "hostname": values.get("hostname")}
    for key, out, div in (("cpus", "cpus", 1), ("memory_kb", "memory_mb", 1024), ("free_disk_kb", "free_disk_mb", 1024),
                          ("gpus", "gpus", 1)):
        if values.get(key, "").isdigit():
            facts[out] = int(values[key]) // div
    facts.setdefault("gpus", 0)
    return facts


def _probe_tools(shell: Shell) -> dict[str, Any]:
    # A login shell: that is where HPC sites put module, conda and their Pythons.
    return _key_values(shell.run(_TOOLS, timeout=30, login_shell=True).stdout)


def _key_values(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            out[key] = value.strip()
    return out


def _existing_file(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ResourceSpecError(f"{what} must be a file path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ResourceSpecError(f"{what}: {path} does not exist")
    return str(path.resolve())


def _local_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 0


def _login_name() -> str:
    import getpass

    return getpass.getuser()
