"""Conda environments built on a resource from a setup file's conda packages.

What is asked (match specs, channels, the resource's platform, the pip list) is hashed; the
environment lives in `~/.cybershuttle/envs/<hash>` on the resource and is built once there
by `envbuilder.py`, from the job's preamble, before the command (the kernel) starts: later
jobs asking for the same thing find it ready. Channel names resolve through the resource's
`conda:` settings, so a site decides where `conda-forge` really is (a mirror, a `file://`
channel on the cluster filesystem):

    conda:
      channels: {conda-forge: file:///srv/conda/conda-forge}   # one channel's URL
      channel_alias: file:///srv/conda                          # every other name: ALIAS/NAME
      default_channels: [conda-forge]                           # when the file names none
      tool: auto            # auto (the resource's micromamba/mamba/conda, else py-rattler) | rattler | ...

Without settings a channel is passed by name and the conda tool on the resource resolves it.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import CybershuttleError, NotFoundError
from .shell import line_sink

ENVS_DIR = ".cybershuttle/envs"  # under the user's home on the resource
MARKER = "cybershuttle-env.json"
DEFAULT_CHANNELS = ("conda-forge",)
RATTLER_VERSION = "0.28.0"  # py-rattler installed on resources without conda (abi3 wheels, Python >= 3.10)
TOOLS = ("auto", "rattler", "micromamba", "mamba", "conda")
SETTINGS_KEYS = ("channels", "channel_alias", "default_channels", "tool")
BUILDER = Path(__file__).with_name("envbuilder.py")
_MACHINES = {"x86_64": "linux-64", "amd64": "linux-64", "aarch64": "linux-aarch64", "arm64": "linux-aarch64",
             "ppc64le": "linux-ppc64le", "s390x": "linux-s390x"}
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class CondaSettingsError(CybershuttleError):
    """A resource's `conda:` settings with a wrong key or value."""


class EnvironmentNotFoundError(NotFoundError):
    """No cached environment by that hash on the resource."""


@dataclass(frozen=True)
class CondaSpec:
    """Everything that defines one conda environment (and so its hash)."""

    specs: tuple[str, ...]
    channels: tuple[tuple[str, str], ...]  # (name, url) in priority order
    platform: str
    pip: tuple[str, ...] = ()
    tool: str = "auto"
    requested: tuple[str, ...] = ()  # the specs as the file wrote them (shown by `envs list`; not hashed)

    @property
    def env_hash(self) -> str:
        key = json.dumps({"specs": list(self.specs), "channels": [url for _, url in self.channels],
                          "platform": self.platform, "pip": list(self.pip)})
        return "conda-" + hashlib.sha256(key.encode()).hexdigest()[:16]

    def builder_input(self) -> dict[str, Any]:
        return {"hash": self.env_hash, "envs_dir": "~/" + ENVS_DIR, "specs": list(self.specs),
                "channels": [{"name": n, "url": u} for n, u in self.channels], "platform": self.platform,
                "pip": list(self.pip), "tool": self.tool, "rattler": RATTLER_VERSION,
                "requested": list(self.requested or self.specs)}


def validate_settings(value: Any, resource: str) -> dict[str, Any]:
    """A resource's `conda:` settings, checked (a resources.yml key)."""
    where = f"resource {resource!r}: conda"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CondaSettingsError(f"{where} must be a mapping with {', '.join(SETTINGS_KEYS)}")
    unknown = sorted(set(value) - set(SETTINGS_KEYS))
    if unknown:
        raise CondaSettingsError(f"{where}: unknown key(s) {', '.join(unknown)}: use {', '.join(SETTINGS_KEYS)}")
    out: dict[str, Any] = {}
    channels = value.get("channels") or {}
    if not isinstance(channels, dict) or not all(isinstance(k, str) and _is_url(v) for k, v in channels.items()):
        raise CondaSettingsError(f"{where}.channels must map channel names to URLs "
                                 "(e.g. conda-forge: file:///srv/conda/conda-forge)")
    if channels:
        out["channels"] = {k: _strip(v) for k, v in channels.items()}
    alias = value.get("channel_alias")
    if alias is not None:
        if not _is_url(alias):
            raise CondaSettingsError(f"{where}.channel_alias must be a URL such as file:///srv/conda, got {alias!r}")
        out["channel_alias"] = _strip(alias)
    defaults = value.get("default_channels")
    if defaults is not None:
        if not isinstance(defaults, list) or not defaults or not all(isinstance(c, str) and c for c in defaults):
            raise CondaSettingsError(f"{where}.default_channels must be a list of channel names or URLs")
        out["default_channels"] = list(defaults)
    tool = value.get("tool", "auto")
    if tool not in TOOLS:
        raise CondaSettingsError(f"{where}.tool must be one of {', '.join(TOOLS)}, got {tool!r}")
    if tool != "auto":
        out["tool"] = tool
    return out


