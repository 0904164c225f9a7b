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


def workspace(name: str, directory: str | None = None) -> Path:
    """A directory with the model's code, a setup file with its dependencies and a starter script.

    Used by `cybershuttle model load NAME --mode modify`: open it in JupyterLab
    (or record a session there) to change and fine-tune the model.
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
    (target / "modify.py").write_text(_starter(model))
    (target / "model.json").write_text(json.dumps(model.to_dict(), indent=2) + "\n")
    return target


def _setup_file(model: Model, pip: list[str]) -> str:
    lines = ["# Written by `cybershuttle model load " + model.name + " --mode modify`.", "workspace:",
             "  model_collection:", "    - source: cybershuttle", f"      identifier: {model.name}", f"      mount_point: /cybershuttle_data/{model.name}",
             "additional_dependencies:", "  pip:" if pip else "  pip: []"]
    lines += [f"    - {p}" for p in pip]
    return "\n".join(lines) + "\n"


def _starter(model: Model) -> str:
    return (f'"""Fine-tune {model.name}: the model is a torch module in training mode."""\n'
            "import cybershuttle.model\n\n"
            f"model = cybershuttle.model.load({model.name!r}, mode=\"modify\")\n"
            "print(type(model).__name__, sum(p.numel() for p in model.parameters()), \"parameters\")\n")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _distribution(package: str) -> str | None:
    found = importlib.metadata.packages_distributions().get(package)
    return found[0] if found else None
