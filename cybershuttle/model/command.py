"""Computational models: a command-line program applied to batches of inputs.

The convention a program follows (documented in the README):

- Each batch is written to a file: FASTA inputs as a FASTA file (`batch-0000.fasta`),
  every other input as JSON lines (`batch-0000.jsonl`, one JSON value a line; a text is
  a JSON string).
- `{input}` in the command is replaced by that file's path and `{output}` by the path
  the program must write its results to. Without `{input}` the batch arrives on
  standard input; without `{output}` results are read from standard output.
- Results are one line per input, in the same order: a JSON value, or plain text.

Without a resource the program runs here, once per batch. With `resource=` all
batches run in one compute job (a Slurm batch job on a Slurm resource), through
cybershuttle.compute, so the program must exist there.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import CybershuttleError, RemoteCommandError
from .catalog import Model
from .inputs import Item, write_fasta
from .run import RunResult, check_batch_size, finish

JOB_TIMEOUT_S = 1800


def run(model: Model, items: list[Item], form: str, *, batch_size: int | None, output: str | None,
        resource: str | None = None, walltime: str | int | None = None, setup_file: str | None = None) -> RunResult:
    size = check_batch_size(batch_size)
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    suffix = ".fasta" if form == "fasta" else ".jsonl"
    payloads = [_batch_text(b, form).encode() for b in batches]
    start = time.perf_counter()
    if resource is None:
        texts, job_id = _run_here(model, payloads, suffix), None
    else:
        texts, job_id = _run_on(model, payloads, suffix, resource, walltime, setup_file)
    outputs: list[Any] = []
    for number, (batch, text) in enumerate(zip(batches, texts)):
        lines = text.splitlines()
        if len(lines) != len(batch):
            raise CybershuttleError(f"model {model.name!r}: the program wrote {len(lines)} result lines for batch "
                                    f"{number} of {len(batch)} inputs (it must write one line per input)")
        outputs += [_parse(line) for line in lines]
    result = RunResult(model=model.name, mode="inference", count=len(items), batches=len(batches), batch_size=size,
                       run_s=time.perf_counter() - start, resource=resource, job=job_id, ids=[i.id for i in items])
    finish(result, outputs, output)
    return result


def command_for(template: str, input_path: str, output_path: str) -> tuple[str, bool, bool]:
    """The shell command for one batch, and whether it reads stdin / writes stdout."""
    command = template.replace("{input}", shlex.quote(input_path)).replace("{output}", shlex.quote(output_path))
    return command, "{input}" not in template, "{output}" not in template


def _batch_text(batch: list[Item], form: str) -> str:
    if form == "fasta":
        return write_fasta(batch)
    return "".join(json.dumps(_plain(i.value)) + "\n" for i in batch)


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _parse(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return line


def _run_here(model: Model, payloads: list[bytes], suffix: str) -> list[str]:
    texts = []
    with tempfile.TemporaryDirectory(prefix="cs-model-") as tmp:
        for number, payload in enumerate(payloads):
            inp, out = Path(tmp) / f"batch-{number:04d}{suffix}", Path(tmp) / f"batch-{number:04d}.out"
            inp.write_bytes(payload)
            command, stdin, stdout = command_for(model.location, str(inp), str(out))
            proc = subprocess.run(["bash", "-c", command], input=payload if stdin else b"", capture_output=True,
                                  cwd=tmp, timeout=JOB_TIMEOUT_S)
            if proc.returncode != 0:
                raise RemoteCommandError(f"model {model.name!r}: {command!r} exited {proc.returncode} on batch "
                                         f"{number}: {proc.stderr.decode(errors='replace').strip()[-500:]}")
            if stdout:
                texts.append(proc.stdout.decode())
            elif out.is_file():
                texts.append(out.read_text())
            else:
                raise CybershuttleError(f"model {model.name!r}: the program did not write {{output}} for batch {number}")
    return texts


def _run_on(model: Model, payloads: list[bytes], suffix: str, resource: str,
            walltime: str | int | None, setup_file: str | None = None) -> tuple[list[str], str]:
    from .. import compute

    files = {f"batch-{n:04d}{suffix}": p for n, p in enumerate(payloads)}
    steps = ["set -e", 'cd "$CYBERSHUTTLE_JOB_DIR"']
    for n in range(len(payloads)):
        inp, out = f"batch-{n:04d}{suffix}", f"batch-{n:04d}.out"
        command, stdin, stdout = command_for(model.location, inp, out)
        steps.append(f"( {command} )" + (f" < {inp}" if stdin else " < /dev/null") + (f" > {out}" if stdout else ""))
    job = run_job(model, "\n".join(steps), resource, walltime=walltime, setup_file=setup_file, files=files)
    if job.state != "COMPLETED" or job.exit_code:
        log = compute.read_log(job.id, -800).data.decode(errors="replace").strip()
        raise RemoteCommandError(f"model {model.name!r}: job {job.id} on {resource} ended {job.state} "
                                 f"(exit {job.exit_code}): {log}")
    reads = "; ".join(f"cat {shlex.quote(job.jobdir + f'/batch-{n:04d}.out')}; printf '\\0'"
                      for n in range(len(payloads)))
    text = compute.get(resource).shell().run(reads, timeout=300).stdout
    return text.split("\0")[:len(payloads)], job.id


def run_job(model: Model, command: str, resource: str, *, walltime: Any, setup_file: str | None,
            files: dict[str, bytes]) -> Any:
    """Submit one 1-CPU job for `model` and wait for it to end; it is cancelled if waiting stops early."""
    from .. import compute

    job = compute.execute(command, resource, cpus=1, walltime=walltime, setup_file=setup_file,
                          name=f"model-{model.name}"[:40], files=files)
    try:
        job = compute.wait(job.id, timeout=JOB_TIMEOUT_S)
    finally:
        if not job.final:
            compute.cancel(job.id)
    return job
