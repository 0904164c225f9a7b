"""A template sweep packed into Slurm array tasks on the loopback cluster, against the same
points run by sequential `papermill` in the sweep's own environment, in the same run.

The sweep is timed from `template.sweep(...)` until every point's executed notebook and
outputs are back on this machine (`template.wait`); it packs its points into array tasks
by itself (the partition's idle CPUs). The baseline runs `python -m papermill` once per
point, one after another, on the cluster host with the very environment the array tasks
use, outside Slurm. Both run the same notebook with the same parameters; every sweep
output is checked against the value computed here. A 2-point sweep first builds the
cached papermill environment on the cluster (once per environment, as for a user) and is
not timed.

Needs the loopback cluster (`sudo bash tests/cluster/cluster.sh start`).
The last line is `ratio=<sweep / sequential papermill> points_per_s=<sweep's points per
second>`; the goal is ratio <= 0.6 on 2 cores.

    python benchmarks/template_sweep.py [--points 200]
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import isolated_home, register_cluster  # noqa: E402

NOTEBOOK_CELLS = [
    ("x = 1  # the point", ["parameters"]),
    ("import math\nvalues = [math.sin(x * i) for i in range(1000)]", []),
    ("total = sum(values)\ntotal", ["output"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=200)
    n = parser.parse_args().points
    env = isolated_home()
    register_cluster()
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from cybershuttle import compute, template

    work = Path(env["CYBERSHUTTLE_HOME"]) / "bench"
    work.mkdir()
    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": tags}) for src, tags in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = work / "sweep.ipynb"
    nbformat.write(nb, src)
    template.add("bench", notebook=str(src))
    (work / "warm.yml").write_text("grid:\n  x: [0, 1]\n")
    (work / "sweep.yml").write_text("points:\n" + "".join(f"  - {{x: {i}}}\n" for i in range(n)))

    template.sweep("bench", work / "warm.yml", resource="bench-slurm", output=str(work / "warm"))
    warm = template.wait("bench", timeout=900)
    assert all(r.status == "COMPLETED" for r in warm), [(r.status, r.error) for r in warm]

    start = time.perf_counter()
    runs = template.sweep("bench", work / "sweep.yml", resource="bench-slurm", output=str(work / "sweep"))
    ids = {r.id for r in runs}
    done = [r for r in template.wait("bench", timeout=1800) if r.id in ids]
    sweep_s = time.perf_counter() - start
    failed = [(r.id, r.status, r.error) for r in done if r.status != "COMPLETED"]
    if failed or len(done) != n:
        sys.exit(f"the sweep did not complete: {failed[:5]}")
    right = all(abs(r.outputs["total"] - sum(math.sin(r.parameters["x"] * i) for i in range(1000))) < 1e-9
                for r in done)
    tasks = len({(r.job_id, r.task) for r in done})
    arrays = len({r.job_id for r in done})

    seq_s = _same_environment_sequential(compute, src, n)

    print(f"points={n}  ({tasks} array task(s) in {arrays} array(s); every output checked: {right})")
    print(f"template sweep (packed array tasks, results fetched)   {sweep_s:7.2f} s  {sweep_s / n:5.3f} s/point")
    print(f"{n} sequential papermill runs, the sweep's environment {seq_s:7.2f} s  {seq_s / n:5.3f} s/point")
    ratio = sweep_s / seq_s
    print(f"goal: ratio <= 0.6: {'met' if ratio <= 0.6 and right else 'NOT met'}")
    print(f"ratio={ratio:.2f} points_per_s={n / sweep_s:.2f}")


def _same_environment_sequential(compute, src: Path, n: int) -> float:
    """`n` papermill runs one after another on the cluster host, outside Slurm, with the very
    environment the array tasks use."""
    from cybershuttle.compute import environment
    from cybershuttle.compute.shell import write_file
    from cybershuttle.template.sweep import PAPERMILL_ENV

    res = compute.get("bench-slurm")
    shell = res.shell()
    env = environment.from_setup(res, None, PAPERMILL_ENV)
    work = f"{res.facts['home']}/.cybershuttle/bench-template-sweep"
    write_file(shell, f"{work}/sweep.ipynb", src.read_bytes())
    q = shlex.quote(work)
    loop = (f". \"$HOME\"/.cybershuttle/envs/{env.env_hash}/bin/activate && cd {q} && for i in $(seq 0 {n - 1}); do "
            f"python -m papermill sweep.ipynb out-$i.ipynb -p x $i -k python3 --no-progress-bar >/dev/null 2>&1 "
            f"|| exit 1; done")
    start = time.perf_counter()
    shell.run(loop, timeout=3600)
    elapsed = time.perf_counter() - start
    shell.run(f"rm -rf {q}", check=False)
    return elapsed


if __name__ == "__main__":
    main()
