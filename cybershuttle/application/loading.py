"""`application load NAME[/VERSION]`: into a setup file, and into a running runtime.

Everything is checked before anything changes: the name is resolved in the
resource's catalog, then conflicts with the setup file's modules/pip list
and with the modules the runtime has loaded are looked for; one conflict
stops the load with both names in the message.

Inside a runtime the module is loaded into the kernel process itself:
Lmod's `$LMOD_CMD python load` prints Python that updates `os.environ`,
which the kernel executes (the same as `module load` in a shell, but the
kernel keeps the result). Without Lmod the kernel runs `module load` in a
login shell and takes over the environment it ends with.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from .. import setupfile
from ..errors import CybershuttleError, NotFoundError
from . import setup_edit
from .catalog import get, list_all
from .conflicts import Conflict, ConflictError, module_conflicts, pip_conflicts
from .records import Application

_REQUIREMENT_CHARS = set("=<>~!;@[")


@dataclass(frozen=True)
class LoadResult:
    spec: str
    kind: str  # "module" | "python"
    item: str  # what went into the setup file / was loaded: "hello/2.0", "numpy==2.1.0"
    setup_file: str | None = None
    setup_changed: bool = False
    setup_section: str | None = None
    comments_kept: bool = True
    runtime: str | None = None
    loaded: list[str] = field(default_factory=list)  # the runtime's modules afterwards
    messages: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(spec: str, resource: str | None = None) -> tuple[str, str, Application | None]:
    """`spec` -> (kind, item, application): what `load` would add."""
    if not spec or spec.strip() != spec:
        raise CybershuttleError(f"{spec!r} is not NAME or NAME/VERSION")
    if _REQUIREMENT_CHARS & set(spec):
        try:
            Requirement(spec)
        except InvalidRequirement as exc:
            raise CybershuttleError(f"{spec!r} is neither NAME/VERSION nor a pip requirement: {exc}") from None
        return "python", spec, None  # a requirement is installed into the job's environment, not looked up
    app, version = _find(spec, resource)
    if app.kind == "module":
        chosen = app.version(version)
        if chosen is None:
            raise NotFoundError(f"module {app.name} has no version {version!r} on {resource or 'local'} "
                                f"(versions: {', '.join(v.version for v in app.versions)})")
        return "module", chosen.full, app
    if app.kind == "python":
        return "python", f"{app.name}=={version}" if version else app.name, app
    if app.kind == "executable":
        raise CybershuttleError(f"{app.name} is an executable you registered (`{app.command}`): nothing needs "
                                "loading; run it, e.g. with `cybershuttle compute execute`")
    raise CybershuttleError(f"{app.name} is a conda environment; setup files list conda packages, not "
                            "environments, and a running kernel cannot switch environment: request a runtime "
                            "with a setup file instead")


def load(spec: str, *, setup_file: str | None = None, resource: str | None = None,
         runtime: str | None = None) -> LoadResult:
    """Add `spec` to `setup_file` and/or load it into `runtime`, after checking for conflicts."""
    if setup_file is None and runtime is None:
        raise CybershuttleError("application load: give a setup file, a runtime, or both")
    if runtime is not None and resource is None:
        from .. import runtime as runtimes

        resource = runtimes.get(runtime).resource
    kind, item, _ = resolve(spec, resource)
    apps = list_all(resource) if kind == "module" else []
    found: list[Conflict] = []
    where = []
    if setup_file is not None:
        setup_edit.check(setup_file, "modules" if kind == "module" else "pip")
        present = _setup_lists(setup_file)
        found += module_conflicts(item, present["modules"], apps) if kind == "module" else \
            pip_conflicts(item, present["pip"])
        where.append(setup_file)
    loaded: list[str] = []
    if runtime is not None:
        if kind == "module":
            loaded = loaded_in_runtime(runtime)
            found += module_conflicts(item, loaded, apps)
        where.append(f"runtime {runtime}")
    if found:
        raise ConflictError(found, " and ".join(where))
    result = LoadResult(spec, kind, item, runtime=runtime)
    # The runtime first: a module that fails to load there must not end up in the setup file.
    if runtime is not None:
        loaded, messages = _load_into_runtime(runtime, kind, item)
        result = _replace(result, loaded=loaded, messages=messages)
    if setup_file is not None:
        edit = setup_edit.add(setup_file, "modules" if kind == "module" else "pip", item)
        result = _replace(result, setup_file=edit.path, setup_changed=edit.changed, setup_section=edit.section,
                          comments_kept=edit.kept_comments)
    return result


def loaded_in_runtime(runtime: str) -> list[str]:
    """The modules loaded in the kernel of `runtime` (its LOADEDMODULES)."""
    out = _run_in_kernel(runtime, "import os; print('@@cs ' + os.environ.get('LOADEDMODULES', ''))")
    return _marked(out)


def _setup_lists(path: str) -> dict[str, list[str]]:
    if not os.path.exists(path):
        return {"modules": [], "pip": []}
    setup = setupfile.load(path)
    return {"modules": list(setup.modules), "pip": list(setup.pip)}


def _find(spec: str, resource: str | None) -> tuple[Application, str | None]:
    try:
        return get(spec, resource), None
    except NotFoundError as whole:
        if "/" not in spec:
            raise
        name, _, version = spec.rpartition("/")
        try:
            return get(name, resource), version
        except NotFoundError:
            raise whole from None


_KERNEL_LOAD = r'''
def _cybershuttle_module(action, names, pip_item):
    import os, subprocess, sys
    if pip_item:
        p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", pip_item], capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError("pip install %s failed: %s" % (pip_item, p.stderr.strip()[-500:]))
        return
    lmod = os.environ.get("LMOD_CMD")
    if lmod:
        p = subprocess.run([lmod, "python", action] + names, capture_output=True, text=True)
        scope = {}
        if p.returncode == 0:
            exec(p.stdout, scope)
        if p.returncode or scope.get("_mlstatus") is False:
            raise RuntimeError("module %s %s failed: %s" % (action, " ".join(names), p.stderr.strip()))
        if p.stderr.strip():
            print(p.stderr.strip(), file=sys.stderr)
        return
    p = subprocess.run(["bash", "-lc", 'module "$0" "$@" 1>&2 && env -0', action] + names, capture_output=True)
    if p.returncode:
        raise RuntimeError("module %s %s failed: %s" % (action, " ".join(names), p.stderr.decode(errors="replace")))
    new = dict(kv.split("=", 1) for kv in p.stdout.decode(errors="replace").split("\0") if "=" in kv)
    for key in ("LOADEDMODULES", "_LMFILES_", "PATH", "LD_LIBRARY_PATH", "MANPATH", "MODULEPATH"):
        if key not in new:
            os.environ.pop(key, None)
    for key, value in new.items():
        if key not in ("_", "SHLVL", "PWD", "OLDPWD"):
            os.environ[key] = value
'''


def module_in_runtime(runtime: str, action: str, names: list[str]) -> tuple[list[str], str]:
    """`module load|unload NAMES` inside the kernel of `runtime` (no conflict check: see `load`)."""
    if action not in ("load", "unload"):
        raise CybershuttleError(f"module {action} cannot change a runtime; use load or unload")
    return _kernel_module(runtime, [action, list(names), None])


def _load_into_runtime(runtime: str, kind: str, item: str) -> tuple[list[str], str]:
    return _kernel_module(runtime, ["load", [item], None] if kind == "module" else ["load", [], item])


def _kernel_module(runtime: str, args: list[Any]) -> tuple[list[str], str]:
    code = (_KERNEL_LOAD + f"_cybershuttle_module(*{args!r})\n"
            "import os as _os; print('@@cs ' + _os.environ.get('LOADEDMODULES', ''))\n"
            "del _cybershuttle_module\n")
    out = _run_in_kernel(runtime, code)
    messages = "\n".join(line for line in out.splitlines() if not line.startswith("@@cs "))
    return _marked(out), messages.strip()


def _run_in_kernel(runtime: str, code: str) -> str:
    from .. import runtime as runtimes

    kc = runtimes.client(runtime)
    chunks: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["header"]["msg_type"] == "stream":
            chunks.append(msg["content"]["text"])

    try:
        reply = kc.execute_interactive(code, output_hook=hook, timeout=300, store_history=False)
    finally:
        kc.stop_channels()
    content = reply["content"]
    if content.get("status") != "ok":
        raise CybershuttleError(f"runtime {runtime}: {content.get('ename', 'error')}: {content.get('evalue', '')}")
    return "".join(chunks)


def _marked(out: str) -> list[str]:
    for line in out.splitlines():
        if line.startswith("@@cs "):
            return [m for m in line[len("@@cs "):].split(":") if m]
    return []


def _replace(result: LoadResult, **changes: Any) -> LoadResult:
    from dataclasses import replace

    return replace(result, **changes)
