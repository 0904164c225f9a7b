"""cybershuttle.slurm: parsers on real Slurm 22.05 output and on synthetic newer-schema
(data_parser v0.0.40) output, and the whole query path against the loopback cluster over SSH."""
from __future__ import annotations

import datetime
import json
import shlex
import time
from pathlib import Path

import pytest

from cybershuttle import slurm
from cybershuttle.errors import CybershuttleError, RemoteCommandError
from cybershuttle.slurm import JobState, JobUsage, Partition
from cybershuttle.ssh import Pool, Result

DATA = Path(__file__).parent / "data" / "slurm"
V38 = DATA / "v0.0.38"  # real output of Slurm 22.05.8 (jobs 12..18 of the capture)
V40 = DATA / "v0.0.40"  # synthetic, from the documented v0.0.40 schema


class FakeShell:
    """Answers commands from a table of (substring -> stdout, or (exit, stdout, stderr)); logs calls."""

    def __init__(self, table: dict[str, object]) -> None:
        self.table = table
        self.calls: list[str] = []

    def run(self, command, *, check=True, timeout=None, stdin=None, login_shell=False):
        self.calls.append(command)
        for key, answer in self.table.items():
            if key in command:
                code, out, err = answer if isinstance(answer, tuple) else (0, answer, "")
                return Result(command, code, out, err)
        return Result(command, 127, "", f"bash: {command.split()[0]}: command not found")


NO_JSON = (1, "", "squeue: unrecognized option '--json'")
BROKEN_JSON = (0, '{"meta": {"plugin": {"type": "openapi/v0.0.38"}}, "jobs": [{"job_id": 12,', "")


def v38_table(json_answer: object = None) -> dict[str, object]:
    """The 22.05 capture; `json_answer` replaces every --json answer when given."""
    text = {name: (V38 / name).read_text() for name in
            ("sinfo.txt", "sinfo_summary.txt", "squeue.txt", "sacct.txt")}
    exit_codes = "\n".join(f"{f[0]}|{f[2]}" for f in (line.split("|") for line in text["sacct.txt"].splitlines()))
    table: dict[str, object] = {
        "sinfo --json": (V38 / "sinfo.json").read_text(),
        "squeue --json": (V38 / "squeue.json").read_text(),
        "sacct --json": (V38 / "sacct.json").read_text(),
    }
    if json_answer is not None:
        table = {key: json_answer for key in table}
    table.update({
        "sinfo -h -N": text["sinfo.txt"], "sinfo -h -o": text["sinfo_summary.txt"],
        "squeue -h": text["squeue.txt"], "-o JobID,ExitCode": exit_codes,
        "sacct -P -n -o JobID,State": text["sacct.txt"],
    })
    return table


def v40_table() -> dict[str, object]:
    return {
        "sinfo --json": (V40 / "sinfo.json").read_text(),
        "sinfo -h -o": (V40 / "sinfo_summary.txt").read_text(),
        "sinfo -h -N": (V40 / "sinfo.txt").read_text(),
        "squeue --json": (V40 / "squeue.json").read_text(),
        "sacct --json": (V40 / "sacct.json").read_text(),
    }


V38_IDS = ["12", "13", "14", "15", "16", "17", "18"]


# ----------------------------------------------------------------------------- small parsers


@pytest.mark.parametrize("text, minutes", [
    ("UNLIMITED", None), ("infinite", None), ("30", 30), ("5:00", 5), ("5:30", 6), ("1:00:00", 60),
    ("2-00:00:00", 2880), ("2-12", 3600), ("1-02:03", 1563), (45, 45), (None, None),
    ({"set": True, "infinite": False, "number": 30}, 30), ({"set": True, "infinite": True, "number": 0}, None),
    ({"set": False, "infinite": False, "number": 0}, None),
])
def test_parse_time_limit_reads_every_spelling(text, minutes):
    assert slurm.parse_time_limit(text) == minutes


