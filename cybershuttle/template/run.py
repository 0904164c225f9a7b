"""Running a template: inputs checked, papermill on a resource, the run recorded.

A run on `local` (or with no resource) executes the notebook here with the
plain `python3` kernel, in the run's own directory. On an ssh or Slurm
resource papermill still drives the notebook from here, but its kernel is a
Cybershuttle runtime started by the kernel provisioner (the resource's
`cybershuttle-<resource>` kernelspec, installed on first use); the kernel
works in a run directory on the resource, which is copied back afterwards.

Every run gets a local directory (`--output DIR`, else
`$CYBERSHUTTLE_HOME/users/<user>/template-runs/<template>/<run-id>`) holding
`executed.ipynb` and every file the notebook wrote; the catalog records its
status, parameters and named outputs (see `notebook` for how outputs are named).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import shlex
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import compute, names, profile, trust
from ..compute import states
from ..errors import CybershuttleError, NotFoundError
from ..registry import catalog, dump_record, load_record
from ..setupfile import load as load_setup
from ..storage.partial import copy_local, umask_mode, write_whole
from . import catalog as templates
from . import notebook as nbtools
from . import spec as spec_file

if TYPE_CHECKING:
    import nbformat

    from ..compute.shell import Shell

KIND = "template-run"
EXECUTED = "executed.ipynb"
ACTIVE = states.ACTIVE  # a run's status is a job state (compute/states.py)
#: a sweep point whose array task ended (walltime, cancelled, node lost) before the point finished
NOT_RUN = states.RunState.NOT_RUN.value
_SETUP_TAG = "cybershuttle-setup"
#: A named output larger than this (as JSON) stays in the executed notebook; the run's record (the
#: catalog, REST lists, events) says where it is, and collect/results read it from there.
OUTPUT_KEEP_BYTES = 64 * 2**10
LARGE_OUTPUT = "cybershuttle_large_output"
#: Results coming back from a resource pass through a file holding at most this much in memory.
SPOOL_BYTES = 8 * 2**20
_PLACEHOLDER = re.compile(r"\{\{\s*([^\s{}]+)\s*\}\}")


@dataclass(frozen=True)
class Run:
    """One run of a template (one point of a sweep is one run)."""

    id: str
    template: str
    status: str  # a compute.states.JobState word: PENDING | RUNNING | COMPLETED | FAILED | CANCELLED | ...
    parameters: dict[str, Any]
    resource: str
    output: str  # local directory: executed.ipynb and the files the run wrote
    started: float
    finished: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)  # values of the cells tagged `output`
    files: list[str] = field(default_factory=list)  # files the run wrote, relative to `output`
    error: str | None = None
    job_id: str | None = None  # the compute job (a sweep's array job)
    task: int | None = None  # the array task of a sweep point
    remote_dir: str | None = None
    sweep: str | None = None
    point: int | None = None  # the point's index in its sweep
    run_time: float | None = None  # seconds the run itself took (a sweep point: in its task, kernel included)

    @property
    def final(self) -> bool:
        return states.final(self.status)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- public API ------------------------------------------------------------
def run(name: str, inputs: dict[str, Any] | str | None = None, *, resource: str | None = None,
        output: str | None = None, input_dir: str | None = None, setup_file: str | Path | None = None) -> Run:
    """Check `inputs` (a mapping, or an input file) against template `name`, then run it once.

    `setup_file` (cybershuttle.yml): its modules and pip packages make the
    kernel's environment on the resource (the run then goes through the
    provisioner even on `local`).

    Nothing runs when an input is unknown, of the wrong type, out of range or
    a required one is missing: InputError lists every problem. Returns the
    finished run (status COMPLETED or FAILED, with the first error).
    """
    tmpl = templates.get(name)
    trust.require(templates.KIND, tmpl)  # another user's notebook runs only when trusted
    values = check_inputs(tmpl, inputs)
    res = _resource(resource)
    if setup_file is not None:
        setup_file = Path(setup_file).resolve()
        load_setup(setup_file)  # a missing or bad file stops here, before anything is recorded
    files = render_inputs(input_dir, values) if input_dir else {}
    run_id = new_id(name)
    local = local_dir(name, run_id, output)
    record = Run(id=run_id, template=name, status="RUNNING", parameters=values, resource=res.name,
                 output=str(local), started=time.time())
    save(record, new=True)
    nb = tmpl.nb()
    try:
        if res.kind == "local" and setup_file is None:
            _write_tree(local, files)
            _papermill(nb, local / EXECUTED, values, "python3", local, start_timeout=120)
        else:
            record = replace(record, remote_dir=_remote_dir(res, run_id))
            save(record)
            _run_remote(res, nb, values, files, record.remote_dir or "", local, setup_file)
        error = None
    except CybershuttleError as exc:  # a failing cell, an unreachable resource
        error = str(exc)
    except KeyboardInterrupt:
        save(replace(record, status="CANCELLED", error="interrupted", finished=time.time()))
        raise
    except Exception as exc:  # a kernel that would not start, a lost connection: recorded, then shown
        error = f"{type(exc).__name__}: {exc}"
    record = finish(record, tmpl.nb(), error)
    save(record)
    return record


def runs(name: str, *, refresh: bool = True) -> list[Run]:
    """The runs of template `name`, oldest first, with live states of sweep points."""
    records = _records(name)
    if not records:
        templates.get(name)  # an unknown template is an error, not an empty list
    if refresh:
        from .sweep import refresh as refresh_points  # the package exports the function `sweep`

        records = refresh_points(records)
    # A sweep's points stay together, in point order, where the sweep began.
    began: dict[str, float] = {}
    for r in records:
        if r.sweep:
            began[r.sweep] = min(began.get(r.sweep, r.started), r.started)
    return sorted(records, key=lambda r: (began[r.sweep], r.sweep, r.point or 0) if r.sweep else (r.started, "", 0))


def recent(since: float) -> list[Run]:
    """Single runs (not sweep points) of every template that are unfinished or ended after `since`."""
    found = [load_record(Run, "id", e.name, e.data) for e in catalog().private.list(KIND) if not e.data.get("sweep")]
    return [r for r in found if not r.final or (r.finished or 0) >= since]


def get_run(run_id: str) -> Run:
    entry = catalog().private.find(KIND, names.validate(run_id, "run id"))
    if entry is None:
        raise NotFoundError(f"no template run {run_id!r}: see `cybershuttle template runs TEMPLATE`")
    return load_record(Run, "id", entry.name, entry.data)


def collect(name: str, output_name: str, to: str | Path | None = None) -> str:
    """Gather output `output_name` of every finished run of `name` into directory `to`.

    A value output (a cell tagged `output`) and a file output (a file the run
    wrote) are both gathered: `TO/<run-id>/<output_name>` per run, plus
    `TO/collected.json` listing run, status, parameters and value or file.
    """
    if not output_name or output_name.startswith("/") or ".." in Path(output_name).parts:
        raise CybershuttleError(f"output name {output_name!r} must be a value name or a path inside the run directory")
    target = Path(to or f"{name}-{_safe(output_name)}")
    rows, found = [], 0
    for r in runs(name):
        row: dict[str, Any] = {"run": r.id, "status": r.status, "parameters": r.parameters}
        src = names.confine(r.output, output_name) if Path(r.output).is_dir() else None
        if output_name in r.outputs:
            dest = names.confine(target, f"{r.id}/{output_name}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            value = output_value(r, output_name)
            write_whole(str(dest), (json.dumps(value, default=str) + "\n").encode(), umask_mode())
            row.update(value=value, file=str(dest))
            found += 1
        elif src is not None and src.is_file():
            dest = names.confine(target, f"{r.id}/{output_name}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            copy_local(str(src), str(dest))
            row["file"] = str(dest)
            found += 1
        else:
            row["missing"] = "the run has not finished" if not r.final else "the run did not produce it"
        rows.append(row)
    if not found:
        seen = sorted({k for r in runs(name, refresh=False) for k in [*r.outputs, *r.files]})
        raise NotFoundError(f"no run of template {name!r} has an output named {output_name!r}"
                            + (f" (outputs seen: {', '.join(seen[:20])})" if seen else " (no run has finished yet)"))
    target.mkdir(parents=True, exist_ok=True)
    # `to` may be a shared directory: a name planted there is replaced, never written through (storage.partial).
    write_whole(str(target / "collected.json"),
                (json.dumps(rows, indent=2, default=str, ensure_ascii=False) + "\n").encode(), umask_mode())
    return str(target)


def forget(name: str) -> int:
    """Remove the run records of template `name` (its run directories stay)."""
    records = _records(name)
    for r in records:
        catalog().private.remove(KIND, r.id)
    from .sweep import KIND as SWEEP_KIND

    for entry in catalog().private.list(SWEEP_KIND):
        if entry.data.get("template") == name:
            catalog().private.remove(SWEEP_KIND, entry.name)
    return len(records)


# -- shared with sweeps ----------------------------------------------------
def check_inputs(tmpl: templates.Template, inputs: dict[str, Any] | str | Path | None,
                 where: str | None = None) -> dict[str, Any]:
    if isinstance(inputs, (str, Path)):
        return spec_file.validate(tmpl.params, spec_file.load_inputs(inputs), where=where or f"the inputs in {inputs}")
    return spec_file.validate(tmpl.params, inputs or {}, where=where or "the inputs")


def render_inputs(input_dir: str | Path, values: dict[str, Any]) -> dict[str, bytes]:
    """Every file under `input_dir` with `{{ name }}` placeholders replaced by the run's values."""
    root = Path(input_dir)
    if not root.is_dir():
        raise CybershuttleError(f"input directory {root} does not exist or is not a directory")
    out: dict[str, bytes] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            out[rel] = data  # binary inputs are copied as they are
            continue

        def fill(match: re.Match[str], rel: str = rel) -> str:
            key = match.group(1)
            if key not in values:
                raise spec_file.InputError(f"{root / rel}: placeholder {{{{ {key} }}}} names no parameter of the "
                                           f"template ({', '.join(values) or 'none'}); nothing was run")
            return str(values[key])

        out[rel] = _PLACEHOLDER.sub(fill, text).encode("utf-8")
    return out


