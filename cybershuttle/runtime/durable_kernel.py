"""A runtime's ipykernel, made durable: checkpoints, an output journal, the walltime warning, idle stop.

This file is copied into the job directory and run by the runtime's own Python
(`exec python durable_kernel.py`, so the job's batch shell *is* this process and
the scheduler's warning signal reaches it), importing only the standard
library, ipykernel and (for checkpoints) dill. Its settings come from
`$CYBERSHUTTLE_JOB_DIR/durable.json` (written 0600 by `runtime/durable.py`):

* warning: SIGUSR1 (Slurm's `--signal=B:USR1@N`) means the walltime ends soon.
  The running cell shows it at once, else the next cell; `durable/warning.json`
  keeps it for `runtime status`; the namespace is checkpointed unless told not to.
* checkpoint: the user namespace, one record per name, into the runtime's
  private directory (0700, files 0600). Plain objects go through the C pickler
  (dill runs on pickle's pure-Python pickler: many times slower on a list of
  numbers); functions and classes defined in the notebook, and whatever the C
  pickler refuses, go through dill. What neither can save is named, never fatal.
* journal: every IOPub message, as the signed frames the kernel sent, with a
  sequence number in its metadata, kept in this process's memory (bounded).
  A re-attaching client asks for what it missed on the control channel (it
  answers while a cell runs) and checks the signatures itself.
* idle stop: after `idle_timeout_s` without a cell, checkpoint and exit;
  `durable/ended.json` says why, for the next use.
"""
import collections
import json
import os
import pickle
import re
import signal
import struct
import sys
import threading
import time
import types

CONFIG = "durable.json"
MAGIC = b"CSCKPT1\n"
_HEAD = struct.Struct("<cHQ")  # kind, name length, payload length
_REC = struct.Struct("<QdI")  # journal: seq, time, number of frames
_LEN = struct.Struct("<I")
_DELIM = b"<IDS|MSG>"
_SKIP_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
SEQ_KEY = "cybershuttle_seq"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")
_early = []  # a warning that came before the kernel was ready
signal.signal(signal.SIGUSR1, lambda *_: _early.append(time.time()))


def main(argv):
    jobdir = os.environ.get("CYBERSHUTTLE_JOB_DIR") or os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(jobdir, CONFIG)) as fh:
        config = json.load(fh)
    state = os.path.join(jobdir, "durable")
    os.makedirs(state, mode=0o700, exist_ok=True)
    connection = os.path.join(jobdir, "connection.json")
    _place_sockets(connection, jobdir)
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(["-f", connection])
    durable = Durable(app, config, state)
    durable.install()
    try:
        durable.restore_at_start()  # first: a checkpoint at an early warning must not replace the one restored
        if _early or os.path.exists(os.path.join(jobdir, "warned")):  # a short walltime: warned already
            durable.warn()
        app.start()
    finally:
        _remove(connection)


#: a Unix socket's path holds at most 107 bytes (Linux; 103 on macOS); ZeroMQ's ipc endpoints need the room
_SOCKET_PATH_MAX = 100


def _place_sockets(connection, jobdir):
    """An "ipc" connection file gets its sockets' place: `kernel-N` in this 0700 job directory, whose
    mode alone keeps them private, so the CurveZMQ keys are dropped. A directory whose path leaves no
    room for a socket's, or that others may enter, keeps 127.0.0.1 ports with the keys (the client
    reads which from the file)."""
    with open(connection) as fh:
        info = json.load(fh)
    if info.get("transport") != "ipc":
        return
    base = os.path.join(os.path.abspath(jobdir), "kernel")
    private = not os.stat(jobdir).st_mode & 0o077  # made 0700; a directory opened to others would not do
    if private and len(base) + 3 <= _SOCKET_PATH_MAX:
        info = {k: v for k, v in info.items() if not k.startswith("curve_")}
        info.update(transport="ipc", ip=base)
    else:
        info.update(transport="tcp", ip="127.0.0.1")
    tmp = connection + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, connection)