def test_parse_time_limit_rejects_what_is_not_a_time():
    with pytest.raises(ValueError):
        slurm.parse_time_limit("soon")


@pytest.mark.parametrize("value, expected", [
    ("0:0", (0, 0)), ("3:0", (3, 0)), ("0:15", (0, 15)), ("137", (137, 0)), ("", (None, None)), (None, (None, None)),
    (768, (3, 0)), (15, (0, 15)), (0, (0, 0)), (1024 + 0x80, (4, 0)),  # raw wait statuses (22.05 squeue JSON)
    ({"status": "SUCCESS", "return_code": 0}, (0, 0)),  # v0.0.38 sacct
    ({"status": "SIGNALED", "return_code": None, "signal": {"signal_id": 9, "name": "Killed"}}, (0, 9)),
    ({"status": ["ERROR"], "return_code": {"set": True, "infinite": False, "number": 3},
      "signal": {"id": {"set": False, "infinite": False, "number": 0}, "name": ""}}, (3, 0)),  # v0.0.40+
    ({"status": ["ERROR"], "return_code": 2}, (2, 0)),
    ({"status": ["SIGNALED"], "return_code": {"set": True, "infinite": False, "number": 0},
      "signal": {"id": {"set": True, "infinite": False, "number": 15}, "name": "TERM"}}, (0, 15)),
    ({"status": ["PENDING"], "return_code": {"set": False, "infinite": False, "number": 0}}, (None, None)),
])
def test_parse_exit_code_reads_text_wait_status_and_json_objects(value, expected):
    assert slurm.parse_exit_code(value) == expected


@pytest.mark.parametrize("raw, state", [
    ("COMPLETED", "COMPLETED"), ("CANCELLED by 1001", "CANCELLED"), ("CANCELLED+", "CANCELLED"),
    (["PENDING", "REQUEUED"], "PENDING"), (["COMPLETED", "COMPLETING"], "COMPLETING"), (["RUNNING"], "RUNNING"),
    (["REQUEUE_HOLD"], "PENDING"), ("CD", "COMPLETED"), ("PD", "PENDING"), ("OOM", "OUT_OF_MEMORY"),
    ("OUT_OF_MEMORY", "OUT_OF_MEMORY"), ("BOOT_FAIL", "NODE_FAIL"), ("DEADLINE", "TIMEOUT"),
    ("CONFIGURING", "RUNNING"), ("preempted", "PREEMPTED"), ("", "UNKNOWN"), (None, "UNKNOWN"),
    ("SOMETHING_NEW", "UNKNOWN"), ([], "UNKNOWN"),
])
def test_normalize_state_maps_every_form_to_one_vocabulary(raw, state):
    assert slurm.normalize_state(raw) == state
    assert state in slurm.STATES


@pytest.mark.parametrize("text, mb", [
    ("4000M", 4000.0), ("16G", 16384.0), ("1.5T", 1.5 * 1024 * 1024), ("123K", 123 / 1024), ("0", 0.0),
    ("2940K", 2940 / 1024), ("4000Mn", 4000.0), ("2Gc", 2048.0), (512, 512.0),
])
def test_parse_memory_mb_reads_slurm_sizes(text, mb):
    assert slurm.parse_memory_mb(text) == pytest.approx(mb)


def test_parse_memory_mb_rejects_what_is_not_a_size():
    with pytest.raises(ValueError):
        slurm.parse_memory_mb("lots")


@pytest.mark.parametrize("gres, gpus, types", [
    ("gpu:a100:4(S:0-1)", 4, ["a100"]), ("gpu:2", 2, []), ("(null)", 0, []), ("", 0, []), (None, 0, []),
    ("gpu:a100:2,gpu:v100:1", 3, ["a100", "v100"]), ("gpu:4(S:0,1),mps:100", 4, []),
    ("gpu:nvidia_a100-sxm4-80gb:8(S:0-1)", 8, ["nvidia_a100-sxm4-80gb"]), ("shard:8,mps:100", 0, []),
    ("gpu", 1, []), ("gpu:tesla:2(IDX:0-1)", 2, ["tesla"]),
])
def test_parse_gres_counts_gpus_and_types(gres, gpus, types):
    assert slurm.parse_gres(gres) == (gpus, types)


