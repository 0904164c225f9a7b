"""Checkpoint and resume of a 1 GB namespace against `pickle` of the same objects, same filesystem, same run.

A Slurm runtime on the loopback cluster builds a namespace of about 1 GB (byte
blobs, an array of doubles, a list of floats, a dict of strings, instances of a
class defined in the notebook). In that kernel: `pickle.dump` of those objects
to a file beside the checkpoint (flushed and fsynced, as the checkpoint is),
and `runtime checkpoint`, alternately, three times each (medians: a shared
disk's timings swing from run to run). `pickle.load` is timed in a fresh kernel
(a new job, as a restore is), then the runtime is requested again with `--resume`:
its new kernel restores the namespace before its first cell, and checks it
against the baseline file, untimed. Both sides are timed inside the kernels
(what a user waits for beyond the job itself).
Last line: `ratio=<(checkpoint + restore) / (pickle dump + load)>`; goal <= 1.5.

    python benchmarks/runtime_resume.py
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import isolated_home, register_cluster  # noqa: E402

NAME = "bench-resume"
ROUNDS = 3
POINT = """
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __eq__(self, other):
        return (self.x, self.y) == (other.x, other.y)
"""
BUILD = POINT + """
import array
blobs = [bytes(range(256)) * (1 << 19) for _ in range(6)]   # 6 x 128 MiB
doubles = array.array('d', range(20_000_000))                # 160 MB
numbers = [i * 0.5 for i in range(5_000_000)]                # 5 M floats
words = {f"key{i}": i for i in range(1_000_000)}
points = [Point(i, -i) for i in range(200_000)]
NAMES = ["blobs", "doubles", "numbers", "words", "Point", "points"]
"""
BASELINE_DUMP = """
import os, pickle, time, json
_path = os.path.expanduser("~/.cybershuttle/runtimes/bench-resume/baseline.pickle")
os.makedirs(os.path.dirname(_path), mode=0o700, exist_ok=True)
_t = time.perf_counter()
with open(_path, "wb") as _f:
    pickle.dump({n: globals()[n] for n in NAMES if n != "Point"}, _f, protocol=pickle.HIGHEST_PROTOCOL)
    _f.flush(); os.fsync(_f.fileno())
print(json.dumps({"dump_s": time.perf_counter() - _t, "bytes": os.path.getsize(_path)}))
"""
BASELINE_LOAD = """
import os, pickle, time, json
_path = os.path.expanduser("~/.cybershuttle/runtimes/bench-resume/baseline.pickle")
_t = time.perf_counter()
with open(_path, "rb") as _f:
    _base = pickle.load(_f)
print(json.dumps({"load_s": time.perf_counter() - _t}))
"""
CHECK = """
import os, pickle, json
_path = os.path.expanduser("~/.cybershuttle/runtimes/bench-resume/baseline.pickle")
with open(_path, "rb") as _f:
    _base = pickle.load(_f)
os.unlink(_path)
print(json.dumps({"equal": all(_base[n] == globals()[n] for n in _base)}))
"""


def cell(kc, code: str) -> str:
    out: list[str] = []
    reply = kc.execute_interactive(code, timeout=900, output_hook=lambda m: out.append(
        m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
    if reply["content"]["status"] != "ok":
        sys.exit(f"a benchmark cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
    return "".join(out)


def main() -> None:
    isolated_home()
    register_cluster()
    from cybershuttle import runtime
    from cybershuttle.runtime import durable

    runtime.request(NAME, "bench-slurm", walltime=60)
    try:
        runtime.wait(NAME)
        kc = runtime.client(NAME)
        cell(kc, BUILD)
        dumps, checkpoints = [], []
        for _ in range(ROUNDS):
            dumps.append(json.loads(cell(kc, BASELINE_DUMP).strip().splitlines()[-1]))
            checkpoints.append(durable.checkpoint(NAME, timeout=900))
            if checkpoints[-1]["skipped"]:
                sys.exit(f"the checkpoint left out {checkpoints[-1]['skipped']}")
        base = {"dump_s": statistics.median(d["dump_s"] for d in dumps), "bytes": dumps[-1]["bytes"]}
        saved = {**checkpoints[-1], "seconds": statistics.median(c["seconds"] for c in checkpoints)}
        kc.stop_channels()
        runtime.stop(NAME)
        runtime.request(NAME, "bench-slurm", walltime=60)  # a fresh kernel for pickle.load
        runtime.wait(NAME)
        kc = runtime.client(NAME)
        cell(kc, POINT)  # the baseline refers to the notebook's class by name
        loaded = json.loads(cell(kc, BASELINE_LOAD).strip().splitlines()[-1])
        kc.stop_channels()
        runtime.stop(NAME)
        runtime.request(NAME, "bench-slurm", walltime=60, resume=True)
        runtime.wait(NAME)
        kc = runtime.client(NAME)
        equal = json.loads(cell(kc, CHECK).strip().splitlines()[-1])["equal"]
        kc.stop_channels()
        restored = durable.restored(runtime.get(NAME)) or {}
        if restored.get("failed") or not equal:
            sys.exit(f"the resumed namespace differs: {restored.get('failed')} equal={equal}")
    finally:
        if runtime.find(NAME) is not None:
            runtime.stop(NAME)
    ours = saved["seconds"] + restored["seconds"]
    pickled = base["dump_s"] + loaded["load_s"]
    print(f"namespace: {base['bytes'] / 1e9:.2f} GB pickled, checkpoint {saved['bytes'] / 1e9:.2f} GB")
    print(f"checkpoint {saved['seconds']:.2f} s + restore {restored['seconds']:.2f} s = {ours:.2f} s; "
          f"pickle dump {base['dump_s']:.2f} s + load {loaded['load_s']:.2f} s = {pickled:.2f} s")
    print(f"checkpoint_s={saved['seconds']:.2f} restore_s={restored['seconds']:.2f} pickle_s={pickled:.2f} "
          f"ratio={ours / pickled:.2f}")


if __name__ == "__main__":
    main()
