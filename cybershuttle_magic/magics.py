"""The notebook magics. Each parses its line with argparse and calls the core.

Forms already used in existing notebooks are accepted as they are:
`%request_runtime hpc_cpu --file=cybershuttle.yml --walltime=60 --use=AnvilCPU:shared`,
several magics in one cell, comments and blank lines between them.

While a runtime is active (`%switch_runtime NAME`), every cell that holds no
Cybershuttle magic runs whole on it — `%%bash`, `%pip` and `%ls` included.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from cybershuttle.errors import CybershuttleError

from . import durable_magic, forwarding

#: Magics that always run in the notebook's own kernel.
LOCAL_MAGICS = ("request_runtime", "wait_for_runtime", "switch_runtime", "run_on", "stat_runtime", "restart_runtime",
                "stop_runtime", "runtimes", "authenticate", "copy_data", "run_subprocess", "kill_subprocess",
                "open_tunnels", "close_tunnels", "open_web_terminal", "storage", "cybershuttle", "load_application",
                "checkpoint_runtime", "extend_runtime")
_LOCAL_LINE = re.compile(r"^\s*%{1,2}(" + "|".join(LOCAL_MAGICS) + r")\b", re.MULTILINE)


class MagicUsageError(CybershuttleError):
    """A magic's line could not be parsed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise MagicUsageError(f"%{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            print(message)
        raise _HelpShown()


class _HelpShown(Exception):
    pass


def _parser(name: str, description: str) -> _Parser:
    return _Parser(prog=name, description=description, add_help=True)