def test_dataclasses_serialise_with_derived_hours():
    u = JobUsage("7", "train", "alice", "COMPLETED", "gpu", alloc_cpus=8, alloc_gpus=2, elapsed_s=1800,
                 total_cpu_s=100.0, max_rss_mb=None, start=1.0, end=1801.0, exit_code=0)
    assert (u.cpu_hours, u.gpu_hours) == (4.0, 1.0)
    assert u.to_dict()["gpu_hours"] == 1.0 and u.to_dict()["job_id"] == "7"
    assert JobState("1", "PENDING").to_dict()["state"] == "PENDING"
    assert Partition("p", True, "UP", None, 1, 1, 2, 3, 0, []).to_dict()["gpu_types"] == []


# ----------------------------------------------------------------------------- 22.05 capture


def test_v038_squeue_json_exit_codes_are_wait_statuses():
    shell = FakeShell(v38_table())
    states = slurm.job_states(shell, ["13", "14", "15", "16"])
    assert [(s.state, s.exit_code, s.signal) for s in states.values()] == [
        ("FAILED", 3, 0), ("CANCELLED", 0, 15), ("FAILED", 0, 9), ("FAILED", 4, 0)]
    assert shell.calls == ["squeue --json --me -t all"]  # squeue alone had the exit codes


def test_v038_sacct_json_exit_codes_lost_by_slurm_are_repaired_from_text():
    shell = FakeShell(v38_table())
    usage = {u.job_id: u for u in slurm.usage(shell, job_ids=V38_IDS)}
    assert usage["13"].exit_code == 3 and usage["16"].exit_code == 4  # JSON alone says 0 for both
    assert usage["13"].name == "fail|pipe"
    assert len(shell.calls) == 2 and "-o JobID,ExitCode" in shell.calls[1]


@pytest.mark.parametrize("json_answer", [NO_JSON, BROKEN_JSON, (0, '{"meta": {}, "unknown_v99": []}', "")],
                         ids=["no-json-option", "malformed-json", "unknown-schema"])
def test_v038_text_fallbacks_give_the_same_answers_as_json(json_answer):
    json_shell, text_shell = FakeShell(v38_table()), FakeShell(v38_table(json_answer))
    assert slurm.partitions(text_shell) == slurm.partitions(json_shell)
    assert any("sinfo -h -N" in c for c in text_shell.calls)

    ids = V38_IDS + ["17_2", "16.0", "14.batch", "99999"]
    assert slurm.job_states(text_shell, ids) == slurm.job_states(json_shell, ids)

    by_json = {u.job_id: u for u in slurm.usage(json_shell, job_ids=V38_IDS)}
    by_text = {u.job_id: u for u in slurm.usage(text_shell, job_ids=V38_IDS)}
    assert by_json.keys() == by_text.keys() == {"12", "13", "14", "15", "16", "17_[1-3]", "18"}
    for jid, u in by_json.items():
        t = by_text[jid]
        assert t.total_cpu_s == pytest.approx(u.total_cpu_s, abs=0.002)  # text has ms, JSON µs
        assert t.max_rss_mb == pytest.approx(u.max_rss_mb)
        assert u.to_dict() | {"total_cpu_s": 0, "max_rss_mb": 0, "cpu_hours": 0} == \
            t.to_dict() | {"total_cpu_s": 0, "max_rss_mb": 0, "cpu_hours": 0}


