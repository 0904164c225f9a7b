"""Runs one Cybershuttle job as a detached process on a `local` or `ssh` resource.

This file is copied to the resource and run by its own Python, so it imports
nothing from Cybershuttle and only the standard library.

    python3 runner.py --detach JOBDIR WALLTIME_S

prints the runner's pid and returns at once. The detached runner runs
`JOBDIR/job.sh` under `bash -l` in its own session, appends its output to
`JOBDIR/output.log`, enforces the walltime, forwards SIGTERM (cancel) to the
whole process group, and finally writes `JOBDIR/result.json` with the state,
exit code and resource usage (what Slurm's accounting gives on a cluster).
"""
import json
import os
import resource
import signal
import subprocess
import sys
import time

KILL_GRACE_S = 10


def main(argv):
    detach = argv[:1] == ["--detach"]
    if detach:
        argv = argv[1:]
    jobdir, walltime = argv[0], float(argv[1])
    if detach:
        _detach()
    _write(os.path.join(jobdir, "pid"), str(os.getpid()))
    _run(jobdir, walltime if walltime > 0 else None)


def _run(jobdir, walltime):
    state = {"final": None}
    start = time.time()
    with open(os.path.join(jobdir, "output.log"), "ab") as log:
        proc = subprocess.Popen(["bash", "-l", os.path.join(jobdir, "job.sh")], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def cancel(signum, frame):
        state["final"] = "CANCELLED"
        _kill_group(proc)

    signal.signal(signal.SIGTERM, cancel)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        code = proc.wait(timeout=walltime)
    except subprocess.TimeoutExpired:
        state["final"] = "TIMEOUT"
        _kill_group(proc)
        code = proc.wait()
    end = time.time()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    sig = -code if code < 0 else None
    exit_code = 128 + sig if sig else code
    result = {
        "state": state["final"] or ("COMPLETED" if exit_code == 0 else "FAILED"),
        "exit_code": exit_code,
        "signal": sig,
        "start": start,
        "end": end,
        "elapsed_s": end - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": usage.ru_maxrss / 1024.0,  # Linux reports KiB
    }
    _write(os.path.join(jobdir, "result.json"), json.dumps(result))


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + KILL_GRACE_S
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _detach():
    """Double fork so the job outlives the SSH session that started it."""
    middle = os.fork()
    if middle > 0:
        os.waitpid(middle, 0)  # returns once the pid below has been printed
        os._exit(0)
    os.setsid()
    pid = os.fork()
    if pid > 0:
        sys.stdout.write("%d\n" % pid)
        sys.stdout.flush()
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main(sys.argv[1:])
