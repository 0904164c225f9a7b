"""Turning a registered AI model into an object in memory, and into a batch function.

torch is imported only here and only when a model is loaded, so the rest of
Cybershuttle (and its CLI) never needs it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .. import trust
from ..errors import CybershuttleError, UsageError
from . import remote_runner
from .catalog import STORAGE_SPEC, Model

DEVICES = ("auto", "cpu", "cuda")


def pick_device(device: str | None) -> str:
    """'auto' (or None) means cuda when torch sees a GPU, else cpu."""
    device = device or "auto"
    if device not in DEVICES and not device.startswith("cuda:"):
        raise UsageError(f"device {device!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
    try:
        import torch
    except ImportError:
        if device.startswith("cuda"):
            raise CybershuttleError("--device cuda needs PyTorch: pip install torch") from None
        return "cpu"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CybershuttleError(f"--device {device}: PyTorch sees no GPU here; use --device cpu or auto")
    return device


def load_object(model: Model, device: str) -> Any:
    """The model's real object (an nn.Module, a SentenceTransformer, a callable)."""
    trust.require("model", model)  # importing another user's entry point runs their code
    if model.loader == "entry-point":
        return _from_entry_point(model, device)
    if model.loader == "torch-file":
        return _from_torch_file(model, device)
    raise UsageError(f"model {model.name!r} is a {model.kind} model ({model.loader}): it has no in-memory object; "
                     "use `model run` for it")


def predictor(obj: Any, device: str) -> Callable[[list[Any]], list[Any]]:
    """A function from a list of inputs to a list of outputs, one per input, in order."""
    if callable(getattr(obj, "encode", None)):  # sentence-transformers and similar text encoders
        def encode(batch: list[Any]) -> list[Any]:
            return list(obj.encode([str(v) for v in batch], batch_size=len(batch), convert_to_numpy=True,
                                   show_progress_bar=False))
        return encode
    if _is_torch_module(obj):
        import numpy as np
        import torch

        obj.eval()

        def forward(batch: list[Any]) -> list[Any]:
            rows = np.stack([np.asarray(v, dtype=np.float32) for v in batch])
            with torch.inference_mode():
                out = obj(torch.from_numpy(rows).to(device))
            return list(out.detach().cpu().numpy())
        return forward
    if callable(obj):
        def call(batch: list[Any]) -> list[Any]:
            out = list(obj(batch))
            if len(out) != len(batch):
                raise CybershuttleError(f"the model returned {len(out)} outputs for a batch of {len(batch)} inputs")
            return out
        return call
    raise CybershuttleError(f"the loaded model ({type(obj).__name__}) has no encode(), is no torch module and is not "
                            "callable: Cybershuttle cannot run it over batches")


def _is_torch_module(obj: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, (torch.nn.Module, torch.jit.ScriptModule))


def _from_entry_point(model: Model, device: str) -> Any:
    try:
        obj = remote_runner.from_entry_point(model.location, device)
    except (ImportError, AttributeError) as exc:
        raise CybershuttleError(f"model {model.name!r}: cannot import {model.location} ({exc}); install the package "
                                "that provides it") from exc
    if _is_torch_module(obj):
        obj = obj.to(device)
    return obj


def _refuse_foreign_pickle(model: Model, path: Path) -> None:
    """Unpickling runs code the file's author chose, and a pickle cannot be read before it runs:
    only the user's own pickled models are loaded (TorchScript archives carry no pickled code)."""
    from ..profile import current_user

    if model.owner and model.owner != current_user():
        raise CybershuttleError(
            f"model {model.name!r} is a pickled PyTorch module registered by {model.owner!r}; loading it "
            f"would run code from {path}. Ask {model.owner} to save it with torch.jit.save (TorchScript) "
            f"and register that, or review the file and register your own copy")


def _from_torch_file(model: Model, device: str) -> Any:
    try:
        import torch
    except ImportError:
        raise CybershuttleError(f"model {model.name!r} is a saved PyTorch model: install PyTorch "
                                "(pip install torch) to load it") from None
    path = _local_path(model.location)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if remote_runner.is_torchscript(path):  # TorchScript needs no class on the path
            return torch.jit.load(str(path), map_location=device)
        _refuse_foreign_pickle(model, path)
        try:
            obj = torch.load(str(path), map_location=device, weights_only=False)
        except (AttributeError, ModuleNotFoundError) as exc:
            raise CybershuttleError(f"model {model.name!r}: {path} is a pickled module whose class cannot be imported "
                                    f"({exc}); save it with torch.jit.save, or register an entry point") from exc
    if isinstance(obj, dict):
        raise CybershuttleError(f"model {model.name!r}: {path} holds a state_dict, not a model; register an entry "
                                "point (pkg.module:factory) that builds the module and loads it")
    return obj


def _local_path(location: str) -> Path:
    """A saved model's file on this machine; one on a remote storage is fetched into the profile's cache
    (kept while the remote file's size and mtime stay the same)."""
    if STORAGE_SPEC.fullmatch(location):
        import hashlib
        import os
        import shutil

        from .. import profile, storage

        where = storage.path(location)
        if Path(where).is_file():
            return Path(where)
        (info,) = storage.ls(location)
        if info.get("type") != "file":
            raise CybershuttleError(f"the saved model {location} is a {info.get('type')}, not a file")
        key = hashlib.sha256(f"{location}\0{info.get('size')}\0{info.get('mtime')}".encode()).hexdigest()[:16]
        cache = profile.active().subdir("models") / "cache"
        cache.mkdir(mode=0o700, exist_ok=True)
        target = cache / f"{key}-{Path(location.split(':', 1)[1]).name}"
        if not target.is_file():
            partial = target.with_suffix(".part")
            with storage.open(location, "rb") as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(partial, target)
        return target
    path = Path(location)
    if not path.is_file():
        raise CybershuttleError(f"the saved model {location} is gone: register the model again with its new path")
    return path