class Durable:
    def __init__(self, app, config, state):
        self.app = app
        self.kernel = app.kernel
        self.shell = app.kernel.shell
        self.config = config
        self.state = state
        self.notices = []  # shown in the running cell, else the next one
        self.running = False
        self.current = None  # the msg_id of the execute_request being run
        self.last_activity = time.time()
        self.journal = Journal(int(config.get("journal_bytes") or 64 << 20))
        self.lock = threading.Lock()

    # -- wiring ----------------------------------------------------------
    def install(self):
        self._journal_iopub()
        self.shell.events.register("pre_run_cell", self._pre_run_cell)
        self.shell.events.register("post_run_cell", self._post_run_cell)
        self.kernel.control_handlers["cybershuttle_checkpoint_request"] = self._checkpoint_request
        self.kernel.control_handlers["cybershuttle_journal_request"] = self._journal_request
        signal.signal(signal.SIGUSR1, self._on_warning)
        signal.signal(signal.SIGUSR2, self._on_idle)
        signal.signal(signal.SIGTERM, self._on_term)
        if self.config.get("idle_timeout_s"):
            threading.Thread(target=self._idle_watch, name="cybershuttle-idle", daemon=True).start()

    def _journal_iopub(self):
        """Number every IOPub message (metadata `cybershuttle_seq`) and append its frames to the journal."""
        session = self.app.session
        iopub = (self.app.iopub_thread, self.app.iopub_socket)
        thread = self.app.iopub_thread
        send, send_multipart = session.send, thread.send_multipart
        journal = self.journal
        local = threading.local()

        def numbered_send(stream, msg_or_type, content=None, parent=None, ident=None, buffers=None, track=False,
                          header=None, metadata=None):
            if not any(stream is s for s in iopub):
                return send(stream, msg_or_type, content, parent, ident, buffers, track, header, metadata)
            with journal.lock:  # the number and the journal's order are the wire order
                local.seq = journal.seq + 1
                if isinstance(msg_or_type, dict):
                    msg_or_type = dict(msg_or_type, metadata={**(msg_or_type.get("metadata") or {}),
                                                              SEQ_KEY: local.seq})
                else:
                    metadata = {**(metadata or {}), SEQ_KEY: local.seq}
                try:
                    return send(stream, msg_or_type, content, parent, ident, buffers, track, header, metadata)
                finally:
                    local.seq = None

        def journaled(parts, *args, **kwargs):
            seq = getattr(local, "seq", None)
            if seq is not None:
                journal.append(seq, parts)
            return send_multipart(parts, *args, **kwargs)

        session.send = numbered_send
        thread.send_multipart = journaled

    # -- cells -----------------------------------------------------------
    def _pre_run_cell(self, info=None):
        self.running = True
        try:
            self.current = self.kernel.get_parent("shell")["header"]["msg_id"]
        except (KeyError, TypeError, AttributeError):
            self.current = None
        self.last_activity = time.time()
        self._show_notices()

    def _post_run_cell(self, result=None):
        self.running = False
        self.current = None
        self.last_activity = time.time()

    def _show_notices(self):
        while self.notices:
            print(self.notices.pop(0), file=sys.stderr, flush=True)

    def _notice(self, text):
        self.notices.append(text)
        if self.running:
            self._show_notices()

    # -- the walltime warning ----------------------------------------------
    def _on_warning(self, signum, frame):
        self.warn()

    def warn(self):
        now = time.time()
        before = int(self.config.get("warn_before_s") or 0)
        name = self.config.get("runtime", "this runtime")
        info = {"at": now, "ends_at": now + before if before else None, "checkpoint": None}
        text = f"cybershuttle: the walltime of runtime {name} ends in about {max(1, before // 60)} min"
        if before:
            text += f" (at {time.strftime('%H:%M:%S', time.localtime(now + before))})"
        if self.config.get("checkpoint", True):
            result = self.checkpoint()
            info["checkpoint"] = result
            text += f"; namespace checkpointed ({_summary(result)})"
            text += f": `%request_runtime {name} --resume` continues it in a new job"
        else:
            text += "; no checkpoint (--no-checkpoint): save your work, or `%extend_runtime` where the site allows"
        _write_json(os.path.join(self.state, "warning.json"), {**info, "text": text})
        self._notice(text)

    def _on_term(self, signum, frame):
        # a cancel and the walltime's end: leave no connection file, then die of the signal as before
        _remove(os.path.join(os.path.dirname(self.state), "connection.json"))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    # -- idle stop ---------------------------------------------------------
    def _idle_watch(self):
        limit = float(self.config["idle_timeout_s"])
        while True:
            time.sleep(min(1.0, limit / 4))
            if not self.running and time.time() - self.last_activity >= limit:
                os.kill(os.getpid(), signal.SIGUSR2)  # act in the main thread, between messages
                return

    def _on_idle(self, signum, frame):
        if self.running:
            return
        limit = float(self.config["idle_timeout_s"])
        result = self.checkpoint()
        name = self.config.get("runtime", "this runtime")
        text = (f"runtime {name} ran no cell for {_duration(limit)} and gave its allocation back; its namespace was "
                f"checkpointed ({_summary(result)}): request it with --resume to continue")
        _write_json(os.path.join(self.state, "ended.json"), {"reason": "idle", "at": time.time(), "text": text,
                                                             "checkpoint": result})
        _remove(os.path.join(os.path.dirname(self.state), "connection.json"))
        sys.stdout.flush()
        os._exit(0)

    # -- checkpoints -------------------------------------------------------
    def checkpoint(self, label=None):
        """Save the namespace as the runtime's checkpoint, or as `label` beside it (a session's snapshot)."""
        path = os.path.expanduser(self.config["checkpoint_path"])
        if label is not None:
            if not _LABEL.fullmatch(label):
                raise ValueError(f"not a checkpoint label: {label!r}")
            path = os.path.join(os.path.dirname(path), f"{label}.checkpoint")
        with self.lock:
            return save_namespace(self._user_namespace(), path,
                                  {"job": os.environ.get("SLURM_JOB_ID") or self.config.get("job"),
                                   "runtime": self.config.get("runtime")})

    def _user_namespace(self):
        hidden = getattr(self.shell, "user_ns_hidden", {})
        out = {}
        for name, value in list(self.shell.user_ns.items()):
            if name.startswith("_") or name in _SKIP_NAMES or (name in hidden and hidden[name] is value):
                continue
            out[name] = value
        return out

    def restore_at_start(self):
        path = self.config.get("restore")
        if not path:
            return
        name = self.config.get("runtime", "this runtime")
        start = time.time()
        try:
            values, failed, meta = load_namespace(os.path.expanduser(path), self.shell.user_ns)
        except OSError as exc:
            self._notice(f"cybershuttle: runtime {name}: the checkpoint could not be read ({exc}); nothing restored")
            return
        when = time.strftime("%H:%M:%S", time.localtime(meta.get("saved_at", 0)))
        text = (f"cybershuttle: runtime {name} resumed from the checkpoint of {when} (job {meta.get('job')}): "
                f"restored {', '.join(sorted(values)) or 'nothing'}")
        if failed:
            text += "; not restored: " + "; ".join(f"{k} ({v})" for k, v in sorted(failed.items()))
        _write_json(os.path.join(self.state, "restored.json"),
                    {"restored": sorted(values), "failed": failed, "from": meta, "text": text,
                     "seconds": round(time.time() - start, 3)})
        self._notice(text)

    # -- control-channel requests (answered while a cell runs) ------------------
    def _checkpoint_request(self, stream, ident, parent):
        try:
            content = {"status": "ok", **self.checkpoint(parent["content"].get("label"))}
        except Exception as exc:  # the reply says why; the kernel goes on
            content = {"status": "error", "evalue": f"{type(exc).__name__}: {exc}"}
        self.kernel.session.send(stream, "cybershuttle_checkpoint_reply", content, parent, ident)

    def _journal_request(self, stream, ident, parent):
        after = int(parent["content"].get("after") or 0)
        records, first = self.journal.read(after)
        frames = [part for _, _, parts in records for part in parts]
        content = {"records": [[seq, t, len(parts)] for seq, t, parts in records], "first": first,
                   "last": self.journal.seq, "running": self.current if self.running else None}
        self.kernel.session.send(stream, "cybershuttle_journal_reply", content, parent, ident, buffers=frames)


