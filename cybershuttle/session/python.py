"""Python sessions: the cybershuttle calls a program makes, and the cells it runs.

`start(name)` begins recording in this process. Two things are recorded:

* Calls to the public, state-changing functions of the cybershuttle modules
  (the table `RECORDED`: requesting/stopping runtimes, submitting jobs,
  registering/mounting/copying storage, loading datasets, running templates,
  models and applications). While a session records, those module attributes
  are wrapped by a thin reporter; `stop()` puts the originals back, so a
  process that never records pays nothing. Only the outermost call is
  recorded: `runtime.request` calling `compute.execute` is one step.
* Inside IPython, every executed cell (IPython's `post_run_cell` event) with
  the runtime it ran on: `%%run_on NAME` cells on NAME, other cells on the
  runtime `%switch_runtime` made active, else `local`.

Both are redacted before being written (see `redact`).
"""
from __future__ import annotations

import functools
import importlib
import os
import re
import sys
import threading
import time
from typing import Any, Callable

from . import store
from .store import SessionError

#: module -> public functions recorded while a session records
RECORDED: dict[str, tuple[str, ...]] = {
    "cybershuttle.runtime": ("request", "wait", "stop", "restart"),
    "cybershuttle.compute": ("execute", "cancel", "validate_and_register", "import_file", "configure"),
    "cybershuttle.storage": ("register", "mount", "umount", "copy", "remove"),
    "cybershuttle.dataset": ("register", "load", "remove", "add_location"),
    "cybershuttle.template": ("add", "run", "sweep", "collect"),
    "cybershuttle.model": ("register", "run"),
    "cybershuttle.application": ("register", "load"),
}

_lock = threading.Lock()
_state: dict[str, Any] = {"name": None, "originals": {}, "ipython": None, "in_cell": False, "cell_depth": 0}
_depth = threading.local()
_RUN_ON = re.compile(r"^\s*%%run_on\s+(\S+)")
_RUNTIME_MAGIC = re.compile(r"^\s*%(request|wait_for|switch|stop|restart|stat)_runtime\b", re.M)


def start(name: str = "session1", *, notebook: str | None = None, state: bool = False) -> store.Session:
    """Record the cybershuttle calls (and, in IPython, the cells) that follow into session `name`.

    A new session is created; an existing Python or notebook session is
    continued. Inside a Jupyter kernel the notebook is attached to the
    session, so its saves become snapshots (see `notebook`); `state`: each
    snapshot also checkpoints the namespaces of the runtimes in use, for
    `session load NAME --restore-state`.
    """
    with _lock:
        if _state["name"] is not None:
            raise SessionError(f"session {_state['name']!r} is already recording in this process: "
                               "call cybershuttle.session.stop() first")
        notebook = notebook or _kernel_notebook()
        session = store.find(name)
        if session is None:
            session = store.create(name, "notebook" if notebook else "python", state="recording",
                                   cwd=os.getcwd(), recorder_pid=os.getpid())
        elif session.kind == "shell":
            raise SessionError(f"session {name!r} is a shell session: choose another name for a Python session")
        else:
            session = store.update(name, state="recording", recorder_pid=os.getpid(), stopped=None)
        if notebook:
            store.add_notebook(name, os.path.abspath(notebook), state=state)
        _state["name"] = name
        _install_wrappers()
        _state["ipython"] = _hook_ipython()
    return store.get(name)


def stop() -> store.Session | None:
    """Stop recording in this process; returns the session (None if none was recording)."""
    with _lock:
        name = _state["name"]
        if name is None:
            return None
        _remove_wrappers()
        ip = _state["ipython"]
        if ip is not None:
            for event, callback in (("pre_run_cell", _on_cell_start), ("post_run_cell", _on_cell)):
                try:
                    ip.events.unregister(event, callback)
                except ValueError:
                    pass
        _state.update(name=None, ipython=None)
    return store.update(name, state="stopped", stopped=time.time(), recorder_pid=None)


def current() -> str | None:
    """The session recording in this process, if any."""
    return _state["name"]


# -- API calls -------------------------------------------------------------------
def _install_wrappers() -> None:
    for module_name, functions in RECORDED.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # a module not built (or not installed) yet: nothing of it to record
        for fn_name in functions:
            original = getattr(module, fn_name, None)
            if callable(original) and not getattr(original, "__cs_recorder__", False):
                _state["originals"][(module, fn_name)] = original
                setattr(module, fn_name, _reporter(module_name.rsplit(".", 1)[1] + "." + fn_name, original))