def test_v038_job_states_cover_arrays_steps_and_unknown_ids():
    states = slurm.job_states(FakeShell(v38_table()), ["17", "17_3", "17_9", "14.batch", "16.0", "18", "99999"])
    assert states["17"].state == states["17_3"].state == "PENDING"
    assert states["17_3"].reason == "JobHeldUser" and states["17_3"].job_id == "17_3"
    assert states["17_9"].state == "UNKNOWN"  # not a task of array 17
    assert (states["14.batch"].state, states["14.batch"].signal) == ("CANCELLED", 15)
    assert (states["16.0"].state, states["16.0"].exit_code) == ("FAILED", 2)
    assert (states["18"].state, states["18"].end, states["18"].exit_code) == ("RUNNING", None, None)
    assert states["99999"] == JobState("99999", "UNKNOWN")


def test_v038_partitions_come_from_node_json_plus_the_text_summary():
    shell = FakeShell(v38_table())
    parts = {p.name: p for p in slurm.partitions(shell)}
    assert parts["debug"] == Partition("debug", True, "UP", None, 1, 0, 2, 23081, 0, [])  # node was "mixed"
    assert parts["short"].max_time_min == 30 and not parts["short"].default
    assert shell.calls == ["sinfo --json", "sinfo -h -o '%P|%a|%l'"]


def test_idle_counts_only_nodes_that_can_take_a_job_now():
    # Same five nodes as v0.0.38 node JSON and as `sinfo -N` text: idle, drained, not
    # responding, mixed, powered down (boots on demand).
    nodes = [("a", "idle", [], "idle"), ("b", "idle", ["DRAIN"], "drain"), ("c", "idle", ["NOT_RESPONDING"], "idle*"),
             ("d", "mixed", [], "mix"), ("e", "idle", ["POWERED_DOWN"], "idle~")]
    as_json = {"meta": {}, "nodes": [{"name": n, "partitions": ["p"], "cpus": 4, "real_memory": 1000, "gres": "",
                                      "state": state, "state_flags": flags} for n, state, flags, _ in nodes]}
    as_text = "".join(f"p*|up|1:00:00|{n}|4|1000|(null)|{compact}\n" for n, _, _, compact in nodes)
    by_json = slurm.partitions(FakeShell({"sinfo --json": json.dumps(as_json), "sinfo -h -o": "p*|up|1:00:00\n"}))
    by_text = slurm.partitions(FakeShell({"sinfo --json": NO_JSON, "sinfo -h -N": as_text}))
    assert by_json == by_text == [Partition("p", True, "UP", 60, 5, 2, 4, 1000, 0, [])]


def test_json_after_a_login_banner_is_still_read():
    table = v38_table()
    table["sinfo --json"] = "Welcome to the cluster!\n{not json}\n" + str(table["sinfo --json"])
    shell = FakeShell(table)
    assert {p.name for p in slurm.partitions(shell)} == {"debug", "short"}
    assert not any("sinfo -h -N" in c for c in shell.calls)


# ----------------------------------------------------------------------------- v0.0.40 schema


def test_v040_sinfo_json_gives_partitions():
    shell = FakeShell(v40_table())
    assert slurm.partitions(shell) == [
        Partition("cpu", True, "UP", None, 12, 10, 128, 1500000, 0, []),
        Partition("gpu", False, "UP", 2880, 4, 3, 96, 1024000, 8, ["a100", "h100"]),
        Partition("debug", False, "DRAIN", 30, 2, 0, 8, 32000, 2, []),
    ]
    assert len(shell.calls) == 2  # the default flag is not in v0.0.40 JSON: one summary line per partition


def test_v040_sinfo_text_fallback_matches_json():
    table = v40_table()
    table["sinfo --json"] = BROKEN_JSON
    assert slurm.partitions(FakeShell(table)) == slurm.partitions(FakeShell(v40_table()))


