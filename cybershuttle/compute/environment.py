"""The software environment a setup file asks for, prepared on a resource.

Modules are loaded with `module load` (jobs run in a login shell, where
`module` exists). pip packages go into a virtual environment cached on the
resource under `~/.cybershuttle/envs/<hash>`, keyed by the hash of the
Python and the requirements, so the second job with the same dependencies
starts at once; uv builds it when the resource has uv, else venv + pip. A
lock file serialises concurrent jobs that need the same new environment.

Conda packages (with the pip list installed into the same environment) are
built by `condaenv`/`envbuilder.py` on the resource, from the job's preamble,
once per resource and cached by the hash of what they contain.

Everything the resource cannot provide (a module it does not have) is
refused before submission.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, replace

from ..errors import CybershuttleError
from ..setupfile import SetupFile
from . import condaenv
from .condaenv import ENVS_DIR
from .resources import Resource, home_dir
from .shell import Shell, write_file


class UnavailableError(CybershuttleError):
    """The resource cannot provide what the setup file asks for."""


@dataclass(frozen=True)
class Environment:
    modules: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    python: str = "python3"
    conda_specs: tuple[str, ...] = ()  # the setup file's conda packages, as written
    channels: tuple[str, ...] = ()  # the channels the file names
    conda: condaenv.CondaSpec | None = None  # set by check(), once the resource's platform is known
    builder: str = ""  # envbuilder.py on the resource, quoted for the shell

    @property
    def env_hash(self) -> str | None:
        if self.conda is not None:
            return self.conda.env_hash
        if not self.pip:
            return None
        key = json.dumps({"python": self.python, "pip": sorted(self.pip)})
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def preamble(self) -> str:
        """Bash lines that prepare this environment inside a job (empty when nothing is asked)."""
        lines: list[str] = []
        if self.modules:
            mods = " ".join(shlex.quote(m) for m in self.modules)
            lines.append(f"echo 'cybershuttle: loading modules {mods}' >&2")
            lines.append(f"module load {mods} || {{ echo 'cybershuttle: module load {mods} failed' >&2; exit 97; }}")
        if self.conda is not None:
            lines += condaenv.preamble(self.conda, self.python, self.builder)
        elif self.pip:
            env = f'"$HOME"/{ENVS_DIR}/{self.env_hash}'
            reqs = " ".join(shlex.quote(r) for r in self.pip)
            py = shlex.quote(self.python)
            lines += [
                f"CS_ENV={env}",
                'if [ ! -e "$CS_ENV/.ready" ]; then',
                f'  mkdir -p "$HOME"/{ENVS_DIR} && (',
                "    flock 9",
                '    if [ ! -e "$CS_ENV/.ready" ]; then',
                '      echo "cybershuttle: preparing the Python environment $CS_ENV" >&2',
                '      rm -rf "$CS_ENV"',
                "      if command -v uv >/dev/null 2>&1; then",
                f'        uv venv -q --python {py} "$CS_ENV" && VIRTUAL_ENV="$CS_ENV" uv pip install -q {reqs}',
                "      else",
                f'        {py} -m venv "$CS_ENV" && "$CS_ENV/bin/pip" install -q --disable-pip-version-check {reqs}',
                '      fi && touch "$CS_ENV/.ready" || { rm -rf "$CS_ENV"; exit 98; }',
                '      echo "cybershuttle: the Python environment is ready" >&2',
                "    fi",
                '  ) 9>"$CS_ENV.lock" || { echo "cybershuttle: could not prepare the Python environment" >&2; exit 98; }',
                "fi",
                '. "$CS_ENV/bin/activate"',
            ]
        return "\n".join(lines)


def from_setup(resource: Resource, setup: SetupFile | None, extra_pip: tuple[str, ...] = ()) -> Environment:
    """The environment `setup` asks for on `resource` (checked with `check()`)."""
    python = resource.python or "python3"
    if setup is None:
        return Environment(pip=tuple(extra_pip), python=python)
    return Environment(tuple(setup.modules), tuple(setup.pip) + tuple(extra_pip), python,
                       conda_specs=tuple(setup.conda), channels=tuple(setup.channels))


def check(resource: Resource, shell: Shell, env: Environment, setup: SetupFile | None) -> Environment:
    """Refuse what the resource cannot provide, in one round trip; returns `env` completed.

    With conda packages, the probe also reads the resource's platform (part of the
    environment's hash) and whether this version of envbuilder.py is there yet.
    """
    conda = list(env.conda_specs)
    if not conda and not env.modules:
        return env
    probe = []
    builder = _builder_path(resource) if conda else ""
    known = _probed.get((resource.name, resource.host, builder)) if conda else None
    if known is not None and not env.modules:
        # Probed before by this process: the platform does not change and the builder was there
        # (the preamble says so in one line if it has gone since), so no round trip at all.
        return _with_conda(resource, env, conda, known, builder)
    if conda:
        probe.append('echo "uname=$(uname -s) $(uname -m)"')
        if resource.remote:
            probe.append(f'[ -f "$HOME"/{shlex.quote(builder)} ] || echo nobuilder=1')
    for module in env.modules:
        q = shlex.quote(module)
        probe.append(f"if type module >/dev/null 2>&1; then module is-avail {q} >/dev/null 2>&1 || echo missing={q}; "
                     f"else echo nomodule=1; fi")
    out = shell.run("; ".join(probe) + "; true", login_shell=True, timeout=60).stdout
    values = [line.partition("=") for line in out.splitlines()]
    if any(k == "nomodule" for k, _, _ in values):
        raise UnavailableError(f"{resource.name} has no module system, but the setup file asks to load "
                                f"{', '.join(env.modules)}: remove additional_dependencies.modules or use another resource")
    missing = [v for k, _, v in values if k == "missing"]
    if missing:
        raise UnavailableError(f"module(s) {', '.join(missing)} not available on {resource.name}: "
                                f"see `cybershuttle module avail --resource {resource.name}`")
    if not conda:
        return env
    system, _, machine = next((v for k, _, v in values if k == "uname"), "Linux x86_64").partition(" ")
    if any(k == "nobuilder" for k, _, _ in values):
        write_file(shell, f"{home_dir(resource, shell)}/{builder}", condaenv.BUILDER.read_bytes(), 0o700)
    platform = condaenv.platform_of(machine, system)
    _probed[(resource.name, resource.host, builder)] = platform
    return _with_conda(resource, env, conda, platform, builder)


_probed: dict[tuple[str, str | None, str], str] = {}  # (resource, host, builder) -> platform


def _with_conda(resource: Resource, env: Environment, conda: list[str], platform: str, builder: str) -> Environment:
    spec = condaenv.spec_for(conda, env.channels, env.pip, platform, getattr(resource, "conda", None) or {})
    where = f'"$HOME"/{shlex.quote(builder)}' if resource.remote else shlex.quote(builder)
    return replace(env, conda=spec, builder=where)


def _builder_path(resource: Resource) -> str:
    """envbuilder.py, named by its content's hash (relative to home on a remote resource)."""
    if not resource.remote:
        return str(condaenv.BUILDER)
    digest = hashlib.sha256(condaenv.BUILDER.read_bytes()).hexdigest()[:12]
    return f".cybershuttle/bin/envbuilder-{digest}.py"


def setup_progress(jobs: list) -> dict[str, str]:
    """The latest environment set-up line (`cybershuttle: ...`) each job wrote, by job id.

    For faces that poll (the sidebar's event stream) while a runtime's environment is
    built: one command per resource, whatever the number of jobs.
    """
    from . import resources

    by_resource: dict[str, list] = {}
    for job in jobs:
        by_resource.setdefault(job.resource, []).append(job)
    out: dict[str, str] = {}
    for name, items in by_resource.items():
        parts = [f"printf '%s\\t' {shlex.quote(j.id)}; grep '^cybershuttle: ' {shlex.quote(j.log_path)} 2>/dev/null "
                 f"| tail -n 1; echo" for j in items]
        try:
            text = resources.get(name).shell().run("; ".join(parts), check=False, timeout=30).stdout
        except CybershuttleError:
            continue  # unreachable now: the next poll tries again
        for line in text.splitlines():
            job_id, _, last = line.partition("\t")
            if last.startswith("cybershuttle: "):
                out[job_id] = last[len("cybershuttle: "):].strip()
    return out
