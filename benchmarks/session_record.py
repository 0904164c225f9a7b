"""Per-command cost of a recorded shell session, against the same bash unrecorded, same run.

Each run types N short commands (`true`) into an interactive bash on a
pseudo-terminal and times the round trip from sending the line to the next
prompt: (a) `cybershuttle session start` (prompt hook + FIFO + redaction +
append to the event log), (b) bash under `script(1)`, the classic terminal
recorder, when installed, (c) plain bash. Runs alternate; medians per command
are printed and the last line is `ratio=<recorded / plain bash>`; the goal is
that a user cannot feel it: under 5 ms added per command.

    python benchmarks/session_record.py [--commands 200] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect


def per_command(argv: list[str], prompt: str, env: dict[str, str], commands: int) -> list[float]:
    child = pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8", timeout=30, dimensions=(40, 500))
    child.delaybeforesend = None
    child.expect(prompt)
    times = []
    for _ in range(commands):
        start = time.perf_counter()
        child.sendline("true")
        child.expect(prompt)
        times.append(time.perf_counter() - start)
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cli = str(Path(sys.executable).parent / "cybershuttle")
    home = tempfile.mkdtemp(prefix="cs-bench-")
    env = {**os.environ, "CYBERSHUTTLE_HOME": home, "HOME": home, "TERM": "dumb", "PS1": "bench$ ", "SHELL": "bash"}
    env.pop("CYBERSHUTTLE_SESSION", None)
    bash = shutil.which("bash") or "/bin/bash"
    kinds = {"plain bash": ([bash, "--norc", "-i"], r"bench\$ ")}
    if shutil.which("script"):
        kinds["script(1) + bash"] = ([shutil.which("script"), "-qfc", f"PS1='bench$ ' exec {bash} --norc -i",
                                                  "/dev/null"], r"bench\$ ")
    results: dict[str, list[float]] = {k: [] for k in ["cybershuttle session", *kinds]}
    for r in range(args.rounds):
        name = f"bench{r}"
        results["cybershuttle session"] += per_command([cli, "session", "start", name, "--shell", "bash"],
                                                       r"\(" + name + r"\) [^\r\n]*[$#] ", env, args.commands)
        for kind, (argv, prompt) in kinds.items():
            results[kind] += per_command(argv, prompt, env, args.commands)
    recorded = sum(1 for line in Path(home).glob("users/*/sessions/*/events.jsonl") for _ in open(line))
    if recorded != args.rounds * args.commands:
        sys.exit(f"expected {args.rounds * args.commands} recorded commands, found {recorded}")
    shutil.rmtree(home, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in results.items()}
    print(f"commands={args.commands} rounds={args.rounds} (all {recorded} recorded commands found in the event logs)")
    for kind, values in results.items():
        print(f"{kind:22s} median={med[kind]:.2f} ms/command  p90={statistics.quantiles(values, n=10)[-1] * 1000:.2f} ms")
    added = med["cybershuttle session"] - med["plain bash"]
    print(f"added by recording: {added:.2f} ms/command; goal < 5 ms: {'met' if added < 5 else 'NOT met'}")
    print(f"ratio={med['cybershuttle session'] / med['plain bash']:.2f}")


if __name__ == "__main__":
    main()
