"""Time from `%request_runtime` to the first cell result, through the magics in a
local kernel, on the idle loopback Slurm and over plain SSH (the runtime's Python
environment already cached on the resource; the first, uncached start is printed
apart). Ends with `slurm_s=<median> ssh_s=<median>`; goals <= 2.0 s and <= 1.0 s. `node_s` is the
same on a compute node of the idle cluster (its node partition; the kernel reached by the resource's
node transport); goal <= 2.0 s.

Then the same on Slurm with a setup file holding conda packages (the test channel's
csmath/csstats/cshello and a nested pip list, through the cluster's local conda channels):
`conda_build_s` is the first start, which builds the conda environment (reported, no goal),
`conda_cached_s` the median start once it is cached (goal <= 1.5 s).

    python benchmarks/runtime_start.py [--runs 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import cluster_env, isolated_home, register_cluster  # noqa: E402

CONDA_FILE = (Path(__file__).resolve().parent.parent / "tests" / "data" / "conda_environment.yml").read_text()


def run(kc, code: str) -> None:
    reply = kc.execute_interactive(code, timeout=600, output_hook=lambda m: None)
    if reply["content"]["status"] != "ok":
        sys.exit(f"{code!r} failed: {reply['content'].get('evalue')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--node-only", action="store_true", help="measure only node_s")
    args = parser.parse_args()
    runs = args.runs
    home = isolated_home()
    register_cluster()
    setup_file = register_conda_cluster(Path(home["CYBERSHUTTLE_HOME"]))
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    run(kc, "import cybershuttle_magic")
    medians = {}
    try:
        node_partition = cluster_env()["CS_TEST_NODE_PARTITION"]
        paths = [("ssh", "bench-ssh", ""), ("slurm", "bench-slurm", ""),
                 ("node", "bench-slurm", f" --partition {node_partition}")]
        for label, resource, extra in paths[2:] if args.node_only else paths:
            times = []
            for i in range(runs + 1):  # the first run may build the environment: reported apart
                name = f"start{label}{i}"
                start = time.perf_counter()
                run(kc, f"%request_runtime {name} --resource {resource}{extra}\n%switch_runtime {name}")
                run(kc, "1+1")
                times.append(time.perf_counter() - start)
                run(kc, f"%stop_runtime {name}")
            medians[label] = statistics.median(times[1:])
            print(f"{label}: first={times[0]:.2f} s  cached: median={medians[label]:.2f} s  "
                  f"min={min(times[1:]):.2f} s  max={max(times[1:]):.2f} s", flush=True)
        if args.node_only:
            print(f"node_s={medians['node']:.2f}")
            return
        forget_conda_env(setup_file)
        times = []
        for i in range(runs + 1):  # the first builds the conda environment
            name = f"startconda{i}"
            start = time.perf_counter()
            run(kc, f"%request_runtime {name} --resource bench-conda --file={setup_file}\n%switch_runtime {name}")
            run(kc, "import csstats; 1+1")
            times.append(time.perf_counter() - start)
            run(kc, f"%stop_runtime {name}")
        build_s, medians["conda"] = times[0], statistics.median(times[1:])
        print(f"conda: first (builds the environment)={build_s:.2f} s  cached: median={medians['conda']:.2f} s  "
              f"min={min(times[1:]):.2f} s  max={max(times[1:]):.2f} s", flush=True)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print(f"goals: slurm <= 2.0 s ({'met' if medians['slurm'] <= 2.0 else 'NOT met'}), "
          f"ssh <= 1.0 s ({'met' if medians['ssh'] <= 1.0 else 'NOT met'}), "
          f"conda cached <= 1.5 s ({'met' if medians['conda'] <= 1.5 else 'NOT met'}), "
          f"node <= 2.0 s ({'met' if medians['node'] <= 2.0 else 'NOT met'})")
    print(f"slurm_s={medians['slurm']:.2f} ssh_s={medians['ssh']:.2f} conda_cached_s={medians['conda']:.2f} "
          f"conda_build_s={build_s:.2f} node_s={medians['node']:.2f}")


def register_conda_cluster(home: Path) -> str:
    """`bench-conda`: the loopback Slurm whose conda channels are the cluster's local ones."""
    from cybershuttle import compute

    c = cluster_env()
    result = compute.validate_and_register(dict(
        name="bench-conda", kind="slurm", host=c["CS_TEST_HOST"], port=int(c["CS_TEST_PORT"]), user=c["CS_TEST_USER"],
        key=c["CS_TEST_KEY"], known_hosts=c["CS_TEST_KNOWN_HOSTS"],
        conda={"channel_alias": c["CS_TEST_CONDA_CHANNELS"]}), replace_existing=True)
    if not result.saved:
        sys.exit(f"cannot register the loopback cluster: {result.to_dict()}")
    path = home / "cybershuttle.yml"
    path.write_text(CONDA_FILE)
    return str(path)


def forget_conda_env(setup_file: str) -> None:
    """Remove the benchmark's environment from the cluster, so the first start really builds it."""
    from cybershuttle import compute, runtime, setupfile
    from cybershuttle.compute import condaenv, environment

    res = compute.get("bench-conda")
    setup = setupfile.load(setup_file)
    env = environment.check(res, res.shell(), environment.from_setup(res, setup, runtime.kernel_requirements()), setup)
    if any(e["hash"] == env.conda.env_hash for e in condaenv.list_envs("bench-conda")):
        condaenv.remove_env("bench-conda", env.conda.env_hash, force=True)


if __name__ == "__main__":
    main()