def resolve_channel(name: str, settings: dict[str, Any]) -> tuple[str, str]:
    """(name, url) of a channel as the file or a spec names it; the site's settings win."""
    if _is_url(name):
        return name, _strip(name)
    if name.startswith("/"):
        return name, "file://" + _strip(name)
    mapped = settings.get("channels", {}).get(name)
    if mapped:
        return name, mapped
    alias = settings.get("channel_alias")
    if alias:
        return name, f"{alias}/{name}"
    return name, name  # the conda tool on the resource resolves a bare name itself


def spec_for(conda: list[str] | tuple[str, ...], file_channels: list[str] | tuple[str, ...], pip: tuple[str, ...],
             platform: str, settings: dict[str, Any]) -> CondaSpec:
    """The CondaSpec for a setup file's conda list on a resource with `settings`."""
    names = list(file_channels) or list(settings.get("default_channels") or DEFAULT_CHANNELS)
    channels = [resolve_channel(n, settings) for n in names]
    specs = []
    for raw in conda:
        text = " ".join(str(raw).split())
        if "::" in text:
            # `bioconda::hmmer`: the package comes from that channel only; the channel joins the
            # search list (after the file's), as conda does.
            prefix, _, rest = text.rpartition("::")
            channel = resolve_channel(prefix, settings)
            if all(channel[1] != url for _, url in channels):
                channels.append(channel)
            text = f"{channel[1]}::{rest}"
        specs.append(text)
    if pip and not any(package_name(s) == "python" for s in specs):
        specs.append("python")  # pip packages (and a kernel) need a Python in the environment
    return CondaSpec(tuple(specs), tuple(channels), platform, tuple(pip), settings.get("tool", "auto"),
                     tuple(" ".join(str(raw).split()) for raw in conda))


def package_name(spec: str) -> str:
    rest = spec.rpartition("::")[2].strip()
    match = _NAME.match(rest)
    return match.group(0).lower() if match else rest


def platform_of(machine: str, system: str = "Linux") -> str:
    """conda's platform name for `uname -s`/`uname -m`."""
    machine = machine.strip()
    if system.strip() == "Darwin":
        return "osx-arm64" if machine == "arm64" else "osx-64"
    return _MACHINES.get(machine, f"linux-{machine}")


def preamble(spec: CondaSpec, python: str, builder: str) -> list[str]:
    """Bash lines that build (first time) and activate the environment inside a job."""
    env = f'"$HOME"/{ENVS_DIR}/{spec.env_hash}'
    return [
        f"CS_ENV={env}",
        f'if [ ! -e "$CS_ENV/{MARKER}" ]; then',
        f"  [ -f {builder} ] || {{ echo 'cybershuttle: error: the environment builder is missing on this resource "
        "(removed since this session checked): request again' >&2; exit 98; }",
        f"  {shlex.quote(python)} {builder} build {shlex.quote(json.dumps(spec.builder_input()))} || exit 98",
        "fi",
        # What `conda activate` does for a job: the prefix first on PATH, then the packages'
        # own activation scripts (compilers, CUDA, ... set variables there).
        'export CONDA_PREFIX="$CS_ENV" CONDA_DEFAULT_ENV="$CS_ENV" PATH="$CS_ENV/bin:$PATH"',
        'for f in "$CS_ENV"/etc/conda/activate.d/*.sh; do [ -r "$f" ] && . "$f"; done; unset f',
    ]


# -- cached environments on a resource ------------------------------------------------------
_LIST = r"""
import json, os, subprocess, sys
envs = os.path.expanduser(sys.argv[1]); out = []
for name in sorted(os.listdir(envs)) if os.path.isdir(envs) else []:
    path = os.path.join(envs, name)
    if name.startswith(".") or name.endswith(".lock") or not os.path.isdir(path):
        continue
    meta, kind = {}, "pip"
    if os.path.exists(os.path.join(path, sys.argv[2])):
        kind = "conda"
        try:
            meta = json.load(open(os.path.join(path, sys.argv[2])))
        except ValueError:
            pass
    elif not os.path.exists(os.path.join(path, ".ready")):
        kind = "incomplete"
    du = subprocess.run(["du", "-sk", path], stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
    out.append({"hash": name, "kind": kind, "path": path, "size_kb": int(du[0]) if du else None,
                "created": meta.get("created") or os.stat(path).st_mtime,
                "specs": meta.get("requested") or meta.get("specs", []),
                "channels": [c.get("name") for c in meta.get("channels", [])], "pip": meta.get("pip", []),
                "platform": meta.get("platform"), "tool": meta.get("tool"),
                "packages": len(meta.get("packages", []))})
print(json.dumps(out))
"""