def test_v040_squeue_json_gives_job_states():
    shell = FakeShell(v40_table())
    states = slurm.job_states(shell, ["2001", "2002", "2003", "2004_1", "2004_3", "2004", "2006", "2007"])
    assert states["2001"] == JobState("2001", "RUNNING", None, None, None, "g01", 1700000000.0, None)
    assert states["2002"] == JobState("2002", "FAILED", "NonZeroExitCode", 3, 0, "c001", 1700000050.0, 1700000100.0)
    assert states["2003"] == JobState("2003", "PENDING", "Resources")  # an estimated start is not a start
    assert states["2004_1"].state == "RUNNING"
    assert (states["2004_3"].state, states["2004_3"].reason) == ("PENDING", "JobArrayTaskLimit")
    assert states["2004"].state == "RUNNING"  # a whole array: its most active task
    assert states["2006"].state == "COMPLETING" and states["2006"].exit_code is None
    assert (states["2007"].state, states["2007"].exit_code, states["2007"].signal) == ("CANCELLED", 0, 15)
    assert shell.calls == ["squeue --json --me -t all"]


def test_v040_sacct_json_answers_for_jobs_squeue_forgot():
    shell = FakeShell(v40_table())
    states = slurm.job_states(shell, ["1990", "1991", "1992_7", "1990.0", "2002"])
    assert states["1990"] == JobState("1990", "COMPLETED", None, 0, 0, "g01", 1699990000.0, 1699993600.0)
    assert (states["1991"].state, states["1991"].signal) == ("TIMEOUT", 15)  # signal from the batch step
    assert (states["1992_7"].state, states["1992_7"].exit_code) == ("FAILED", 2)
    assert states["1990.0"].end == 1699993590.0
    assert states["2002"].reason == "NonZeroExitCode"  # squeue's answer, no sacct needed
    assert shell.calls == ["squeue --json --me -t all", "sacct --json -j 1990,1991,1992_7,1990.0"]


def test_v040_sacct_json_gives_usage():
    shell = FakeShell(v40_table())
    usage = {u.job_id: u for u in slurm.usage(shell, since="2023-11-01")}
    assert usage["1990"] == JobUsage("1990", "train", "alice", "COMPLETED", "gpu", 8, 2, 3600.0, 20100.5, 8192.0,
                                     1699990000.0, 1699993600.0, 0)
    assert (usage["1990"].cpu_hours, usage["1990"].gpu_hours) == (8.0, 2.0)
    assert (usage["1991"].state, usage["1991"].max_rss_mb, usage["1991"].total_cpu_s) == ("TIMEOUT", 2048.0, 14000.0)
    assert (usage["1992_7"].exit_code, usage["1992_7"].alloc_cpus) == (2, 1)
    assert usage["2002"].exit_code == 3
    assert shell.calls == ["sacct --json -S 2023-11-01"]


# ----------------------------------------------------------------------------- commands and errors


def test_job_states_batch_twenty_ids_into_at_most_three_commands():
    shell = FakeShell(v38_table())
    ids = V38_IDS + [str(90000 + i) for i in range(13)]
    states = slurm.job_states(shell, ids)
    assert len(ids) == 20 and list(states) == ids
    assert len(shell.calls) <= 3
    assert [states[i].state for i in ids[7:]] == ["UNKNOWN"] * 13


def test_job_ids_are_validated_before_any_command_runs():
    shell = FakeShell(v38_table())
    for bad in (["1; rm -rf ~"], ["12", "$(reboot)"], ["12 13"], ["-1"], ["12.ba tch"]):
        with pytest.raises(CybershuttleError, match="not a Slurm job id"):
            slurm.job_states(shell, bad)
        with pytest.raises(CybershuttleError, match="not a Slurm job id"):
            slurm.usage(shell, job_ids=bad)
    assert shell.calls == []
    assert slurm.job_states(shell, []) == {} and slurm.usage(shell, job_ids=[]) == []


