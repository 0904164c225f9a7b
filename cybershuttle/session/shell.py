"""Shell sessions: a recording subshell on a pty, and replaying what it recorded.

`record()` runs the user's shell (bash, or zsh) on a pseudo-terminal and
relays the terminal both ways, as `script(1)` does. A prompt hook in the
shell (bash's PROMPT_COMMAND, zsh's precmd) writes, at every prompt, the
last exit code, the working directory and the last history entry into a FIFO
that only this process reads. The raw line therefore never touches disk: it
is parsed and redacted here, then appended to the session's event log.

A command's working directory is the one of the prompt it was typed at, i.e.
the directory reported by the *previous* prompt hook (after `cd x`, the hook
already reports x).
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import tty
from dataclasses import dataclass, field
from typing import Callable, TextIO

from . import store
from .store import SessionError

SESSION_ENV = "CYBERSHUTTLE_SESSION"
_FIELD_COUNT = 6  # "CSREC", exit code, cwd, start (µs), prompt time, history entry

# The user's HISTCONTROL (from the environment or ~/.bashrc) is kept: a command
# typed with a leading space under ignorespace is how one keeps it out of
# history, so it stays out of the session too (the hook sees an unchanged
# history number and records nothing). With ignoredups, a command repeated at
# once is recorded once, as the user's own history has it.
# Both hooks print: CSREC \0 exit \0 cwd \0 start-µs \0 now \0 history-line \0
# bash: PS0 (expanded as a command starts) keeps its start time in __cs_t by an
# arithmetic assignment inside a zero-length substring, so it prints nothing and forks nothing.
_BASH_RC = r"""
if [ -f ~/.bashrc ]; then . ~/.bashrc; fi
HISTIGNORE=
HISTTIMEFORMAT='%s '
shopt -s cmdhist lithist
set -o history
__cs_one=x
PS0='${__cs_one:0:$((__cs_t=${EPOCHREALTIME/[.,]/},0))}'"${PS0:-}"
__cs_record() {
    local rc=$?
    printf 'CSREC\0%s\0%s\0%s\0%s\0%s\0' "$rc" "$PWD" "${__cs_t:-}" "${EPOCHREALTIME:-}" "$(history 1)" >> "$__CS_FIFO"
    __cs_t=
    return $rc
}
PROMPT_COMMAND="__cs_record${PROMPT_COMMAND:+;$PROMPT_COMMAND}"
PS1="($CYBERSHUTTLE_SESSION) ${PS1:-\$ }"
"""

_ZSH_RC = r"""
if [[ -f "$__CS_USER_ZDOTDIR/.zshrc" ]]; then ZDOTDIR="$__CS_USER_ZDOTDIR" . "$__CS_USER_ZDOTDIR/.zshrc"; fi
zmodload zsh/datetime 2>/dev/null
unsetopt HIST_IGNORE_DUPS HIST_IGNORE_ALL_DUPS HIST_IGNORE_SPACE HIST_NO_STORE
setopt EXTENDED_HISTORY
__cs_start() { __cs_t=$EPOCHREALTIME }
__cs_record() {
    local rc=$?
    print -rn -- "CSREC"$'\0'"$rc"$'\0'"$PWD"$'\0'"${__cs_t:-}"$'\0'"${EPOCHREALTIME:-}"$'\0'"$(fc -l -t '%s' -1 2>/dev/null)"$'\0' >> "$__CS_FIFO"
    __cs_t=
}
preexec_functions=(__cs_start $preexec_functions)
precmd_functions=(__cs_record $precmd_functions)
PS1="($CYBERSHUTTLE_SESSION) ${PS1:-%# }"
"""

# `history 1` in bash: "  12  1700000000 the command"; zsh's `fc -l -t %s -1`: "   12  1700000000  the command"
_HISTORY = re.compile(r"^\s*(\d+)\*?\s+(\d+) +(.*)$", re.S)


@dataclass
class Step:
    """One recorded command as replayed."""

    number: int
    command: str
    cwd: str
    recorded_exit: int | None = None
    exit_code: int | None = None
    redacted: bool = False

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class LoadResult:
    """What `load` ran (or would run, with dry_run)."""

    session: str
    steps: list[Step] = field(default_factory=list)
    failed: Step | None = None
    dry_run: bool = False
    restored: dict[str, object] | None = None  # a notebook session: notebooks, runtimes and mounts brought back

    @property
    def ok(self) -> bool:
        return self.failed is None

    def to_dict(self) -> dict[str, object]:
        return {"session": self.session, "dry_run": self.dry_run, "ok": self.ok,
                "failed": self.failed.number if self.failed else None, "steps": [s.to_dict() for s in self.steps],
                "restored": self.restored}


# -- recording -------------------------------------------------------------------
def pick_shell(shell: str | None = None) -> str:
    """The shell to record with: the one asked for, else $SHELL when it is bash or zsh, else bash."""
    login_shell = os.path.basename(os.environ.get("SHELL", ""))
    wanted = shell or (login_shell if login_shell in ("bash", "zsh") else "bash")
    if os.path.basename(wanted) not in ("bash", "zsh"):
        raise SessionError(f"cannot record with {wanted!r}: sessions record bash or zsh")
    path = shutil.which(wanted)
    if path is None:
        raise SessionError(f"{wanted} is not installed here: use --shell bash (or install {wanted})")
    return path


def record(name: str, *, shell: str | None = None, stdin: TextIO | None = None,
           stdout: TextIO | None = None) -> int:
    """Open a recording subshell for session `name`; returns the shell's exit status.

    Every command line typed in it is appended to the session (redacted) with
    its working directory, exit code, start time and duration, until the
    shell exits or `stop()` is called.
    """
    if os.environ.get(SESSION_ENV):
        raise SessionError(f"this shell is already recording session {os.environ[SESSION_ENV]!r}: "
                           "type 'exit' (or 'cybershuttle session stop') to end it first")
    path = pick_shell(shell)
    kind = os.path.basename(path)
    cwd = os.getcwd()
    store.create(name, "shell", shell=kind, cwd=cwd, state="recording", recorder_pid=os.getpid())
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    try:
        return _Recorder(name, path, kind, cwd).run(stdin, stdout)
    finally:
        store.update(name, state="stopped", stopped=time.time(), recorder_pid=None)


def stop(name: str | None = None) -> store.Session:
    """Stop a recording shell session: `name`, or the one this shell records."""
    name = name or os.environ.get(SESSION_ENV)
    if not name:
        live = [s for s in store.list_all() if s.kind == "shell" and s.state == "recording"]
        if len(live) != 1:
            raise SessionError("no session is being recorded here" if not live else
                               "several sessions are recording (" + ", ".join(s.name for s in live) +
                               "): name the one to stop")
        name = live[0].name
    session = store.get(name)
    if session.kind != "shell":
        raise SessionError(f"session {name!r} is a {session.kind} session: stop it where it records "
                           "(cybershuttle.session.stop() in Python)")
    if session.state != "recording":
        raise SessionError(f"session {name!r} is not recording")
    pid = session.recorder_pid
    session = store.update(name, state="stopped", stopped=time.time(), recorder_pid=None)
    if pid:
        # The recorder hangs up its shell; we may be a child of that shell, so this comes last.
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return session


class _Recorder:
    def __init__(self, name: str, shell_path: str, kind: str, cwd: str) -> None:
        self.name = name
        self.shell_path = shell_path
        self.kind = kind
        self.last_cwd = cwd
        self.last_number: int | None = None  # history number already seen (the first prompt sets it)
        self.buffer = b""
        self.stopping = False
        self.child = 0
        self.status: int | None = None

    def run(self, stdin: TextIO, stdout: TextIO) -> int:
        workdir = store.directory(self.name)
        fifo = workdir / "prompt.fifo"
        if fifo.exists():
            fifo.unlink()
        os.mkfifo(fifo, 0o600)
        # O_RDWR: opening never blocks and the writer side never sees "no reader".
        fifo_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        rc_dir = tempfile.mkdtemp(prefix="rc-", dir=workdir)
        env = dict(os.environ, **{SESSION_ENV: self.name, "__CS_FIFO": str(fifo)})
        if self.kind == "bash":
            rcfile = os.path.join(rc_dir, "bashrc")
            _write(rcfile, _BASH_RC)
            argv = [self.shell_path, "--rcfile", rcfile, "-i"]
        else:
            _write(os.path.join(rc_dir, ".zshrc"), _ZSH_RC)
            env["__CS_USER_ZDOTDIR"] = os.environ.get("ZDOTDIR", os.path.expanduser("~"))
            env["ZDOTDIR"] = rc_dir
            argv = [self.shell_path, "-i"]
        in_fd, out_fd = stdin.fileno(), stdout.fileno()
        stdout.flush()
        import pty

        pid, master = pty.fork()
        if pid == 0:  # child: the shell
            try:
                os.execve(self.shell_path, argv, env)
            finally:
                os._exit(127)
        self.child = pid
        old_term = None
        if os.isatty(in_fd):
            _copy_winsize(in_fd, master)
            old_term = termios.tcgetattr(in_fd)
            tty.setraw(in_fd)
        previous = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGTERM, self._on_stop), (signal.SIGHUP, self._on_stop),
            (signal.SIGWINCH, lambda *_: _copy_winsize(in_fd, master) if os.isatty(in_fd) else None))}
        try:
            self._relay(in_fd, out_fd, master, fifo_fd)
        finally:
            if old_term is not None:
                termios.tcsetattr(in_fd, termios.TCSAFLUSH, old_term)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            status = self.status if self.status is not None else os.waitpid(pid, 0)[1]
            self._read_fifo(fifo_fd)
            os.close(fifo_fd)
            os.close(master)
            fifo.unlink(missing_ok=True)
            shutil.rmtree(rc_dir, ignore_errors=True)
        return os.waitstatus_to_exitcode(status)

    def _reaped(self) -> bool:
        """Whether the shell has ended (its status kept for run())."""
        done, status = os.waitpid(self.child, os.WNOHANG)
        if done:
            self.status = status
        return bool(done)

    def _on_stop(self, *_: object) -> None:
        self.stopping = True
        if self.child:
            try:
                os.kill(self.child, signal.SIGHUP)
            except ProcessLookupError:
                pass

    def _relay(self, in_fd: int, out_fd: int, master: int, fifo_fd: int) -> None:
        watch = [master, fifo_fd, in_fd]
        while True:
            try:
                ready, _, _ = select.select(watch, [], [], 1.0)
            except InterruptedError:
                continue
            if fifo_fd in ready:
                self._read_fifo(fifo_fd)
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:  # EIO: the shell and all its children closed the terminal
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    return
                _write_all(out_fd, data)
            if in_fd in ready:
                data = os.read(in_fd, 65536)
                if not data:  # our input ended (not a terminal): end the shell as Ctrl-D would
                    watch.remove(in_fd)
                    _write_all(master, b"\x04")
                else:
                    _write_all(master, data)
            if self.stopping and self._reaped():
                return

    def _read_fifo(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buffer += chunk
        parts = self.buffer.split(b"\0")
        self.buffer = parts.pop()  # an incomplete tail waits for the next read
        while len(parts) >= _FIELD_COUNT:
            if parts[0] != b"CSREC":  # resynchronise on garbage
                parts.pop(0)
                continue
            fields = [p.decode("utf-8", "replace") for p in parts[1:_FIELD_COUNT]]
            del parts[:_FIELD_COUNT]
            self._prompt(*fields)
        if parts:
            self.buffer = b"\0".join(parts) + b"\0" + self.buffer

    def _prompt(self, exit_code: str, cwd: str, start_us: str, now: str, history: str) -> None:
        ran_in, self.last_cwd = self.last_cwd, cwd
        match = _HISTORY.match(history.rstrip("\n"))
        if not match:
            if self.last_number is None:
                self.last_number = 0  # an empty history: the first command will be number 1
            return
        number, started, command = int(match.group(1)), float(match.group(2)), match.group(3)
        # The first prompt only shows where history stands (the history file's last
        # line); an unchanged number means an empty line or Ctrl-C, not a command.
        new = self.last_number is not None and number != self.last_number
        # zsh shows an empty entry for the line being edited at its first prompt
        self.last_number = number - 1 if self.last_number is None and not command.strip() else number
        if not new or not command.strip():
            return
        if start_us:  # history's own timestamp has whole seconds only
            start_us = start_us.replace(",", ".")
            started = float(start_us) if "." in start_us else int(start_us) / 1e6
        end = float(now.replace(",", ".")) if now else time.time()
        store.append(self.name, {"type": "command", "command": command, "cwd": ran_in,
                                 "exit_code": int(exit_code) if exit_code.lstrip("-").isdigit() else None,
                                 "time": started, "duration": round(max(end - started, 0.0), 3),
                                 "shell": self.kind})


# -- replay ----------------------------------------------------------------------
def steps(name: str) -> list[Step]:
    """The session's commands, numbered from 1 as `session show` prints them."""
    out = []
    for i, event in enumerate(store.get(name).events("command"), start=1):
        out.append(Step(number=i, command=event["command"], cwd=event.get("cwd") or os.getcwd(),
                        recorded_exit=event.get("exit_code"), redacted="REDACTED" in event["command"]))
    return out