def _remove_wrappers() -> None:
    for (module, fn_name), original in _state["originals"].items():
        setattr(module, fn_name, original)
    _state["originals"] = {}


def _reporter(call: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_depth, "n", 0)
        name = _state["name"]
        if depth or name is None:
            return fn(*args, **kwargs)
        _depth.n = 1
        started, error = time.time(), None
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            _depth.n = 0
            store.append(name, {"type": "call", "call": call, "in_cell": _state["in_cell"], "args": [_jsonable(a) for a in args],
                                "kwargs": {k: _jsonable(v) for k, v in kwargs.items()}, "time": started,
                                "duration": round(time.time() - started, 3), "ok": error is None, "error": error})

    recorded.__cs_recorder__ = True  # type: ignore[attr-defined]
    return recorded


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def replay_calls(name: str, *, dry_run: bool = False, from_step: int = 0, continue_on_error: bool = False,
                 echo: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Make the recorded calls again, in order; returns one result per call."""
    calls = store.get(name).events("call")
    if from_step > len(calls):
        raise SessionError(f"session {name!r} has {len(calls)} recorded call(s): --from {from_step} is past the end")
    results = []
    for number, event in enumerate(calls, start=1):
        if number < from_step:
            continue
        text = call_text(event)
        if echo:
            echo(f"[{number}] {text}")
        result = {"number": number, "call": text, "ok": None, "error": None}
        results.append(result)
        if dry_run:
            continue
        module_name, fn_name = event["call"].split(".", 1)
        if fn_name not in RECORDED.get("cybershuttle." + module_name, ()):
            raise SessionError(f"session {name!r} step {number} calls {event['call']!r}, which sessions do not replay")
        fn = getattr(importlib.import_module("cybershuttle." + module_name), fn_name)
        try:
            fn(*event.get("args", []), **event.get("kwargs", {}))
            result["ok"] = True
        except Exception as exc:
            result.update(ok=False, error=str(exc))
            if not continue_on_error:
                break
    return results


def call_text(event: dict[str, Any]) -> str:
    """A recorded call as the Python line that makes it."""
    parts = [repr(a) for a in event.get("args", [])] + [f"{k}={v!r}" for k, v in event.get("kwargs", {}).items()]
    return f"{event['call']}({', '.join(parts)})"


# -- IPython cells -----------------------------------------------------------------
def _hook_ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    ip = get_ipython()
    if ip is None:
        return None
    ip.events.register("pre_run_cell", _on_cell_start)
    ip.events.register("post_run_cell", _on_cell)
    return ip


def _on_cell_start(info: Any) -> None:
    # Calls made by a cell are marked, so an export shows the cell once, not its calls again.
    # `%%run_on local` runs its body as a nested cell: only the outer one is recorded.
    _state["cell_depth"] += 1
    _state["in_cell"] = True


def _on_cell(result: Any) -> None:
    _state["cell_depth"] = max(_state["cell_depth"] - 1, 0)
    if _state["cell_depth"]:
        return
    _state["in_cell"] = False
    name = _state["name"]
    source = getattr(result.info, "raw_cell", None) or ""
    if name is None or not source.strip():
        return
    if "\n" not in source.strip() and re.search(r"\bsession\.(start|stop)\(", source):
        return  # the line that started or stops recording is not part of the work
    ip = _state["ipython"]
    store.append(name, {"type": "cell", "source": source, "runtime": cell_runtime(ip, source),
                        "execution_count": getattr(result, "execution_count", None),
                        "ok": bool(getattr(result, "success", True)), "notebook": _kernel_notebook()})


def cell_runtime(ip: Any, source: str) -> str:
    """Where a cell ran: its `%%run_on` target, else the runtime made active, else `local`."""
    match = _RUN_ON.match(source)
    if match:
        return match.group(1)
    magics = getattr(getattr(ip, "magics_manager", None), "registry", {}).get("CybershuttleMagics")
    # Cells holding a Cybershuttle magic always run in the notebook's kernel; the magics
    # module says which those are (read from the loaded extension, not imported by the core).
    local_line = getattr(sys.modules.get(type(magics).__module__), "_LOCAL_LINE", _RUNTIME_MAGIC)
    if local_line.search(source):
        return "local"
    return getattr(magics, "active", None) or "local"


def _kernel_notebook() -> str | None:
    """The notebook this kernel serves (Jupyter Server tells kernels in JPY_SESSION_NAME)."""
    path = os.environ.get("JPY_SESSION_NAME")
    return path if path and path.endswith(".ipynb") else None