def finish(record: Run, template_nb: nbformat.NotebookNode, error: str | None) -> Run:
    """Read what a run left in its local directory and complete its record."""
    import nbformat

    local = Path(record.output)
    executed_path = local / EXECUTED
    outputs: dict[str, Any] = {}
    if executed_path.is_file():
        executed = nbformat.read(executed_path, as_version=4)
        executed.cells = [c for c in executed.cells if _SETUP_TAG not in c.metadata.get("tags", [])]
        nbtools.restore_pre_run(executed, template_nb)
        nbformat.write(executed, executed_path)
        outputs = {k: _kept(v) for k, v in nbtools.named_outputs(executed).items()}
        error = nbtools.executed_error(executed) or error  # the cell's own error says most
    elif error is None:
        error = f"the run left no {EXECUTED}"
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file() and p.name != EXECUTED)
    status = "FAILED" if error else "COMPLETED"
    if record.status not in ACTIVE | {"COMPLETED", "FAILED"}:
        status = record.status  # CANCELLED, TIMEOUT, ... say more than FAILED
    finished = time.time()
    run_time = record.run_time if record.run_time is not None else round(finished - record.started, 3)
    return replace(record, status=status, error=error, outputs=outputs, files=files, finished=finished,
                   run_time=run_time)


def output_value(record: Run, name: str) -> Any:
    """Output `name` of a run: from its record, or (a value too large to keep there) from its executed notebook."""
    import nbformat

    value = record.outputs[name]
    if not (isinstance(value, dict) and LARGE_OUTPUT in value):
        return value
    path = Path(record.output) / EXECUTED
    try:
        return nbtools.named_outputs(nbformat.read(path, as_version=4))[name]
    except (OSError, ValueError, KeyError):
        raise NotFoundError(f"output {name!r} of run {record.id} was too large for its record and is no longer in "
                            f"{path}: run the template again") from None


