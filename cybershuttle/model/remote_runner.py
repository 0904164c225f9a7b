"""Runs an AI model over batches inside a compute job, on a resource without Cybershuttle.

This file is copied into the job directory and run by the resource's Python
(the one the job's setup file provides), so it imports only the standard
library and torch (plus the model's own package for an entry point).

    python3 model_runner.py --batch-size N --device D (--file model.pt | --entry-point pkg.mod:factory)

reads `inputs.jsonl` (one JSON value a line, already in batch order) and
writes `outputs.jsonl`: one line per input, in the same order, either
{"array": [...], "dtype": "float32"} for a tensor or array row, or {"value": ...}.
The rules for turning a model into a batch function are those of
cybershuttle.model.loaders.predictor; exit code 3 means torch cannot be imported; the
marks below tell the caller what was missing.
"""
import argparse
import importlib
import inspect
import json
import sys
import warnings
import zipfile

NO_TORCH_EXIT = 3
NO_TORCH_MARK = "cybershuttle-model-runner: cannot import torch"
NO_ENTRY_MARK = "cybershuttle-model-runner: cannot import the entry point"


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--file")
    parser.add_argument("--entry-point")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # torch warns when numpy is absent, which this runner never needs
    try:
        import torch
    except ImportError as exc:
        print(f"{NO_TORCH_MARK} ({exc}) with {sys.executable}", file=sys.stderr)
        return NO_TORCH_EXIT
    device = args.device
    if device in ("auto", "", None):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        obj = load(torch, args, device)
    except (ImportError, AttributeError) as exc:
        if not args.entry_point:
            raise
        print(f"{NO_ENTRY_MARK} ({exc}) with {sys.executable}", file=sys.stderr)
        return 1
    call = predictor(torch, obj, device)
    with open("inputs.jsonl") as f:
        values = [json.loads(line) for line in f if line.strip()]
    with open("outputs.jsonl.part", "w") as out:
        for first in range(0, len(values), args.batch_size):
            batch = values[first:first + args.batch_size]
            results = call(batch)
            if len(results) != len(batch):
                print(f"the model returned {len(results)} outputs for a batch of {len(batch)} inputs", file=sys.stderr)
                return 1
            for value in results:
                out.write(json.dumps(encode(value)) + "\n")
    import os

    os.replace("outputs.jsonl.part", "outputs.jsonl")
    print(f"cybershuttle-model-runner: {len(values)} inputs on {device}", file=sys.stderr)
    return 0


def load(torch, args, device):
    if args.file:
        # Anything but a TorchScript archive is a pickled module whose class must be importable here.
        if is_torchscript(args.file):
            return torch.jit.load(args.file, map_location=device)
        return torch.load(args.file, map_location=device, weights_only=False)
    obj = from_entry_point(args.entry_point, device)
    if isinstance(obj, torch.nn.Module):
        obj = obj.to(device)
    return obj


# The two helpers below are shared with cybershuttle.model.loaders (which imports this file), so a
# model loads by the same rules here and on a resource.
def is_torchscript(path):
    """TorchScript archives carry their code ("code/" inside the zip)."""
    return zipfile.is_zipfile(path) and any("/code/" in n for n in zipfile.ZipFile(path).namelist())


def from_entry_point(location, device):
    """Import `pkg.module:factory` and call it (with device= when it takes one); a non-callable is the model."""
    module_name, _, attr = location.partition(":")
    target = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        return target
    try:
        takes_device = "device" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        takes_device = False
    return target(device=device) if takes_device else target()


def predictor(torch, obj, device):
    if callable(getattr(obj, "encode", None)):  # sentence-transformers and similar text encoders
        return lambda batch: list(obj.encode([str(v) for v in batch], batch_size=len(batch), convert_to_tensor=True,
                                             show_progress_bar=False))
    if isinstance(obj, (torch.nn.Module, torch.jit.ScriptModule)):
        obj.eval()

        def forward(batch):
            with torch.inference_mode():
                out = obj(torch.tensor(batch, dtype=torch.float32, device=device))
            return list(out.detach().cpu())
        return forward
    if callable(obj):
        return lambda batch: list(obj(batch))
    raise SystemExit(f"the loaded model ({type(obj).__name__}) has no encode(), is no torch module and is not callable")


def encode(value):
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # tensors and numpy arrays
        return {"array": value.tolist(), "dtype": str(value.dtype).replace("torch.", "")}
    return {"value": value}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