# -- the journal -------------------------------------------------------------
class Journal:
    """The newest IOPub messages, as the frames that went out, in this process's memory: at most `limit`
    bytes, and always the newest message (the one a re-attaching notebook most needs).

    Why memory, not files in the job directory: the journal is only ever read through this process
    (`cybershuttle_journal_request`), so it is gone with it either way, and a file put every output
    through the filesystem once more; on a cluster that is the shared filesystem. Measured on the
    loopback cluster (benchmarks/cell_throughput.py, one 20 MB write): the file journal cost this process
    14-24 ms of CPU a cell, and the kernel's writeback as much again on the same two cores. Here the
    journal holds references to the bytes the kernel sent anyway (no copy), copying only frames whose
    memory someone could change after the send (a user's buffers).
    """

    def __init__(self, limit):
        self.limit = max(int(limit), 1 << 16)
        self.lock = threading.RLock()
        self.seq = 0
        self.records = collections.deque()  # (seq, time, frames, size), oldest first
        self.size = 0

    def append(self, seq, parts):
        frames = [_frozen(p) for p in parts]
        size = sum(len(f) for f in frames)
        with self.lock:
            self.seq = max(self.seq, seq)
            self.records.append((seq, time.time(), frames, size))
            self.size += size
            while self.size > self.limit and len(self.records) > 1:
                self.size -= self.records.popleft()[3]

    def read(self, after):
        """Records (seq, time, frames) with seq > after, and the first seq still kept (older ones were dropped)."""
        with self.lock:
            if after >= self.seq or not self.records:
                return [], None  # nothing new: the common answer to a client's check, kept cheap
            return [(seq, t, frames) for seq, t, frames, _ in self.records if seq > after], self.records[0][0]


def _frozen(part):
    """One frame's bytes: bytes as they are (they cannot change), anything else copied (a zmq.Frame, a
    user's buffer: its memory may be written after the send)."""
    return part if isinstance(part, bytes) else memoryview(getattr(part, "buffer", part)).tobytes()