def _kept(value: Any) -> Any:
    """`value` itself, or where it is when it is too large for a run's record."""
    size = len(json.dumps(value, default=str))
    return value if size <= OUTPUT_KEEP_BYTES else {LARGE_OUTPUT: {"bytes": size, "in": EXECUTED}}


def new_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def extract(data: bytes | IO[bytes], into: Path) -> None:
    """Unpack a tar stream (bytes or a file), refusing members that would land outside `into`."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data) if isinstance(data, bytes) else data) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
            return
        # A Python before extraction filters (3.10.12, 3.11.4; Debian 12's is 3.11.2): stricter than the
        # data filter, plain files and directories with relative names only, no set-id bits.
        kept = [m for m in tar if (m.isfile() or m.isdir()) and not m.name.startswith("/")
                and ".." not in m.name.split("/")]
        for member in kept:
            member.mode &= 0o755
        tar.extractall(into, members=kept)


def fetch_tree(shell: Shell, command: str, into: Path, accept: tuple[int, ...] = (0,)) -> int:
    """Run `command` (it writes a tar stream) on `shell` and unpack what it sent into `into` when it
    exits with a code in `accept`; returns the code. The stream passes through a spooled file (at
    most SPOOL_BYTES in memory, the rest on disk), so results of any size come back."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        code = shell.stream(command, spool.write)
        if code in accept and spool.tell():
            spool.seek(0)
            extract(spool, into)  # type: ignore[arg-type] - a spooled file reads like a binary file
    return code