def test_usage_quotes_what_it_puts_in_the_command():
    shell = FakeShell({"sacct --json": '{"jobs": []}'})
    assert slurm.usage(shell, since="2024-01-01T10:00", user="bob; touch /tmp/x") == []
    assert shlex.split(shell.calls[0]) == ["sacct", "--json", "-S", "2024-01-01T10:00", "-u", "bob; touch /tmp/x"]


def test_version_is_none_without_slurm():
    assert slurm.version(FakeShell({})) is None
    assert slurm.version(FakeShell({"sinfo --version": "slurm 23.11.4\n"})) == "23.11.4"


def test_partitions_raise_with_slurm_output_when_nothing_is_readable():
    shell = FakeShell({"sinfo": (1, "", "sinfo: error: Unable to contact slurm controller (connect failure)")})
    with pytest.raises(RemoteCommandError, match="Unable to contact slurm controller"):
        slurm.partitions(shell)
    garbled = FakeShell({"sinfo --json": NO_JSON, "sinfo -h -N": "partition info unavailable\n"})
    with pytest.raises(RemoteCommandError, match="cannot read the Slurm partitions"):
        slurm.partitions(garbled)


def test_job_states_raise_when_the_controller_is_unreachable():
    down = (1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
    with pytest.raises(RemoteCommandError, match="Unable to contact slurm controller"):
        slurm.job_states(FakeShell({"squeue": down}), ["12"])


def test_job_states_without_accounting_keep_what_squeue_said():
    no_acct = (1, "", "sacct: error: Slurm accounting storage is disabled")
    shell = FakeShell({"squeue --json": NO_JSON, "squeue -h": (V38 / "squeue.txt").read_text(), "sacct": no_acct})
    states = slurm.job_states(shell, ["13", "18", "99999"])
    assert (states["13"].state, states["13"].exit_code) == ("FAILED", None)  # text squeue has no exit codes
    assert states["18"].state == "RUNNING" and states["99999"].state == "UNKNOWN"
    all_unknown = FakeShell({"squeue --json": NO_JSON, "sacct": no_acct,
                             "squeue -h": (1, "", "slurm_load_jobs error: Invalid job id specified")})
    assert slurm.job_states(all_unknown, ["99999"])["99999"].state == "UNKNOWN"


# ----------------------------------------------------------------------------- live cluster


class CountingShell:
    """Passes commands to a real shell, counting them; can make every --json call fail."""

    def __init__(self, inner, *, no_json: bool = False) -> None:
        self.inner, self.no_json, self.calls = inner, no_json, []

    def run(self, command, **kwargs):
        self.calls.append(command)
        if self.no_json and "--json" in command:
            return Result(command, 1, "", f"{command.split()[0]}: unrecognized option '--json'")
        return self.inner.run(command, **kwargs)


def _poll(fn, done, deadline_s: float, what: str):
    deadline = time.monotonic() + deadline_s
    while True:
        value = fn()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {deadline_s} s; last answer: {value}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def live_jobs(cluster):
    """Three jobs run to their end on the loopback cluster: one succeeds, one fails, one is cancelled."""
    pool = Pool()
    conn = pool.connect(cluster.endpoint())
    ids: dict[str, str] = {}
    try:
        for key, script in (("ok", "true"), ("fail", "exit 3"), ("sleep", "sleep 60")):
            out = conn.run(f"sbatch --parsable -o /dev/null -J cs-test-{key} -p {shlex.quote(cluster.partition)} "
                           f"--wrap {shlex.quote(script)}").stdout
            ids[key] = out.strip().split(";")[0]
        counter = CountingShell(conn)
        per_call: list[int] = []

        def states():
            before = len(counter.calls)
            result = slurm.job_states(counter, list(ids.values()))
            per_call.append(len(counter.calls) - before)
            return result

        seen = _poll(states, lambda s: s[ids["sleep"]].state == "RUNNING", 60, "the sleep job starting")
        time.sleep(1.2)  # let it run long enough to have a non-zero elapsed time
        conn.run(f"scancel {ids['sleep']}")
        final = _poll(states, lambda s: all(st.final for st in s.values()), 60, "all jobs ending")
        # sacct lags the controller by a second or two after a job ends.
        _poll(lambda: slurm.usage(conn, job_ids=list(ids.values())),
              lambda us: len(us) == 3 and all(u.state in slurm.FINAL_STATES and u.end for u in us),
              30, "accounting recording the jobs")
        yield {"conn": conn, "ids": ids, "final": final, "seen_running": seen, "per_call": per_call}
    finally:
        if ids:
            conn.run(f"scancel {' '.join(ids.values())}", check=False)
        pool.close_all()


def test_live_version_is_22_05(cluster, ssh_pool):
    assert slurm.version(ssh_pool.connect(cluster.endpoint())).startswith("22.")


def test_live_partitions_list_debug_as_default_and_short_with_30_minutes(cluster, ssh_pool):
    conn = ssh_pool.connect(cluster.endpoint())
    # Others' runtimes may hold part of a node for as long as they live (a node shared by jobs is
    # 'mixed', not idle): the idle count must be what Slurm itself says, whatever it is just now.
    def idle_in_debug() -> int:
        return sum(int(n) for n in conn.run("sinfo -h -p debug -t idle -o %D").stdout.split())

    parts = _poll(lambda: ({p.name: p for p in slurm.partitions(conn)}, idle_in_debug()),
                  lambda got: "debug" in got[0] and got[0]["debug"].idle_nodes == got[1], 20,
                  "the debug partition's idle node count matching sinfo's")[0]
    debug, short = parts["debug"], parts["short"]
    # the compute nodes node1+node2 declare 16 CPUs and 128 GiB each, node2 two a100 GPUs (tests/cluster/nodes.sh)
    assert (debug.default, debug.state, debug.max_time_min, debug.cpus_per_node) == (True, "UP", None, 16)
    assert (debug.nodes, debug.memory_mb_per_node, debug.gpus_per_node, debug.gpu_types) == (2, 131072, 2, ["a100"])
    assert (short.default, short.max_time_min) == (False, 30)


def test_live_job_states_follow_jobs_to_their_end(live_jobs):
    ids, final = live_jobs["ids"], live_jobs["final"]
    assert (final[ids["ok"]].state, final[ids["ok"]].exit_code, final[ids["ok"]].signal) == ("COMPLETED", 0, 0)
    assert (final[ids["fail"]].state, final[ids["fail"]].exit_code) == ("FAILED", 3)
    assert final[ids["sleep"]].state == "CANCELLED"
    assert live_jobs["seen_running"][ids["sleep"]].nodes  # a running job names its node
    for st in final.values():
        assert st.start and st.end and st.end >= st.start
    assert max(live_jobs["per_call"]) <= 3


def test_live_job_states_batch_twenty_ids(live_jobs):
    shell = CountingShell(live_jobs["conn"])
    ids = list(live_jobs["ids"].values()) + [str(900000000 + i) for i in range(17)]
    states = slurm.job_states(shell, ids)
    assert len(shell.calls) <= 3
    assert [states[i].state for i in ids[3:]] == ["UNKNOWN"] * 17
    assert states[ids[0]].state == "COMPLETED"


def test_live_usage_reports_the_jobs(live_jobs):
    conn, ids = live_jobs["conn"], live_jobs["ids"]
    yesterday = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    # A time-window query can see a job a moment later than a query by id does.
    by_id = _poll(lambda: {u.job_id: u for u in slurm.usage(conn, since=yesterday)},
                  lambda us: set(ids.values()) <= us.keys(), 15, "the jobs appearing in a time-window query")
    ok, fail, sleep = by_id[ids["ok"]], by_id[ids["fail"]], by_id[ids["sleep"]]
    assert (ok.state, ok.exit_code, ok.name, ok.user) == ("COMPLETED", 0, "cs-test-ok", "csuser")
    assert (fail.state, fail.exit_code) == ("FAILED", 3)  # 22.05's JSON says 0: repaired from text
    assert sleep.state == "CANCELLED" and sleep.elapsed_s >= 1
    for u in (ok, fail, sleep):
        assert u.alloc_cpus >= 1 and u.partition == "debug" and u.start and u.end
        assert u.cpu_hours == pytest.approx(u.alloc_cpus * u.elapsed_s / 3600)


def test_live_text_fallbacks_give_the_same_answers_as_json(live_jobs):
    conn, ids = live_jobs["conn"], list(live_jobs["ids"].values())
    text = CountingShell(conn, no_json=True)

    # Nodes change state between two calls when another job starts or ends (`make test` runs the `waits`
    # tests beside this one), and a cancelled job's exit code lands when its batch step's record does
    # (CI saw 0, then 143): compare until one pair of answers falls between two changes.
    def agreeing(ask, what: str):
        for _ in range(20):
            by_text, by_json = ask(text), ask(conn)
            if by_text == by_json:
                return
            time.sleep(0.5)
        pytest.fail(f"{what} text and JSON disagree: {by_text} != {by_json}")

    agreeing(slurm.partitions, "sinfo")
    assert any("sinfo -h -N" in c for c in text.calls)
    agreeing(lambda shell: slurm.job_states(shell, ids), "job states")

    by_json = {u.job_id: u for u in slurm.usage(conn, job_ids=ids)}
    by_text = {u.job_id: u for u in slurm.usage(text, job_ids=ids)}
    assert by_json.keys() == by_text.keys() == set(ids)
    for jid, u in by_json.items():
        t = by_text[jid]
        assert t.total_cpu_s == pytest.approx(u.total_cpu_s, abs=0.002)
        assert (t.max_rss_mb is None) == (u.max_rss_mb is None)
        if u.max_rss_mb is not None:
            assert t.max_rss_mb == pytest.approx(u.max_rss_mb)
        same = {"total_cpu_s": 0, "max_rss_mb": 0, "cpu_hours": 0}
        assert u.to_dict() | same == t.to_dict() | same
    assert any("sacct -P" in c for c in text.calls)


# -- the job-array block (template sweeps) ------------------------------------------------------
def test_array_limits_partition_cpus_and_pending_places_read_slurms_answers():
    shell = FakeShell({
        "scontrol show config": "Configuration data as of 2026-12-01T22:00:00\nMaxArraySize            = 100\n"
                                "MaxJobCount             = 10000\nMinJobAge               = 300 sec\n",
        "sacctmgr": "|\n8|20\n",  # two associations: the tighter limits win
        "sinfo -h -o '%P|%C'": "debug*|1/1/0/2\nshort|0/2/0/2\n",
        "squeue -h -r -t PD": "900_3|debug\n77|debug\n900_2|debug\n5|short\n--\n900_3|1796170000\n900_2|N/A\n",
    })
    limits = slurm.array_limits(shell)
    assert (limits.max_array_size, limits.max_job_count, limits.user_max_jobs, limits.user_max_submit) == \
        (100, 10000, 8, 20)
    assert slurm.partition_cpus(shell, None) == slurm.PartitionCpus("debug", 1, 2)
    assert slurm.partition_cpus(shell, "short") == slurm.PartitionCpus("short", 2, 2)
    with pytest.raises(RemoteCommandError, match="partition nosuch"):
        slurm.partition_cpus(shell, "nosuch")
    # Positions count every pending job of the partition, highest priority first (squeue's order).
    assert slurm.pending_places(shell, ["900"]) == {"900_3": (1, 1796170000.0), "900_2": (3, None)}
    assert slurm.array_limits(FakeShell({})) == slurm.ArrayLimits(None, None, None, None)  # nothing answers
