"""`load(name, mode="modify")`: the whole model in memory, ready for fine-tuning,
and, for the CLI, a working directory holding the model's code and dependencies.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import CybershuttleError, UsageError
from . import loaders
from .catalog import Model, get

MODES = ("modify",)


def load(name: str, mode: str = "modify", *, device: str | None = None) -> Any:
    """The model's real object, in training mode with every parameter trainable.

    For a torch model that is the nn.Module itself (a SentenceTransformer is one too):
    hand `model.parameters()` to an optimiser and train.
    """
    if mode not in MODES:
        raise UsageError(f"load mode {mode!r} is not one of {', '.join(MODES)}; for inference use model.run(...)")
    model = get(name)
    obj = loaders.load_object(model, loaders.pick_device(device))
    if hasattr(obj, "train") and hasattr(obj, "parameters"):
        obj.train()
        for parameter in obj.parameters():
            parameter.requires_grad_(True)
    return obj


def workspace(name: str, directory: str | None = None, *, session: str | None = None) -> tuple[Path, str]:
    """A directory with the model's code, a setup file with its dependencies and a starter notebook,
    and the notebook session (cybershuttle.session) that holds it; returns both.

    Used by `cybershuttle model load NAME --mode modify`: open the notebook in
    JupyterLab; its saves become snapshots of the session (`session` defaults to NAME-modify).
    """
    model = get(name)
    if model.loader in ("command", "template"):
        raise UsageError(f"model {name!r} is {model.kind} ({model.loader}): modify mode is for AI models; "
                         f"edit the {'program' if model.loader == 'command' else 'template'} itself")
    target = Path(directory or f"{name}-modify").expanduser().resolve()
    if target.exists() and any(target.iterdir()):
        raise CybershuttleError(f"{target} exists and is not empty: choose another --to directory")
    target.mkdir(parents=True, exist_ok=True)
    code = target / "code"
    code.mkdir()
    torch_version = (_version("torch") or "").split("+")[0]
    pip = [f"torch=={torch_version}"] if torch_version else []
    if model.loader == "entry-point":
        package = model.location.split(":")[0].split(".")[0]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise CybershuttleError(f"model {name!r}: package {package!r} is not installed here; install it first")
        source = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
        if source.is_dir():
            shutil.copytree(source, code / source.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, code / source.name)
        dist = _distribution(package)
        if dist:
            pip.append(f"{dist}=={_version(dist)}")
    else:
        saved = loaders._local_path(model.location)
        shutil.copy2(saved, code / saved.name)
    (target / "cybershuttle.yml").write_text(_setup_file(model, pip))
    (target / "model.json").write_text(json.dumps(model.to_dict(), indent=2) + "\n")
    notebook = target / "modify.ipynb"
    notebook.write_text(_starter(model))
    from .. import names
    from ..session import notebook as notebook_sessions

    session_name = names.validate(session or f"{name}-modify"[:128], "session name")
    notebook_sessions.attach(session_name, notebook)
    return target, session_name


def _setup_file(model: Model, pip: list[str]) -> str:
    lines = ["# Written by `cybershuttle model load " + model.name + " --mode modify`.", "workspace:",
             "  model_collection:", "    - source: cybershuttle", f"      identifier: {model.name}", f"      mount_point: /cybershuttle_data/{model.name}",
             "additional_dependencies:", "  pip:" if pip else "  pip: []"]
    lines += [f"    - {p}" for p in pip]
    return "\n".join(lines) + "\n"


def _starter(model: Model) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# Modify `{model.name}`\n\nThe model's code is in `code/`, its dependencies "
                                      "in `cybershuttle.yml`. `load` returns the real object in training mode."),
        nbformat.v4.new_code_cell("import cybershuttle.model\n\n"
                                  f"model = cybershuttle.model.load({model.name!r}, mode=\"modify\")\n"
                                  "sum(p.numel() for p in model.parameters())"),
        nbformat.v4.new_code_cell("import torch\n\noptimiser = torch.optim.AdamW(model.parameters(), lr=1e-5)\n"
                                  "# for batch in your_data: loss = ...; loss.backward(); optimiser.step(); "
                                  "optimiser.zero_grad()"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(nb)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _distribution(package: str) -> str | None:
    found = importlib.metadata.packages_distributions().get(package)
    return found[0] if found else None
