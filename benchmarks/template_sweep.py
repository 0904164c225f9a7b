"""A 20-point template sweep as ONE Slurm job array on the loopback cluster, against
20 sequential `papermill` runs of the same notebook here, in the same run.

The sweep is timed from `template.sweep(...)` until every point's executed
notebook and outputs are back on this machine (`template.wait`). Both sides
run the same notebook with the same parameters. A 2-point sweep first builds
the cached papermill environment on the cluster (once per environment, as for
a user), and one papermill run warms this side; neither is timed. For
context it also times 20 sequential papermill runs on the cluster host with
the sweep's own lean environment (this repository's venv imports more, so
its papermill starts slower): the array's gain over that is printed too.

Needs the loopback cluster (`sudo bash tests/cluster/cluster.sh start`).
Ends with `ratio=<sweep/sequential>`; the goal is < 0.7 on 2 cores.

    python benchmarks/template_sweep.py [--points 20]
"""
from __future__ import annotations

import argparse
import subprocess
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
    parser.add_argument("--points", type=int, default=20)
    n = parser.parse_args().points
    env = isolated_home()
    register_cluster()
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from cybershuttle import template

    work = Path(env["CYBERSHUTTLE_HOME"]) / "bench"
    work.mkdir()
    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": tags}) for src, tags in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = work / "sweep.ipynb"
    nbformat.write(nb, src)
    template.add("bench", notebook=str(src))
    (work / "warm.yml").write_text("grid:\n  x: [0, 1]\n")
    (work / "sweep.yml").write_text("points:\n" + "".join(f"  - {{x: {i}}}\n" for i in range(n)))
    papermill = [str(Path(sys.executable).parent / "papermill"), "--no-progress-bar", "-k", "python3"]

    template.sweep("bench", work / "warm.yml", resource="bench-slurm", output=str(work / "warm"))
    warm = template.wait("bench", timeout=900)
    assert all(r.status == "COMPLETED" for r in warm), [(r.status, r.error) for r in warm]
    subprocess.run([*papermill, str(src), str(work / "warm.ipynb"), "-p", "x", "0"], check=True, capture_output=True)

    start = time.perf_counter()
    runs = template.sweep("bench", work / "sweep.yml", resource="bench-slurm", output=str(work / "sweep"))
    ids = {r.id for r in runs}
    done = [r for r in template.wait("bench", timeout=900) if r.id in ids]
    sweep_s = time.perf_counter() - start
    failed = [(r.id, r.status, r.error) for r in done if r.status != "COMPLETED"]
    if failed or len(done) != n:
        sys.exit(f"the sweep did not complete: {failed}")

    start = time.perf_counter()
    for i in range(n):
        subprocess.run([*papermill, str(src), str(work / f"seq-{i}.ipynb"), "-p", "x", str(i)], check=True,
                       capture_output=True)
    seq_s = time.perf_counter() - start

    lean_s = _same_environment_sequential(src, n)

    same = all(abs(r.outputs["total"] - _total(work / f"seq-{r.task}.ipynb")) < 1e-9 for r in done)
    print(f"points={n}  (one job array {done[0].job_id}, {n} tasks; results identical to papermill's: {same})")
    print(f"template sweep (1 sbatch --array, results fetched)  {sweep_s:7.2f} s  {sweep_s / n:5.2f} s/point")
    print(f"{n} sequential papermill runs                       {seq_s:7.2f} s  {seq_s / n:5.2f} s/point")
    print(f"{n} sequential papermill runs on the cluster, in the sweep's own prepared environment "
          f"{lean_s:7.2f} s  {lean_s / n:5.2f} s/point  (sweep/that={sweep_s / lean_s:.2f})")
    print(f"goal: ratio < 0.7: {'met' if sweep_s / seq_s < 0.7 else 'NOT met'}")
    print(f"ratio={sweep_s / seq_s:.2f}")


def _same_environment_sequential(src: Path, n: int) -> float:
    """20 papermill runs one after another on the cluster host, outside Slurm, with the very
    environment the array tasks use: separates the array's gain from the lighter environment's."""
    import shlex

    from cybershuttle import compute
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
    shell.run(loop, timeout=900)
    elapsed = time.perf_counter() - start
    shell.run(f"rm -rf {q}", check=False)
    return elapsed


def _total(path: Path) -> float:
    import nbformat

    from cybershuttle.template.notebook import named_outputs

    return named_outputs(nbformat.read(path, as_version=4))["total"]


if __name__ == "__main__":
    main()
