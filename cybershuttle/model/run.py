"""The model as a function over batches: inputs in, outputs written, the model object never shown.

Outputs (`--output DIR`):

    outputs.jsonl   always: one line per input, in input order, {"id": ..., "output": ...}
    outputs.npy     also, when every output is a numeric array of one shape:
                    row i is the output of line i of outputs.jsonl

Without an output directory the outputs come back in `RunResult.outputs`
(and the CLI prints the JSON lines).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import CybershuttleError, UsageError
from . import loaders
from .catalog import Model
from .inputs import Item

DEFAULT_BATCH = 64


@dataclass
class RunResult:
    """What one `model run` did."""

    model: str
    mode: str
    count: int
    batches: int
    batch_size: int
    device: str | None = None
    output: str | None = None
    files: list[str] = field(default_factory=list)
    load_s: float = 0.0
    run_s: float = 0.0
    served: bool = False
    resource: str | None = None
    job: str | None = None
    template_run: str | None = None
    named_outputs: dict[str, Any] = field(default_factory=dict)  # an ai4science template's tagged outputs
    ids: list[str] = field(default_factory=list)
    outputs: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = None if self.outputs is None else [jsonable(o) for o in self.outputs]
        return d


class Loaded:
    """An AI model held in memory, ready to be applied to batches again and again."""

    def __init__(self, model: Model, device: str | None = None) -> None:
        self.model = model
        self.device = loaders.pick_device(device)
        start = time.perf_counter()
        self.obj = loaders.load_object(model, self.device)
        self.call = loaders.predictor(self.obj, self.device)
        self.load_s = time.perf_counter() - start

    def apply(self, items: list[Item], batch_size: int | None, output: str | None,
              progress: Callable[[int, int], None] | None = None) -> RunResult:
        size = check_batch_size(batch_size)
        start = time.perf_counter()
        order = batch_order(items)
        done: list[Any] = []
        batches = 0
        for first in range(0, len(order), size):
            done += self.call([items[k].value for k in order[first:first + size]])
            batches += 1
            if progress:
                progress(len(done), len(items))
        if len(done) != len(items):
            raise CybershuttleError(f"model {self.model.name!r} gave {len(done)} outputs for {len(items)} inputs")
        outputs: list[Any] = [None] * len(items)
        for k, value in zip(order, done):
            outputs[k] = value
        run_s = time.perf_counter() - start
        result = RunResult(model=self.model.name, mode="inference", count=len(items), batches=batches,
                           batch_size=size, device=self.device, load_s=self.load_s, run_s=run_s,
                           ids=[i.id for i in items])
        finish(result, outputs, output)
        return result


def batch_order(items: list[Item]) -> list[int]:
    """The order inputs are batched in (outputs are put back in input order afterwards).

    Texts of similar length share a batch, so a batch is padded to little more than its
    longest text; other inputs keep their order.
    """
    order = list(range(len(items)))
    if all(isinstance(i.value, str) for i in items):
        order.sort(key=lambda k: len(items[k].value))
    return order


def check_batch_size(batch_size: int | None) -> int:
    size = DEFAULT_BATCH if batch_size is None else batch_size
    if not isinstance(size, int) or size < 1:
        raise UsageError(f"--batch-size must be a positive whole number, not {batch_size!r}")
    return size


def finish(result: RunResult, outputs: list[Any], output: str | None) -> None:
    """Write the outputs under `output` (see the module doc), or keep them in the result."""
    if len(outputs) != result.count:
        raise CybershuttleError(f"model {result.model!r} gave {len(outputs)} outputs for {result.count} inputs")
    if output is None:
        result.outputs = outputs
        return
    out = Path(output).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    lines = out / "outputs.jsonl"
    with lines.open("w") as f:
        for item_id, value in zip(result.ids, outputs):
            f.write(json.dumps({"id": item_id, "output": jsonable(value)}) + "\n")
    result.output = str(out)
    result.files = [str(lines)]
    stacked = _stack(outputs)
    if stacked is not None:
        import numpy as np

        np.save(out / "outputs.npy", stacked)
        result.files.append(str(out / "outputs.npy"))


def jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    return value


def _stack(outputs: list[Any]) -> Any:
    if not outputs or not all(hasattr(o, "shape") and hasattr(o, "dtype") for o in outputs):
        return None
    import numpy as np

    arrays = [np.asarray(o) for o in outputs]
    if len({a.shape for a in arrays}) != 1 or not all(np.issubdtype(a.dtype, np.number) for a in arrays):
        return None
    return np.stack(arrays)