@magics_class
class CybershuttleMagics(Magics):
    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.active: str | None = None
        self._clients: dict[str, Any] = {}
        self._cursors: dict[str, Any] = {}  # runtime name -> journal.Cursor (what this notebook has shown)
        self._bypass = False
        shell.input_transformers_cleanup.append(self._route_cell)

    # -- routing ---------------------------------------------------------
    def _route_cell(self, lines: list[str]) -> list[str]:
        """Send the whole cell to the active runtime unless it holds a Cybershuttle magic."""
        if self.active is None or self._bypass:
            return lines
        text = "".join(lines)
        if not text.strip() or _LOCAL_LINE.search(text):
            return lines
        return [f"get_ipython().run_cell_magic('run_on', {self.active!r}, {text!r})\n"]

    # -- magics ----------------------------------------------------------
    @line_magic
    def cybershuttle(self, line: str = "") -> None:
        """Show the active Cybershuttle profile and catalogs: `%cybershuttle`."""
        from cybershuttle import __version__, profile

        prof = profile.active()
        print(f"cybershuttle {__version__}: user {prof.user}, profile {prof.root}, site catalog {prof.site_catalog}")

    @line_magic
    def authenticate(self, line: str = "") -> None:
        """Connect to every remote resource once, answering key passphrases and OTP prompts here."""
        self._guard(self._authenticate, line)

    @line_magic
    def request_runtime(self, line: str) -> None:
        """Start (or re-attach to) a runtime: `%request_runtime NAME --resource R [--cpus N] ...`."""
        self._guard(self._request, line)

    @line_magic
    def wait_for_runtime(self, line: str) -> None:
        """Wait until a runtime's kernel is ready: `%wait_for_runtime NAME [--live]`."""
        self._guard(self._wait, line)

    @line_magic
    def switch_runtime(self, line: str) -> None:
        """Run the following cells on a runtime: `%switch_runtime NAME` (or `local`)."""
        self._guard(self._switch, line)

    @cell_magic
    def run_on(self, line: str, cell: str) -> Any:
        """Run this cell on a runtime: `%%run_on NAME` (or `local`)."""
        name = line.strip()
        if not name:
            print("usage: %%run_on NAME", file=sys.stderr)
            return None
        if name == "local":
            self._bypass = True
            try:
                return self.shell.run_cell(cell).result
            finally:
                self._bypass = False
        try:
            kc = self._client(name)
        except CybershuttleError as exc:
            _error(exc)
            return None
        from cybershuttle import runtime

        try:
            forwarding.run_cell(self.shell, kc, cell, is_dead=lambda: runtime.gone_reason(name),
                                cursor=self._cursors.get(name))
        except forwarding.RuntimeLost:
            self._drop_client(name)  # the next use re-attaches (and shows what it missed) or says why it cannot
            raise
        return None

    @line_magic
    def stat_runtime(self, line: str) -> None:
        """Show a runtime's job, host, ports and transport: `%stat_runtime NAME`."""
        self._guard(self._stat, line)

    @line_magic
    def restart_runtime(self, line: str) -> None:
        """Start the runtime's kernel afresh (a new job with the same request): `%restart_runtime NAME`."""
        self._guard(self._restart, line)

    @line_magic
    def stop_runtime(self, line: str) -> None:
        """Stop a runtime and release its job, tunnels and files: `%stop_runtime NAME`."""
        self._guard(self._stop, line)

    @line_magic
    def run_subprocess(self, line: str) -> None:
        """Start a background process on a runtime's host and forward its ports:
        `%run_subprocess NAME --command="module load x; server --port=5321" --ports=5321`."""
        self._guard(self._run_subprocess, line)

    @line_magic
    def kill_subprocess(self, line: str) -> None:
        """Stop the background process started by `%run_subprocess NAME`: `%kill_subprocess NAME`."""
        self._guard(self._kill_subprocess, line)

    @line_magic
    def open_tunnels(self, line: str) -> None:
        """Forward ports of a runtime's host here: `%open_tunnels NAME --forward=8888,6006`."""
        self._guard(self._open_tunnels, line)

    @line_magic
    def close_tunnels(self, line: str) -> None:
        """Close a runtime's tunnels: `%close_tunnels NAME`."""
        self._guard(self._close_tunnels, line)

    @line_magic
    def open_web_terminal(self, line: str) -> None:
        """Open a JupyterLab terminal on a runtime's host (inside its Slurm job): `%open_web_terminal NAME`."""
        self._guard(self._open_web_terminal, line)

    @line_magic
    def copy_data(self, line: str) -> None:
        """Copy files or directories: `%copy_data source=local:data target=hpc:.` (any direction)."""
        self._guard(self._copy_data, line)

    @line_magic
    def runtimes(self, line: str = "") -> None:
        """List your runtimes: `%runtimes`."""
        self._guard(self._list, line)

    @line_magic
    def load_application(self, line: str) -> None:
        """Load a module or package into the active runtime (conflicts refused first):
        `%load_application NAME[/VERSION] [--runtime RT] [--file cybershuttle.yml]`."""
        self._guard(self._load_application, line)

    # -- implementations -------------------------------------------------
    def _load_application(self, line: str) -> None:
        from cybershuttle import application

        p = _parser("load_application", "load a module or package into a runtime and/or a setup file")
        p.add_argument("name", metavar="NAME[/VERSION]")
        p.add_argument("--runtime", help="default: the active runtime")
        p.add_argument("--file", "--setup_file", "--setup-file", dest="file", help="also add it to this setup file")
        args = p.parse_args(_split(line))
        target = args.runtime or self.active
        if target is None and args.file is None:
            raise MagicUsageError("%load_application: no runtime is active; `%switch_runtime NAME` first, "
                                  "or pass --runtime NAME or --file cybershuttle.yml")
        result = application.load(args.name, setup_file=args.file, runtime=target)
        if result.setup_file and result.setup_changed:
            print(f"added {result.item} to {result.setup_section} in {result.setup_file}")
        if result.runtime:
            print(f"loaded {result.item} in {result.runtime}; modules: {', '.join(result.loaded) or 'none'}")

    def _request(self, line: str) -> None:
        from cybershuttle.runtime import plan as plans

        p = _parser("request_runtime", "start (or re-attach to) a runtime")
        p.add_argument("name")
        p.add_argument("--resource", "--cluster", dest="resource")
        p.add_argument("--use", help="R:PARTITION[,R2:P2...]: the choice that can start soonest is used")
        p.add_argument("--cpus", type=int)
        p.add_argument("--memory", help="MB, or 4G")
        p.add_argument("--gpus", type=int)
        p.add_argument("--nodes", type=int, help="nodes (Slurm): the kernel runs on the first; its parallel steps use all")
        p.add_argument("--tasks-per-node", "--tasks_per_node", dest="tasks_per_node", type=int)
        p.add_argument("--walltime", help="minutes")
        p.add_argument("--queue", "--partition", dest="partition")
        p.add_argument("--group", "--account", dest="account", help="Slurm account (the old platform's group)")
        p.add_argument("--file", "--setup_file", "--setup-file", dest="file")
        p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true")
        durable_magic.add_request_arguments(p)
        args = p.parse_args(_split(line))
        if not args.resource and not args.use:
            raise MagicUsageError(f"%request_runtime {args.name}: say where with --resource R or --use R:PARTITION")
        plan = plans.plan(args.name, resource=args.resource, use=args.use, cpus=args.cpus, memory=args.memory,
                          gpus=args.gpus, walltime=args.walltime, partition=args.partition, account=args.account,
                          setup_file=args.file, nodes=args.nodes, tasks_per_node=args.tasks_per_node)
        if args.dry_run:
            print("\n".join(plans.describe(plan)))
            return
        rt, reattached = plans.request_planned(plan, **durable_magic.request_options(args))
        if not reattached:
            self._drop_client(args.name)  # a client of its previous job (a resume) talks to a kernel that is gone
        print("\n".join(plans.report(plan, rt, reattached)))
        if reattached and rt.state == "READY":
            self._client(args.name)  # shows what it published while this notebook was away

    def _wait(self, line: str) -> None:
        p = _parser("wait_for_runtime", "wait until a runtime is ready")
        p.add_argument("name")
        p.add_argument("--live", action="store_true", help="show the job's state as it changes")
        p.add_argument("--timeout", type=float, default=600.0)
        args = p.parse_args(_split(line))
        self._wait_ready(args.name, args.live, args.timeout)

    def _switch(self, line: str) -> None:
        p = _parser("switch_runtime", "run the following cells on a runtime")
        p.add_argument("name")
        args = p.parse_args(_split(line))
        if args.name == "local":
            self.active = None
            print("Cells now run locally")
            return
        self._wait_ready(args.name, live=True, timeout=600.0)
        self._client(args.name)
        self.active = args.name
        from cybershuttle import runtime

        rt = runtime.get(args.name)
        print(f"Cells now run on {args.name} ({rt.resource}, job {rt.job_id})")

    def _stat(self, line: str) -> None:
        from cybershuttle import runtime

        p = _parser("stat_runtime", "show a runtime")
        p.add_argument("name")
        args = p.parse_args(_split(line))
        s = runtime.status(args.name)
        job = s["job"]
        print(f"runtime {s['name']} on {s['resource']}: {s['state']}" + (f" ({s['message']})" if s["message"] else ""))
        print(f"  job:       {job['id']} {job['state']}")
        print(f"  request:   {s['request'].get('cpus')} CPU(s), {s['request'].get('memory_mb') or 0} MB, "
              f"{s['request'].get('gpus')} GPU(s), walltime {s['request'].get('walltime') or 'none'}")
        print(f"  transport: {s['transport']}")
        print(f"  active:    {'yes' if self.active == s['name'] else 'no'}")
        durable_magic.print_status(runtime.get(args.name))

    def _restart(self, line: str) -> None:
        from cybershuttle import runtime

        p = _parser("restart_runtime", "restart a runtime's kernel")
        p.add_argument("name")
        args = p.parse_args(_split(line))
        runtime.get(args.name)
        self._drop_client(args.name)
        start = time.monotonic()
        handle = _Status(True)
        rt = runtime.restart(args.name, progress=lambda s: handle.update(
            f"runtime {args.name}: {s} ({time.monotonic() - start:.1f} s)"))
        handle.update(f"runtime {args.name} is ready on {rt.resource} ({time.monotonic() - start:.1f} s)")
        print(f"Runtime {args.name} restarted with a fresh kernel")

    def _stop(self, line: str) -> None:
        from cybershuttle import runtime

        p = _parser("stop_runtime", "stop a runtime")
        p.add_argument("name")
        args = p.parse_args(_split(line))
        self._drop_client(args.name)
        rt = runtime.stop(args.name)  # its subprocess and tunnels too
        if self.active == args.name:
            self.active = None
            print(f"Runtime {rt.name} stopped; cells now run locally")
        else:
            print(f"Runtime {rt.name} stopped")

    def _list(self, line: str) -> None:
        from cybershuttle import runtime

        items = runtime.list_all()
        if not items:
            print("No runtimes: start one with " + _NEXT_STEPS["runtime.request"].format("NAME"))
            return
        for rt in items:
            mark = "*" if rt.name == self.active else " "
            print(f"{mark} {rt.name:16} {rt.state:9} {rt.resource:14} job {rt.job_id}")

    def _run_subprocess(self, line: str) -> None:
        from cybershuttle import runtime
        from cybershuttle.runtime import tunnels

        p = _parser("run_subprocess", "start a background process on a runtime's host")
        p.add_argument("name")
        p.add_argument("--command", required=True)
        p.add_argument("--ports", "--forward", dest="ports", default="")
        args = p.parse_args(_split(line))
        started = runtime.start_subprocess(args.name, args.command, ports=tunnels.parse_ports(args.ports))
        print(f"started on {args.name} (pid {started['pid']}): {args.command}")
        for remote, local in started["ports"].items():
            print(f"{args.name}:{remote} -> http://127.0.0.1:{local}")

    def _kill_subprocess(self, line: str) -> None:
        from cybershuttle import runtime

        p = _parser("kill_subprocess", "stop a runtime's background process")
        p.add_argument("name")
        args = p.parse_args(_split(line))
        stopped = runtime.stop_subprocess(args.name)
        print(f"stopped the subprocess on {args.name} (pid {stopped['pid']}) and closed its tunnels")

    def _open_tunnels(self, line: str) -> None:
        from cybershuttle.runtime import tunnels

        p = _parser("open_tunnels", "forward ports of a runtime's host")
        p.add_argument("name")
        p.add_argument("--forward", "--ports", dest="ports", required=True)
        args = p.parse_args(_split(line))
        mapping = tunnels.open_tunnels(args.name, tunnels.parse_ports(args.ports))
        for remote, local in mapping.items():
            print(f"{args.name}:{remote} -> http://127.0.0.1:{local}")

    def _close_tunnels(self, line: str) -> None:
        from cybershuttle.runtime import tunnels

        p = _parser("close_tunnels", "close a runtime's tunnels")
        p.add_argument("name")
        args = p.parse_args(_split(line))
        closed = tunnels.close_tunnels(args.name)
        print(f"closed {len(closed)} tunnel(s) of {args.name}")

    def _open_web_terminal(self, line: str) -> None:
        from . import terminal

        p = _parser("open_web_terminal", "open a terminal on a runtime's host")
        p.add_argument("name")
        args = p.parse_args(_split(line))
        server = terminal.find_server()
        name = terminal.open_terminal(server, terminal.shell_command(args.name))
        url = f"{server.get('base_url', '/')}lab/terminals/{name}"
        from IPython.display import HTML, display

        display(HTML(f'<a href="{url}" target="_blank">Terminal {name} on runtime {args.name}</a>'))
        print(f"terminal {name} opened on {args.name}: {url}")

    def _copy_data(self, line: str) -> None:
        from cybershuttle import runtime

        words = _split(line)
        named = dict(w.split("=", 1) for w in words if w.startswith(("source=", "target=")))
        plain = [w for w in words if not w.startswith(("source=", "target="))]
        source = named.get("source") or (plain.pop(0) if plain else None)
        target = named.get("target") or (plain.pop(0) if plain else None)
        if not source or not target or plain:
            raise MagicUsageError("usage: %copy_data source=RUNTIME:path target=RUNTIME:path (`local` is this machine)")
        result = runtime.copy(source, target)
        print(f"copied {result.files} file(s), {result.bytes} bytes: {source} -> {result.target}")

    def _authenticate(self, line: str) -> None:
        from cybershuttle import compute, ssh

        def prompter(prompt: str, secret: bool) -> str:
            kernel = getattr(self.shell, "kernel", None)
            if kernel is not None:
                return kernel.getpass(prompt) if secret else kernel.raw_input(prompt)
            import getpass

            return getpass.getpass(prompt) if secret else input(prompt)

        wanted = set(_split(line))
        remote = [r for r in compute.list() if r.remote and (not wanted or r.name in wanted)]
        if not remote:
            print("No remote resources to authenticate to (register one with `cybershuttle compute import`)")
            return
        for res in remote:
            try:
                ssh.connect(res.endpoint, prompter)
                print(f"authenticated to {res.name} ({res.endpoint.label})")
            except CybershuttleError as exc:
                _error(exc)

    # -- helpers ---------------------------------------------------------
    def _guard(self, fn: Any, line: str) -> None:
        try:
            fn(line)
        except _HelpShown:
            pass
        except CybershuttleError as exc:
            _error(exc)
            raise _Quiet(str(exc)) from None

    def _wait_ready(self, name: str, live: bool, timeout: float) -> None:
        from cybershuttle import runtime

        start = time.monotonic()
        handle = _Status(live)
        rt = runtime.wait(name, timeout=timeout, progress=lambda s: handle.update(
            f"runtime {name}: {s} ({time.monotonic() - start:.1f} s)"))
        handle.update(f"runtime {name} is ready on {rt.resource} ({time.monotonic() - start:.1f} s)")

    def _client(self, name: str) -> Any:
        from cybershuttle import runtime

        kc = self._clients.get(name)
        if kc is None:
            gone = runtime.gone_reason(name)
            if gone:  # e.g. it gave its allocation back after an idle spell: say so instead of waiting
                raise CybershuttleError(gone, next_step=("runtime.request", name))
            kc = runtime.client(name)
            self._clients[name] = kc
            from cybershuttle.runtime import journal

            cursor = self._cursors[name] = journal.Cursor(name, runtime.get(name).job_id)
            forwarding.reattach(self.shell, kc, name, cursor, is_dead=lambda: runtime.gone_reason(name))
        return kc

    def _drop_client(self, name: str) -> None:
        kc = self._clients.pop(name, None)
        if kc is not None:
            kc.stop_channels()
        cursor = self._cursors.pop(name, None)
        if cursor is not None:
            cursor.close()