def replay(name: str, *, dry_run: bool = False, from_step: int = 0, continue_on_error: bool = False,
           echo: Callable[[str], None] | None = None) -> LoadResult:
    """Run the recorded commands again, in order, each in its recorded directory.

    One bash runs them all, so variables and functions defined by earlier
    steps are there for later ones, as they were when recorded. The first
    failing step stops the replay unless `continue_on_error`.
    """
    session = store.get(name)
    recorded = steps(name)
    if from_step > len(recorded):
        raise SessionError(f"session {name!r} has {len(recorded)} command(s): --from {from_step} is past the end")
    pending = [s for s in recorded if s.number >= from_step]
    result = LoadResult(session=name, steps=pending, dry_run=dry_run)
    if dry_run or not pending:
        return result
    read_fd, write_fd = os.pipe()
    script = _replay_script(pending, continue_on_error, status_fd=write_fd)
    shell = shutil.which("bash") if session.shell != "zsh" or not shutil.which("zsh") else shutil.which("zsh")
    # A terminal's input goes to the steps (a command may ask something); elsewhere (the
    # Jupyter server) a step reading input gets end-of-file instead of hanging.
    stdin = None if _interactive() else subprocess.DEVNULL
    proc = subprocess.Popen([shell or "/bin/bash", "-c", script, "cybershuttle-session-load"], pass_fds=(write_fd,),
                            stdin=stdin)
    os.close(write_fd)
    with os.fdopen(read_fd) as status:
        by_number = {s.number: s for s in pending}
        for line in status:
            kind, number, value = line.split(" ", 2)
            step = by_number[int(number)]
            if kind == "start" and echo:
                echo(f"[{step.number}] {step.cwd}$ {step.command}")
            elif kind == "end":
                step.exit_code = int(value)
                if step.exit_code != 0 and result.failed is None:
                    result.failed = step
    code = proc.wait()
    ran = [s for s in pending if s.exit_code is not None]
    if len(ran) < len(pending) and result.failed is None:
        # The shell itself ended mid-step (`exit` in a command): that step failed.
        stopped = pending[len(ran)]
        stopped.exit_code = code
        result.failed = stopped
    return result