def pack(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- helpers ---------------------------------------------------------------
class _ExecutionFailed(CybershuttleError):
    pass


def _papermill(nb: nbformat.NotebookNode, out: Path, values: dict[str, Any], kernel: str, cwd: Path | None,
               start_timeout: int) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(nb, str(out), parameters=values, kernel_name=kernel, cwd=str(cwd) if cwd else None,
                                   progress_bar=sys.stderr.isatty(), start_timeout=start_timeout)
    except PapermillExecutionError as exc:
        raise _ExecutionFailed(f"cell {exc.cell_index}: {exc.ename}: {exc.evalue}") from None


def _run_remote(res: compute.Resource, nb: nbformat.NotebookNode, values: dict[str, Any], files: dict[str, bytes],
                remote_dir: str, local: Path, setup_file: Path | None = None) -> None:
    """papermill here, the kernel on `res` through the provisioner, working in `remote_dir` there."""
    import nbformat

    shell = res.shell()
    q = shlex.quote(remote_dir)
    shell.run(f"umask 077 && mkdir -p {q} && tar -xf - -C {q}", stdin=pack(files), timeout=120)
    setup = nbformat.v4.new_code_cell(f"import os as _cs_os\n_cs_os.chdir({remote_dir!r})\ndel _cs_os",
                                      metadata={"tags": [_SETUP_TAG]})
    nb.cells.insert(0, setup)
    local.mkdir(parents=True, exist_ok=True)
    try:
        _papermill(nb, local / EXECUTED, values, _kernelspec(res, setup_file), None, start_timeout=600)
    finally:
        if fetch_tree(shell, f"tar -C {q} -cf - . 2>/dev/null", local) == 0:
            shell.run(f"rm -rf {q}", check=False, timeout=60)


def _kernelspec(res: compute.Resource, setup_file: Path | None = None) -> str:
    """The resource's kernelspec; one per setup file (named by its path's hash) when there is one."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    from ..runtime import provisioner

    kernel = f"cybershuttle-{res.name}".lower()
    request: dict[str, Any] = {"cpus": 1}
    if setup_file is not None:
        kernel += "-" + hashlib.sha256(str(setup_file).encode()).hexdigest()[:10]
        request["setup_file"] = str(setup_file)
    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        provisioner.install_kernelspec(res.name, name=kernel, **request)
    return kernel


def _resource(name: str | None) -> compute.Resource:
    if name is None or name == "local":
        compute.register_local()
        return compute.get("local")
    return compute.get(name)


def _remote_dir(res: compute.Resource, run_id: str) -> str:
    return f"{compute.home_dir(res)}/.cybershuttle/template-runs/{run_id}"


def local_dir(name: str, run_id: str, output: str | None) -> Path:
    path = Path(output) if output else profile.active().subdir("template-runs") / name / run_id
    if path.exists() and any(path.iterdir()):
        raise CybershuttleError(f"output directory {path} is not empty: choose a new --output directory")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        target = names.confine(root, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _records(name: str) -> list[Run]:
    entries = catalog().private.list(KIND)
    return [load_record(Run, "id", e.name, e.data) for e in entries if e.data.get("template") == name]


def save(record: Run, new: bool = False) -> None:
    data = dump_record(record, "id")
    if new:
        catalog().private.add(KIND, record.id, data, catalog().user)
    else:
        catalog().private.update(KIND, record.id, lambda _: data)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "output"