def list_envs(resource: str) -> list[dict[str, Any]]:
    """The environments cached on `resource` (conda and pip), with their sizes."""
    from . import resources

    res = resources.get(resource)
    python = shlex.quote(res.python or "python3")
    out = res.shell().run(f"{python} -c {shlex.quote(_LIST)} {shlex.quote('~/' + ENVS_DIR)} {MARKER}",
                          timeout=120).stdout
    items = json.loads(out.strip().splitlines()[-1]) if out.strip() else []
    for item in items:
        item["resource"] = res.name
        item["size_mb"] = round(item["size_kb"] / 1024, 1) if item.get("size_kb") is not None else None
    return items


def remove_env(resource: str, env_hash: str, force: bool = False) -> dict[str, Any]:
    """Delete one cached environment; refused while an unfinished job of yours uses it (unless `force`)."""
    from . import job as jobs
    from . import resources

    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", env_hash or "") or env_hash.startswith("."):
        raise CybershuttleError(f"{env_hash!r} is not an environment hash: see `cybershuttle compute envs list`")
    res = resources.get(resource)
    known = {e["hash"]: e for e in list_envs(resource)}
    if env_hash not in known:
        raise EnvironmentNotFoundError(f"no environment {env_hash} on {res.name}: see "
                                       f"`cybershuttle compute envs list --resource {res.name}`")
    if not force:
        using = [j.id for j in jobs.list_jobs(res.name) if j.env_hash == env_hash]
        if using:
            raise CybershuttleError(f"environment {env_hash} is in use by job(s) {', '.join(using)}: stop them first, "
                                    "or remove it anyway with --force")
    path = shlex.quote(known[env_hash]["path"])
    # Rename first (atomic: a job starting now rebuilds rather than sees half a directory), then delete.
    res.shell().run(f"T={path}.removing-$$ && mv {path} \"$T\" && rm -rf \"$T\"", timeout=600)
    return known[env_hash]


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and bool(re.match(r"^[a-z][a-z0-9+.\-]*://\S+$", value))


def _strip(url: str) -> str:
    return url.rstrip("/") if not url.endswith(":///") else url


class EnvironmentBuildError(CybershuttleError):
    """The environment could not be built (the message names the packages and channels)."""


def build(resource: str, setup_file: str, *, extra_pip: tuple[str, ...] = (),
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build (or find) the environment `setup_file` asks for on `resource`, now, without a job.

    Runs the same preamble a job runs (modules, then the conda environment, then pip) in a
    login shell on the resource; `progress` receives its `cybershuttle: ...` lines. Returns
    the environment's entry as `list_envs` shows it.
    """
    from .. import setupfile
    from . import environment, resources

    res = resources.get(resource)
    setup = setupfile.load(setup_file)
    shell = res.shell()
    env = environment.check(res, shell, environment.from_setup(res, setup, extra_pip), setup)
    if env.conda is None:
        raise CybershuttleError(f"{setup_file} lists no conda packages: nothing to build "
                                "(pip-only environments are made by the first job that needs them)")
    lines: list[str] = []

    def on_line(text: str) -> None:
        lines.append(text)
        if progress is not None and text.startswith("cybershuttle: ") and not text.startswith("cybershuttle: error"):
            progress(text[len("cybershuttle: "):])

    sink = line_sink(on_line)

    # The preamble ends in `exit 97/98` on failure, so the echo only runs after a build.
    code = shell.stream(env.preamble() + "\necho CS-ENV-OK", sink, login_shell=True)
    if code != 0 or "CS-ENV-OK" not in lines:
        failed = [ln[len("cybershuttle: error: "):] for ln in lines if ln.startswith("cybershuttle: error: ")]
        other = [ln for ln in lines if ln.strip()][-1:] or [f"exit code {code}"]
        raise EnvironmentBuildError(failed[-1] if failed else f"building the environment on {res.name} failed: "
                                                              f"{other[0]}")
    found = [e for e in list_envs(res.name) if e["hash"] == env.conda.env_hash]
    return found[0] if found else {"hash": env.conda.env_hash, "resource": res.name}