class _Quiet(Exception):
    """Fails the cell after the short red line was shown, without a second traceback."""

    def _render_traceback_(self) -> list[str]:
        return []


class _Status:
    """One line that updates in place in a notebook (a plain print elsewhere)."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.handle = None

    def update(self, text: str) -> None:
        try:
            from IPython.display import display

            if self.handle is None:
                self.handle = display({"text/plain": text}, raw=True, display_id=True)
            else:
                self.handle.update({"text/plain": text}, raw=True)
        except Exception:
            print(text)


def _split(line: str) -> list[str]:
    return shlex.split(line, comments=True)


#: How the magics word a next step the core suggests (CybershuttleError.next_step).
_NEXT_STEPS = {
    "runtime.request": "%request_runtime {} --resource R",
    "runtime.wait": "%wait_for_runtime {}",
    "runtime.stop": "%stop_runtime {}",
    "runtime.start_subprocess": '%run_subprocess {} --command="..."',
    "runtime.stop_subprocess": "%kill_subprocess {}",
}


def _error(exc: Exception) -> None:
    step = getattr(exc, "next_step", None)
    hint = _NEXT_STEPS.get(step[0], "").format(step[1]) if step else ""
    sys.stderr.write(f"\x1b[31mcybershuttle: {exc}{f' ({hint})' if hint else ''}\x1b[0m\n")
    sys.stderr.flush()
