"""One array task of a sweep: its share of the points, one after another, in this one process.

Shipped into the sweep's job directory and run there by the task's script, in
the environment that holds papermill (so it imports nothing of Cybershuttle):

    python task_runner.py TASK

The job directory holds `template.ipynb`, `points.tar` (`runs/<point>/`:
`parameters.json` and the point's rendered input files) and `tasks.json` (the
points of each task). papermill, nbformat and jupyter_client are imported once
for all the task's points; every point gets a fresh kernel started in its own
directory, so no point sees another's variables or working directory, and a
failing point is recorded and the next one runs.

Progress goes to `progress/<task>.jsonl`, one JSON object a line, each
written and flushed when it happens, so a task killed at its walltime leaves
an exact record of what finished:

    {"event": "task",  "task": T, "points": [...], "t": ...}     imports done
    {"event": "start", "point": P, "t": ...}
    {"event": "end",   "point": P, "t": ..., "state": "COMPLETED" | "FAILED", "error": ..., "run_time": s}
    {"event": "done",  "t": ...}                                  every point had its turn

The next point's kernel is started while the current point runs (it is new
and has run nothing), so its start-up overlaps the work instead of adding to it.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import time

TEMPLATE = "template.ipynb"
KERNEL = "python3"
START_TIMEOUT_S = 120


def main(argv: list[str]) -> int:
    task = int(argv[1])
    root = os.getcwd()
    with open("tasks.json") as f:
        points = [int(p) for p in json.load(f)[task]]
    os.makedirs("progress", exist_ok=True)
    log = open(os.path.join("progress", f"{task}.jsonl"), "a", buffering=1)

    def emit(**event: object) -> None:
        log.write(json.dumps({**event, "t": time.time()}) + "\n")
        log.flush()

    _extract(points)
    import copy

    import nbformat
    import papermill  # the import this process exists to pay once
    from papermill.exceptions import PapermillExecutionError

    template = nbformat.read(os.path.join(root, TEMPLATE), as_version=4)  # read and validated once

    logging.getLogger("papermill").setLevel(logging.WARNING)
    emit(event="task", task=task, points=points)
    kernels = _Kernels()
    dirs = [os.path.join(root, "runs", str(p)) for p in points]
    kernels.prepare(dirs[0])
    for k, (point, where) in enumerate(zip(points, dirs)):
        emit(event="start", point=point)
        started = time.time()
        state, error = "COMPLETED", None
        km = None
        try:
            try:
                km = kernels.take()
            finally:
                if k + 1 < len(dirs):
                    kernels.prepare(dirs[k + 1])
            with open(os.path.join(where, "parameters.json")) as f:
                parameters = json.load(f)
            # Saved when the point ends, not after every cell: a point cut off by the walltime is re-run whole.
            papermill.execute_notebook(copy.deepcopy(template), os.path.join(where, "executed.ipynb"),
                                       parameters=parameters, kernel_name=KERNEL, cwd=where, progress_bar=False,
                                       start_timeout=START_TIMEOUT_S, request_save_on_cell_execute=False, km=km)
        except PapermillExecutionError as exc:
            state, error = "FAILED", f"cell {exc.cell_index}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # a kernel that died or would not start: this point failed, the next one runs
            state, error = "FAILED", f"{type(exc).__name__}: {exc}".strip()
        finally:
            if km is not None:
                kernels.release(km)
        emit(event="end", point=point, state=state, error=error, run_time=round(time.time() - started, 3))
    kernels.close()
    emit(event="done")
    return 0


class _Kernels:
    """One kernel started ahead, in the next point's directory, on a thread of its own.

    Kernels talk over unix sockets in a private directory, not TCP ports: two
    tasks on one node picking "free" ports at the same moment could collide
    (seen here: "Address already in use", then a kernel that never answers),
    and no other user on the node can connect to them.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._ready: list = []
        self._stopping: list[threading.Thread] = []
        self._sockets = tempfile.mkdtemp(prefix="cs-kernels-")  # 0700, short: socket paths are limited
        self._count = 0

    def prepare(self, where: str) -> None:
        self._ready = []
        self._count += 1
        ip = os.path.join(self._sockets, f"k{self._count}")

        def start() -> None:
            km = _manager_class()(kernel_name=KERNEL, transport="ipc", ip=ip)
            try:
                km.start_kernel(cwd=where)
            except Exception as exc:  # reported when the point asks for its kernel
                self._ready.append(exc)
                return
            self._ready.append(km)

        self._thread = threading.Thread(target=start, daemon=True)
        self._thread.start()

    def take(self):
        assert self._thread is not None
        self._thread.join()
        found = self._ready[0] if self._ready else RuntimeError("the kernel did not start")
        if isinstance(found, BaseException):
            raise found
        return found

    def release(self, km) -> None:
        """Shut the point's kernel down without waiting for it (the next point already has its own)."""
        thread = threading.Thread(target=_shutdown, args=(km,), daemon=True)
        thread.start()
        self._stopping.append(thread)

    def close(self) -> None:
        for thread in self._stopping:
            thread.join(timeout=10)
        shutil.rmtree(self._sockets, ignore_errors=True)


_MANAGER = None


def _manager_class():
    """A KernelManager that remembers the clients made for it: papermill makes one per point and,
    as the manager is ours, leaves it open; `_shutdown` closes them."""
    global _MANAGER
    if _MANAGER is None:
        from jupyter_client.manager import KernelManager

        class TrackingKernelManager(KernelManager):
            def client(self, **kwargs):
                kc = super().client(**kwargs)
                self.__dict__.setdefault("_cs_clients", []).append(kc)
                return kc

        _MANAGER = TrackingKernelManager
    return _MANAGER


def _shutdown(km) -> None:
    for kc in km.__dict__.get("_cs_clients", []):
        try:
            kc.stop_channels()
        except Exception:
            pass
    try:
        km.shutdown_kernel(now=False)
    except Exception:
        try:
            km.shutdown_kernel(now=True)
        except Exception:
            pass


def _extract(points: list[int]) -> None:
    """This task's point directories out of points.tar."""
    wanted = {str(p) for p in points}
    with tarfile.open("points.tar") as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[1:2] and m.name.split("/")[1] in wanted
                   and (m.isfile() or m.isdir()) and not m.name.startswith("/") and ".." not in m.name.split("/")]
        # The resource's Python may predate extraction filters (3.11.4); the checks above do their work.
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(".", members=members, **extra)
    for p in wanted:
        os.makedirs(os.path.join("runs", p), exist_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