def _replay_script(pending: list[Step], continue_on_error: bool, status_fd: int) -> str:
    lines = []
    for step in pending:
        n = step.number
        lines.append(f"printf 'start {n} -\\n' >&{status_fd}")
        lines.append(f"if cd -- {shlex.quote(step.cwd)} {status_fd}>&-; then")
        # The command runs as typed, in a group so that its own redirections and
        # heredocs stay intact; the status fd is closed for it.
        lines.append("{\n" + step.command + "\n} " + f"{status_fd}>&-")
        lines.append("__cs_rc=$?")
        lines.append("else __cs_rc=1; fi")
        lines.append(f"printf 'end {n} %s\\n' \"$__cs_rc\" >&{status_fd}")
        if not continue_on_error:
            lines.append('[ "$__cs_rc" -eq 0 ] || exit "$__cs_rc"')
    return "\n".join(lines) + "\n"


def export_sh(name: str) -> str:
    """The session as a bash script that stops at the first failure, as `load` does."""
    session = store.get(name)
    out = ["#!/usr/bin/env bash", f"# cybershuttle session {name!r}, recorded with {session.shell or 'bash'} "
           f"from {session.cwd or '?'}", "set -e", ""]
    cwd = None
    for step in steps(name):
        if step.cwd != cwd:
            out.append(f"cd -- {shlex.quote(step.cwd)}")
            cwd = step.cwd
        note = [f"step {step.number}"]
        if step.recorded_exit not in (0, None):
            note.append(f"exited {step.recorded_exit} when recorded")
        if step.redacted:
            note.append("a secret was redacted: put it back before running")
        out.append("# " + "; ".join(note))
        out.append(step.command)
    return "\n".join(out) + "\n"


# -- small helpers -------------------------------------------------------------
def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue


def _interactive() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # closed
        return False


def _copy_winsize(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass
