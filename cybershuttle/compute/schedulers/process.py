"""The `process` scheduler: a job is a detached process on a `local` or `ssh` resource.

The runner (compute/runner.py, copied to the resource once per version) runs
`job.sh` in its own session, enforces the walltime, and writes the job's
`result.json` (state, exit code, usage) when it ends; its pid is the native id.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import CybershuttleError
from ..shell import write_file
from .base import Scheduler, Submission

if TYPE_CHECKING:
    from ..job import Job
    from ..shell import Shell

_RUNNER = Path(__file__).resolve().parent.parent / "runner.py"
_runners_checked: set[tuple[str, str]] = set()


class ProcessScheduler(Scheduler):
    name = "process"
    kinds = ("local", "ssh")

    def submit(self, shell: Shell, job: Submission) -> str:
        res = self.resource
        runner = self._ensure_runner(shell)
        lines = job.script_lines()
        lines.insert(1, f"cd {shlex.quote(job.workdir)} || exit 96")
        script = "\n".join(lines)
        q = shlex.quote(job.jobdir)
        python = shlex.quote(res.python or "python3")
        out = shell.run(f"umask 077 && mkdir -p {q} && cat > {q}/job.sh && {python} {shlex.quote(runner)} --detach "
                        f"{q} {job.request.walltime_s or 0}", stdin=script.encode(), timeout=60).stdout.strip()
        if not out.isdigit():
            raise CybershuttleError(f"the job runner on {res.name} did not start: {out!r}")
        return out

    def states(self, shell: Shell, jobs: list[Job]) -> list[Job]:
        parts = []
        for job in jobs:
            d = shlex.quote(job.jobdir)
            parts.append(f"if [ -e {d}/result.json ]; then printf '%s R ' {shlex.quote(job.id)}; cat {d}/result.json; "
                         f"echo; elif kill -0 {int(job.native_id)} 2>/dev/null; then echo {shlex.quote(job.id)} A; "
                         f"else echo {shlex.quote(job.id)} D; fi")
        lines = shell.run("; ".join(parts), timeout=60).stdout.splitlines()
        found = {}
        for line in lines:
            job_id, _, rest = line.partition(" ")
            found[job_id] = rest
        out = []
        for job in jobs:
            rest = found.get(job.id, "D")
            if rest.startswith("R "):
                result = json.loads(rest[2:])
                out.append(replace(job, state=result["state"], exit_code=result["exit_code"],
                                   signal=result.get("signal"), started=result.get("start"), ended=result.get("end"),
                                   reason=None, usage={k: result.get(k) for k in ("elapsed_s", "cpu_s", "max_rss_mb")}))
            elif rest == "A":
                out.append(replace(job, state="RUNNING", started=job.started or job.submitted))
            else:
                out.append(replace(job, state="FAILED", reason="the job's process ended without a result "
                                                               "(the machine restarted or the process was killed)"))
        return out

    def cancel(self, shell: Shell, job: Job) -> None:
        shell.run(f"kill -TERM {int(job.native_id)} 2>/dev/null || true", timeout=30)

    def state_command(self, job: Job) -> str:
        result = shlex.quote(f"{job.jobdir}/result.json")
        return (f"if [ -e {result} ]; then sed -n 's/.*\"state\": *\"\\([A-Z_]*\\)\".*/\\1/p' {result}; "
                f"elif kill -0 {int(job.native_id)} 2>/dev/null; then echo RUNNING; else echo FAILED; fi")

    def enter_command(self, job: Job) -> str:
        # The process runs on the resource's host itself: its allocation is that machine.
        return f"cd {shlex.quote(job.workdir)} && exec bash -l"

    def _ensure_runner(self, shell: Shell) -> str:
        res = self.resource
        if not res.remote:
            return str(_RUNNER)
        source = _RUNNER.read_bytes()
        digest = hashlib.sha256(source).hexdigest()[:12]
        from ..resources import home_dir  # resources imports the schedulers: asked at use

        path = f"{home_dir(res, shell)}/.cybershuttle/bin/runner-{digest}.py"
        if (res.name, path) not in _runners_checked:
            if not shell.run(f"test -f {shlex.quote(path)}", check=False).ok:
                write_file(shell, path, source, 0o700)
            _runners_checked.add((res.name, path))
        return path
