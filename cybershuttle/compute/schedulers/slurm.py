"""The `slurm` scheduler: a job is a Slurm batch job (or job array) submitted on the login node.

The commands and the reading of Slurm's answers live in `cybershuttle.slurm`
(its command layer); this class puts them behind the `Scheduler` contract.
The two are the only modules that name a Slurm command.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ... import slurm
from ...errors import CybershuttleError
from .. import states
from .base import QueuePlace, Scheduler, Submission

if TYPE_CHECKING:
    from ..job import Job
    from ..resources import Check
    from ..shell import Shell


class SlurmScheduler(Scheduler):
    name = "slurm"
    arrays = True
    queues = True
    login_shell = True
    needs_python = False  # batch jobs need bash; a runtime's environment brings its own Python
    runs_on_nodes = True
    warns = True

    # -- the resource ------------------------------------------------------
    def inspect(self, shell: Shell, facts: dict[str, Any]) -> list[Check]:
        from ..resources import Check, unknown_partition

        version = slurm.version(shell)
        if not version:
            return [Check("slurm", False, True, "no Slurm commands found in a login shell")]
        facts["slurm_version"] = version
        try:
            parts = slurm.partitions(shell)
        except CybershuttleError as exc:
            return [Check("slurm", False, True, f"Slurm {version}, but reading its partitions failed: {exc}")]
        facts["partitions"] = [p.to_dict() for p in parts]
        facts["gpus"] = max((p.gpus_per_node for p in parts), default=0)
        summary = ", ".join(f"{p.name}{'*' if p.default else ''} ({p.idle_nodes}/{p.nodes} idle, "
                            f"{p.cpus_per_node} CPUs, {p.gpus_per_node} GPUs)" for p in parts)
        checks = [Check("slurm", bool(parts), True, f"Slurm {version}; partitions: {summary}" if parts
                        else f"Slurm {version} but no partitions")]
        wanted = self.resource.partition
        if wanted:
            probe = replace(self.resource, facts=facts)
            ok = probe.partition_info(wanted) is not None
            checks.append(Check("partition", ok, True,
                                f"default partition {wanted}" if ok else unknown_partition(probe, wanted)))
        return checks

    def load(self, shell: Shell, timeout: float) -> dict[str, Any]:
        parts = slurm.partitions(shell)
        return {"reachable": True, "idle_nodes": sum(p.idle_nodes for p in parts),
                "nodes": sum(p.nodes for p in parts), "error": None}

    def start_rank(self, shell: Shell, partition: str | None) -> tuple[int, int]:
        wanted = partition or self.resource.default_partition or ""
        info = {p.name: p for p in slurm.partitions(shell)}.get(wanted)
        if info is None:
            return (2, 0)
        return (0 if info.idle_nodes > 0 else 1, slurm.pending_count(shell, wanted))

    def usage(self, shell: Shell, since: str, user: str | None) -> list[dict[str, Any]]:
        # Every job of the user there, not only those started through Cybershuttle: the allocation is billed.
        return [{"resource": self.resource.name, "job": u.job_id, "name": u.name, "state": u.state,
                 "cpus": u.alloc_cpus, "gpus": u.alloc_gpus, "elapsed_s": u.elapsed_s, "cpu_s": u.total_cpu_s,
                 "cpu_hours": round(u.cpu_hours, 6), "gpu_hours": round(u.gpu_hours, 6),
                 "max_rss_mb": u.max_rss_mb, "start": u.start, "end": u.end}
                for u in slurm.usage(shell, since=since, user=user)]

    def job_id(self, native: str, token: str) -> str:
        return f"{self.resource.name}.{native}"

    # -- jobs --------------------------------------------------------------
    def submit(self, shell: Shell, job: Submission) -> str:
        req = job.request
        directives = [f"--job-name={job.name}", f"--output={job.jobdir}/output.log", f"--chdir={job.workdir}",
                      f"--nodes={req.nodes}",
                      # the batch script (a runtime's kernel) runs on the first node; srun in it uses all
                      f"--ntasks-per-node={req.tasks_per_node}" if req.tasks_per_node else "--ntasks=1",
                      f"--cpus-per-task={req.cpus}"]
        optional = {"--partition": req.partition, "--mem": req.memory_mb and f"{req.memory_mb}M",
                    "--time": req.walltime, "--gres": req.gpus and f"gpu:{req.gpus}", "--account": req.account,
                    "--qos": req.qos, "--array": job.array,
                    # B: the batch shell itself, which a runtime's kernel replaces (exec)
                    "--signal": job.warn_before_s and f"B:USR1@{job.warn_before_s}"}
        directives += [f"{flag}={value}" for flag, value in optional.items() if value]
        return slurm.submit(shell, job.jobdir, slurm.batch_script(directives, job.script_lines()), self.resource.name)

    def states(self, shell: Shell, jobs: list[Job]) -> list[Job]:
        found = slurm.job_states(shell, [j.native_id for j in jobs])
        out = []
        for job in jobs:
            s = found.get(job.native_id)
            if s is None or s.state == states.JobState.UNKNOWN:
                out.append(replace(job, state="UNKNOWN", reason="Slurm does not know this job any more"))
                continue
            out.append(replace(job, state=s.state, exit_code=s.exit_code, signal=s.signal, reason=s.reason,
                               started=s.start or job.started, ended=None if states.active(s.state) else s.end))
        return out

    def cancel(self, shell: Shell, job: Job) -> None:
        slurm.cancel(shell, job.native_id)

    def extend(self, shell: Shell, job: Job, minutes: int) -> None:
        try:
            slurm.extend_time(shell, job.native_id, minutes)
        except slurm.TimeLimitRefused as exc:
            raise CybershuttleError(f"{self.resource.name} does not let you raise a job's time limit: {exc}; "
                                    "checkpoint and resume in a new job instead, or ask the site's "
                                    "administrators") from None

    def task_states(self, shell: Shell, job: Job, tasks: list[int]) -> dict[int, str]:
        found = slurm.job_states(shell, [f"{job.native_id}_{t}" for t in tasks])
        return {t: found[f"{job.native_id}_{t}"].state for t in tasks}

    def queue_place(self, shell: Shell, job: Job) -> QueuePlace:
        position, start = slurm.queue_place(shell, job.native_id, job.request.get("partition"))
        return QueuePlace(position, start)

    def array_limits(self, shell: Shell) -> dict[str, int | None]:
        limits = slurm.array_limits(shell)
        return {"max_array_size": limits.max_array_size, "user_max_jobs": limits.user_max_jobs,
                "user_max_submit": limits.user_max_submit}

    def free_cpus(self, shell: Shell, partition: str | None) -> tuple[int, int]:
        cpus = slurm.partition_cpus(shell, partition)
        return cpus.idle, cpus.total

    def task_places(self, shell: Shell, job: Job, tasks: list[int]) -> dict[int, QueuePlace]:
        found = slurm.pending_places(shell, [job.native_id])
        return {t: QueuePlace(*found[f"{job.native_id}_{t}"]) for t in tasks if f"{job.native_id}_{t}" in found}

    # -- on the login node -------------------------------------------------
    def state_command(self, job: Job) -> str:
        return slurm.state_command(job.native_id)

    def node_command(self, job: Job) -> str | None:
        return slurm.node_command(job.native_id)

    def nodes(self, shell: Shell) -> list[str]:
        return slurm.node_names(shell)

    def position_command(self, job: Job) -> str | None:
        return slurm.position_command(job.native_id, job.request.get("partition"))

    def enter_command(self, job: Job) -> str:
        return slurm.enter_command(job.native_id)

    def step_command(self, job: Job, command: str, node: str | None = None) -> str | None:
        return slurm.step_command(job.native_id, command, job.jobdir, node)

    def steps_refused(self, shell: Shell) -> str | None:
        return slurm.steps_refused(shell)
