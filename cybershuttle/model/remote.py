"""AI models run as a compute job on a resource (`model run NAME --resource R`).

The inputs are read here, by the same rules as a local run (cybershuttle.model.inputs),
put in batch order (run.batch_order) and sent as JSON lines; the saved model file goes
with them (an entry point must be importable there). In the job, remote_runner.py —
standard library and torch only, since Cybershuttle is not installed there — loads the
model and applies it batch by batch. Its outputs come back and are written exactly as a
local run's are (run.finish). PyTorch comes from the job's setup file: the site's module
(`additional_dependencies.modules: [pytorch/...]`) or a pip package.
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from ..errors import CybershuttleError, RemoteCommandError, UsageError
from . import remote_runner
from .catalog import Model
from .command import run_job
from .inputs import Item
from .run import RunResult, batch_order, check_batch_size, finish

MAX_MODEL_BYTES = 1 << 30  # larger files belong on the resource's storage, not in a job's upload
_RUNNER = Path(remote_runner.__file__)


def run(model: Model, items: list[Item], *, batch_size: int | None, output: str | None, resource: str,
        setup_file: str | None = None, device: str | None = None, walltime: str | int | None = None) -> RunResult:
    from .. import compute

    size = check_batch_size(batch_size)
    order = batch_order(items)
    files = {"model_runner.py": _RUNNER.read_bytes(),
             "inputs.jsonl": "".join(json.dumps(_plain(items[k].value)) + "\n" for k in order).encode()}
    args = ["--batch-size", str(size), "--device", device or "auto"]
    if model.loader == "torch-file":
        files["model.pt"] = _model_bytes(model)
        args += ["--file", "model.pt"]
    elif model.loader == "entry-point":
        args += ["--entry-point", model.location]
    else:
        raise UsageError(f"model {model.name!r} is a {model.kind} model ({model.loader}), not an AI model")
    command = 'cd "$CYBERSHUTTLE_JOB_DIR" && python3 model_runner.py ' + " ".join(shlex.quote(a) for a in args)
    start = time.perf_counter()
    job = run_job(model, command, resource, walltime=walltime, setup_file=setup_file, files=files)
    if job.state != "COMPLETED" or job.exit_code:
        log = compute.read_log(job.id, -2**20).data.decode(errors="replace").strip()  # its last MiB
        if remote_runner.NO_TORCH_MARK in log:
            reason = log[log.index(remote_runner.NO_TORCH_MARK) + len(remote_runner.NO_TORCH_MARK):].splitlines()[0]
            raise CybershuttleError(
                f"model {model.name!r} needs PyTorch on {resource}, but `import torch` failed in job {job.id}"
                f"{reason}. Give --setup_file with the site's PyTorch module (additional_dependencies: modules: "
                f"[pytorch/VERSION], see `cybershuttle module avail --resource {resource}`) or the pip package "
                "(pip: [torch])")
        if remote_runner.NO_ENTRY_MARK in log:
            reason = log[log.index(remote_runner.NO_ENTRY_MARK) + len(remote_runner.NO_ENTRY_MARK):].splitlines()[0]
            raise CybershuttleError(
                f"model {model.name!r}: {model.location} cannot be imported on {resource} (job {job.id}){reason}. "
                "Install the package that provides it there: list it under pip: in --setup_file")
        raise RemoteCommandError(f"model {model.name!r}: job {job.id} on {resource} ended {job.state} "
                                 f"(exit {job.exit_code}): {log[-800:]}")
    text = compute.get(resource).shell().run(f"cat {shlex.quote(job.jobdir + '/outputs.jsonl')}", timeout=300).stdout
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    if len(lines) != len(items):
        raise CybershuttleError(f"model {model.name!r}: job {job.id} wrote {len(lines)} outputs "
                                f"for {len(items)} inputs")
    outputs: list[Any] = [None] * len(items)
    for k, line in zip(order, lines):
        outputs[k] = _decode(line)
    result = RunResult(model=model.name, mode="inference", count=len(items), batches=-(-len(items) // size),
                       batch_size=size, run_s=time.perf_counter() - start, resource=resource, job=job.id,
                       ids=[i.id for i in items])
    finish(result, outputs, output)
    return result


def _model_bytes(model: Model) -> bytes:
    from .loaders import _local_path, _refuse_foreign_pickle

    path = _local_path(model.location)
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise UsageError(f"model {model.name!r}: {path} is {path.stat().st_size >> 20} MiB, too large to send with "
                         f"every job (limit {MAX_MODEL_BYTES >> 20} MiB); put it on the resource's storage and "
                         "register an entry point that loads it there")
    import zipfile

    if not (zipfile.is_zipfile(path) and any("/code/" in n for n in zipfile.ZipFile(path).namelist())):
        _refuse_foreign_pickle(model, path)
    return path.read_bytes()


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _decode(line: dict[str, Any]) -> Any:
    if "array" in line:
        import numpy as np

        return np.asarray(line["array"], dtype=line.get("dtype") or None)
    return line.get("value")