# -- namespace files ---------------------------------------------------------
class _Pickler(pickle.Pickler):
    """The C pickler, with dill for what only dill can save by value: the notebook's own functions/classes.

    A notebook class or function saved under its own name elsewhere in the namespace is referred to by
    that name (restored first, it is the one its instances and callers get back); only the record of the
    name itself, and nameless ones (a lambda), carry it by value.
    """

    def __init__(self, file, namespace, top):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.namespace, self.top = namespace, top

    def reducer_override(self, obj):
        if isinstance(obj, (types.FunctionType, type)) and getattr(obj, "__module__", None) == "__main__":
            name = getattr(obj, "__qualname__", None)
            if obj is not self.top and name == obj.__name__ and self.namespace.get(name) is obj:
                return NotImplemented  # by reference: __main__.NAME
            import dill

            return dill.loads, (dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, recurse=False),)
        return NotImplemented


def save_namespace(namespace, path, meta):
    """Write `namespace` to `path` (atomically, 0600); returns what was saved and what was not, by name."""
    start = time.time()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    saved, skipped = [], {}
    fh = _open_private(tmp, exclusive=True)
    try:
        header = json.dumps({**meta, "saved_at": time.time()}).encode()
        fh.write(MAGIC + _LEN.pack(len(header)) + header)
        for name, value in namespace.items():
            kind, error = _save_one(fh, name, value, namespace)
            if kind:
                saved.append(name)
            else:
                skipped[name] = error
        fh.flush()
        os.fsync(fh.fileno())
    except BaseException:
        fh.close()
        _remove(tmp)
        raise
    size = fh.tell()
    fh.close()
    os.replace(tmp, path)
    return {"path": path, "saved": saved, "skipped": skipped, "bytes": size, "seconds": round(time.time() - start, 3)}


def _save_one(fh, name, value, namespace):
    encoded = name.encode()
    start = fh.tell()
    error = None
    if isinstance(value, types.ModuleType):
        attempts = (("m", lambda f: f.write(value.__name__.encode())),)
    else:
        attempts = (("p", lambda f: _Pickler(f, namespace, value).dump(value)), ("d", _dill_dump(value)))
    for kind, dump in attempts:
        fh.seek(start)
        fh.truncate()
        fh.write(_HEAD.pack(kind.encode(), len(encoded), 0) + encoded)
        body = fh.tell()
        try:
            dump(fh)
        except Exception as exc:  # anything a user's object raises while pickled
            error = error or f"{type(exc).__name__}: {exc}"[:200]
            continue
        end = fh.tell()
        fh.seek(start)
        fh.write(_HEAD.pack(kind.encode(), len(encoded), end - body))
        fh.seek(end)
        return kind, None
    fh.seek(start)
    fh.truncate()
    return None, error


def _dill_dump(value):
    def dump(fh):
        import dill

        dill.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL, recurse=False)
    return dump


def load_namespace(path, into=None):
    """(values by name, failures by name with why, the checkpoint's metadata).

    `into` (the kernel's user namespace, `__main__`'s) receives each value as soon as it is loaded, in the
    order saved, so a later record can refer to an earlier one by name (`__main__.NAME`).
    """
    values, failed = {}, {}
    with open(path, "rb") as fh:
        if fh.read(len(MAGIC)) != MAGIC:
            raise OSError(f"{path} is not a Cybershuttle checkpoint")
        (length,) = _LEN.unpack(fh.read(_LEN.size))
        meta = json.loads(fh.read(length))
        while True:
            head = fh.read(_HEAD.size)
            if len(head) < _HEAD.size:
                break
            kind, nlen, size = _HEAD.unpack(head)
            name = fh.read(nlen).decode()
            body = fh.tell()
            try:
                if kind == b"m":
                    import importlib

                    values[name] = importlib.import_module(fh.read(size).decode())
                elif kind == b"p":
                    values[name] = pickle.load(fh)
                else:
                    import dill

                    values[name] = dill.load(fh)
                if into is not None:
                    into[name] = values[name]
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"[:200]
            fh.seek(body + size)
    return values, failed, meta


# -- small helpers -------------------------------------------------------------
def _summary(result):
    text = f"{len(result['saved'])} names, {result['bytes'] / 1e6:.1f} MB"
    if result["skipped"]:
        text += "; not saved: " + ", ".join(sorted(result["skipped"]))
    return text


def _duration(seconds):
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _open_private(path, exclusive=False, buffering=-1):
    flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC) | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o600), "w+b", buffering=buffering)


def _write_json(path, data):
    tmp = f"{path}.tmp"
    _remove(tmp)
    with _open_private(tmp, exclusive=True) as fh:
        fh.write(json.dumps(data).encode())
    os.replace(tmp, path)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
