"""The notebook magics, run by nbclient in real kernels against the loopback cluster."""
from __future__ import annotations

import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from conftest import run_ok


def run_notebook(tmp_path, *cells: str, allow_errors: bool = False):
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def text_of(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("display_data", "execute_result"):
            parts.append(str(out.data.get("text/plain", "")))
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "".join(parts)


@pytest.mark.parametrize("resource", ["workstation", "testcluster"])
def test_cells_run_on_the_runtime_with_every_kind_of_output(registered, tmp_path, resource):
    nb = run_notebook(
        tmp_path,
        "import cybershuttle_magic",
        f"# two magics, a comment and a blank line in one cell   \n%request_runtime rt --resource {resource}  \n\n"
        "%wait_for_runtime rt --live",
        "%switch_runtime rt",
        "import socket, getpass\nprint(socket.gethostname(), getpass.getuser())",
        "from IPython.display import display, HTML\ndisplay(HTML('<b>bold</b>'))\n"
        "h = display('first', display_id=True)\nh.update('second')\n"
        "import sys; print('to stderr', file=sys.stderr)",
        "%%run_on local\nimport getpass\nprint('local', getpass.getuser())",
        "%%bash\necho from bash $(id -un)",
        "%stat_runtime rt",
        "%stop_runtime rt",
        "import getpass\nprint('back', getpass.getuser())",
    )
    cells = nb.cells
    assert text_of(cells[3]).strip().endswith("csuser")
    html = [o for o in cells[4].outputs if o.output_type == "display_data" and "text/html" in o.data]
    assert html and html[0].data["text/html"] == "<b>bold</b>"
    assert "'second'" in text_of(cells[4]) and "'first'" not in text_of(cells[4])
    assert any(o.output_type == "stream" and o.name == "stderr" and "to stderr" in o.text for o in cells[4].outputs)
    assert text_of(cells[5]).strip() == "local root"
    assert text_of(cells[6]).strip() == "from bash csuser"
    assert "private Unix sockets" in text_of(cells[7])
    assert "stopped" in text_of(cells[8])
    assert text_of(cells[9]).strip() == "back root"


def test_remote_error_fails_the_cell_and_stops_run_all(registered, tmp_path):
    with pytest.raises(CellExecutionError) as info:
        run_notebook(tmp_path, "import cybershuttle_magic",
                     "%request_runtime err --resource workstation\n%switch_runtime err",
                     "1/0", "print('never runs')")
    assert "ZeroDivisionError" in str(info.value)
    from cybershuttle import runtime

    runtime.stop("err")


def test_restarted_notebook_kernel_reattaches_to_the_running_runtime(registered, tmp_path):
    first = run_notebook(tmp_path, "import cybershuttle_magic",
                         "%request_runtime keep --resource testcluster\n%switch_runtime keep",
                         "marker = 41")
    job = text_of(first.cells[1])
    second = run_notebook(tmp_path, "import cybershuttle_magic",
                          "%request_runtime keep --resource testcluster\n%switch_runtime keep",
                          "print(marker + 1)", "%stop_runtime keep")
    assert "Re-attached to runtime keep" in text_of(second.cells[1])
    assert text_of(second.cells[2]).strip() == "42"  # same kernel: its variables survived
    assert job.split("as job ")[1].split()[0] in text_of(second.cells[1])


def test_dry_run_prints_the_resolved_request_and_submits_nothing(registered, tmp_path):
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: x}\nworkspace:\n  resources: {min_cpu: 2, min_mem: 512}\n"
                     "  data_collection:\n    - {source: cybershuttle, identifier: d1, mount_point: /data}\n"
                     "additional_dependencies:\n  modules: [hello/2.0]\n  pip: [numpy]\n")
    nb = run_notebook(tmp_path, "import cybershuttle_magic",
                      f"%request_runtime dry --file={setup} --walltime=20 --use=testcluster:short --dry-run")
    out = text_of(nb.cells[1])
    assert "[testcluster:short, 20 Minutes, 1 Node(s), 2 CPU(s), 0 GPU(s), 512 MB RAM]" in out
    assert "d1 -> /data (data)" in out and "hello/2.0" in out and "numpy" in out
    from cybershuttle import runtime

    assert runtime.list_all() == []


@pytest.mark.parametrize("line, message", [
    ("%request_runtime big --resource testcluster --gpus 1 --queue short", "testcluster has no GPUs"),
    ("%request_runtime big --resource testcluster --cpus 999", "999 CPUs requested"),
    ("%request_runtime big --use testcluster:nosuch", "no partition 'nosuch'"),
    ("%request_runtime big --resource nowhere", "no compute named 'nowhere'"),
    ("%request_runtime big", "say where with --resource R"),
    ("%switch_runtime ghost", "no runtime named 'ghost'"),
])
def test_impossible_requests_fail_the_cell_with_a_clear_message(registered, tmp_path, line, message):
    nb = run_notebook(tmp_path, "import cybershuttle_magic", line, allow_errors=True)
    stderr = "".join(o.text for o in nb.cells[1].outputs if o.output_type == "stream")
    assert message in stderr
    assert any(o.output_type == "error" for o in nb.cells[1].outputs)


@pytest.mark.waits
def test_interrupt_stops_the_remote_cell_and_the_runtime_survives(registered, tmp_path):
    nb = new_notebook(cells=[new_code_cell(c) for c in (
        "import cybershuttle_magic", "%request_runtime intr --resource workstation\n%switch_runtime intr",
        "import time\ntime.sleep(60)", "print('still alive')", "%stop_runtime intr")])
    nb.cells[2].metadata["execution"] = {}
    client = NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.timeout_func = lambda cell: 8 if "sleep" in cell.source else 240
    client.interrupt_on_timeout = True
    start = time.monotonic()
    client.execute()
    assert time.monotonic() - start < 50  # not the 60 s of the sleep
    errors = [o for o in nb.cells[2].outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "KeyboardInterrupt"
    assert text_of(nb.cells[3]).strip() == "still alive"


def test_notebooks_written_for_airavata_run_unchanged(registered, tmp_path):
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: demo}\nworkspace:\n  resources: {min_cpu: 1, min_mem: 256, min_gpu: 0}\n"
                     "  model_collection: []\n  data_collection: []\n"
                     "additional_dependencies:\n  modules: []\n  conda: []\n  pip: []\n")
    nb = run_notebook(
        tmp_path,
        "import airavata_jupyter_magic",
        "%authenticate",
        f"%request_runtime hpc_cpu --file={setup.name} --walltime=60 --use=testcluster:debug\n"
        "%wait_for_runtime hpc_cpu --live",
        "%switch_runtime hpc_cpu",
        "import getpass; print(getpass.getuser())",
        "# done\n%stop_runtime hpc_cpu\n\n%switch_runtime local",
    )
    assert "authenticated to testcluster" in text_of(nb.cells[1])
    assert "[testcluster:debug, 60 Minutes, 1 Node(s), 1 CPU(s), 0 GPU(s), 256 MB RAM]" in text_of(nb.cells[2])
    assert text_of(nb.cells[4]).strip() == "csuser"
    assert "Cells now run locally" in text_of(nb.cells[5])


def test_a_real_airavata_package_wins_over_the_stand_in(tmp_path, monkeypatch):
    import subprocess
    import sys

    real = tmp_path / "airavata_jupyter_magic"
    real.mkdir()
    (real / "__init__.py").write_text("SERVED_BY = 'airavata'\n")
    code = "import airavata_jupyter_magic as m; print(m.SERVED_BY)"
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert alone.stdout.strip() == "cybershuttle"
    beside = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert beside.stdout.strip() == "airavata"


def test_copy_data_in_every_direction(registered, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    (tmp_path / "data" / "sub").mkdir()
    (tmp_path / "data" / "sub" / "b.txt").write_text("beta\n")
    (tmp_path / "one.crd").write_text("coordinates\n")
    nb = run_notebook(
        tmp_path,
        "import cybershuttle_magic",
        "%request_runtime cpa --resource workstation\n%request_runtime cpb --resource testcluster\n"
        "%wait_for_runtime cpa\n%wait_for_runtime cpb",
        "%%run_on cpa\nimport os, shutil\nshutil.rmtree('cs-copy', ignore_errors=True)\n"
        "shutil.rmtree('cs-copy-b', ignore_errors=True)\n"
        "os.makedirs('cs-copy')\nos.chdir('cs-copy')",
        "%copy_data source=local:one.crd target=cpa:cs-copy/\n%copy_data source=local:data target=cpa:cs-copy/",
        "%%run_on cpa\nprint(open('one.crd').read(), open('data/sub/b.txt').read(), sorted(os.listdir('data')))",
        "%copy_data source=cpa:cs-copy/data/a.txt target=local:renamed.txt\n"
        "%copy_data source=cpa:cs-copy/data target=cpb:cs-copy-b",
        "%%run_on cpb\nimport os\nprint(sorted(os.listdir('cs-copy-b')), open('cs-copy-b/sub/b.txt').read())",
        "%copy_data source=cpa:nosuch.txt target=local:.",
        "%stop_runtime cpa\n%stop_runtime cpb",
        allow_errors=True,
    )
    assert "copied 1 file(s), 12 bytes" in text_of(nb.cells[3]) and "copied 2 file(s)" in text_of(nb.cells[3])
    assert text_of(nb.cells[4]).split() == ["coordinates", "beta", "['a.txt',", "'sub']"]
    assert (tmp_path / "renamed.txt").read_text() == "alpha\n"
    assert text_of(nb.cells[6]).split() == ["['a.txt',", "'sub']", "beta"]
    assert "'cpa:nosuch.txt' does not exist" in text_of(nb.cells[7])


@pytest.mark.cluster_alone
def test_live_wait_shows_queue_position_and_environment_setup(registered, tmp_path):
    from cybershuttle import compute, runtime

    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: x}\nadditional_dependencies:\n  modules: [hello/2.0]\n")
    res = compute.get("testcluster")
    part = res.partition_info(res.default_partition)  # fill every node of it: the runtime must queue
    # A walltime, and both given back whatever happens: a leaked whole-partition job without a time
    # limit, pending behind others' runtimes, stops the queue for everyone (no backfill past it).
    blocker = compute.execute("sleep 8", "testcluster", cpus=part["cpus_per_node"], nodes=part["nodes"], walltime=2)
    seen: list[str] = []
    try:
        # Running before the runtime asks: a job still ending on a node (another test's) would keep the
        # blocker pending too, and the runtime would wait second in line.
        deadline = time.time() + 120
        while compute.status(blocker.id).state != "RUNNING" and time.time() < deadline:
            time.sleep(0.2)
        runtime.request("queued", "testcluster", setup_file=str(setup), walltime=10)
        runtime.wait("queued", progress=seen.append)
    finally:
        give_back(lambda: runtime.stop("queued"), lambda: compute.cancel(blocker.id))
    assert "job pending, position 1 in the queue" in seen
    assert "job running" in seen
    assert "cybershuttle: loading modules hello/2.0" in seen


def test_input_on_the_runtime_is_answered_through_the_notebook(registered, local_kernel):
    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, "%request_runtime ask --resource workstation\n%switch_runtime ask")
    prompts, outputs = [], []

    def answer(msg):
        prompts.append(msg["content"]["prompt"])
        kc.input("bob")

    run_ok(kc, "import getpass\nname = input('who? ')\nprint('hi', name, getpass.getuser())", allow_stdin=True,
           stdin_hook=answer, hook=lambda m: outputs.append(m["content"].get("text", "")))
    assert prompts == ["who? "] and "".join(outputs).strip() == "hi bob csuser"
    run_ok(kc, "%stop_runtime ask")


@pytest.mark.parametrize("how", ["scancel", pytest.param("walltime", marks=pytest.mark.waits)])
def test_a_runtime_that_ends_mid_cell_fails_the_cell_instead_of_hanging(registered, local_kernel, how):
    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    walltime = " --walltime 1" if how == "walltime" else ""
    try:
        run_ok(kc, f"%request_runtime doomed --resource testcluster --queue short{walltime}\n%switch_runtime doomed")
        ends_mid_cell(kc, "doomed", how)
    finally:
        from cybershuttle import runtime

        give_back(lambda: runtime.stop("doomed"))  # a leaked one holds a node's CPU for short's 30 minutes


def give_back(*stops) -> None:
    """Run each of `stops` (stop a runtime, cancel a job), whatever the test found: a leaked job holds
    a node's CPUs, and one filling the partition stops the queue for everyone."""
    for stop in stops:
        try:
            stop()
        except Exception:  # noqa: BLE001 - never started, or already ended
            pass


def ends_mid_cell(kc, name: str, how: str) -> None:
    """Runtime `name` (active in `kc`'s notebook) ends during a long cell, by `scancel` or its walltime:
    the cell fails in one line saying why, well before the cell would have ended (also tests/test_nodes.py)."""
    from cybershuttle import compute, runtime

    msg_id = kc.execute("import time\nprint('working', flush=True)\ntime.sleep(300)")
    if how == "scancel":
        time.sleep(3)
        compute.cancel(runtime.get(name).job_id)  # as an administrator would
    start = time.monotonic()
    reply = kc.get_shell_msg(timeout=180)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "RuntimeLost"
    assert time.monotonic() - start < 150
    while (msg := kc.get_iopub_msg(timeout=10))["msg_type"] != "error":
        pass
    assert f"runtime {name} is gone" in "".join(msg["content"]["traceback"])
    assert ("CANCELLED" if how == "scancel" else "TIMEOUT") in "".join(msg["content"]["traceback"])
    assert runtime.get(name).state == "DEAD"


def test_run_subprocess_forwards_its_port_and_kill_subprocess_stops_it(registered, local_kernel):
    import re
    import urllib.request

    kc = local_kernel
    out: list[str] = []
    collect = lambda m: out.append(m["content"].get("text", ""))  # noqa: E731
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, "%request_runtime web --resource workstation\n%wait_for_runtime web")
    run_ok(kc, '%run_subprocess web --command="mkdir -p ~/cs-web && cd ~/cs-web && echo served-by-$(id -un) > '
               'index.html && exec python3 -m http.server 18765 --bind 127.0.0.1" --ports=18765', hook=collect)
    local = int(re.search(r"web:18765 -> http://127.0.0.1:(\d+)", "".join(out)).group(1))
    body = ""
    for _ in range(50):  # the server needs a moment to bind
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{local}/index.html", timeout=5).read().decode()
            break
        except OSError:
            time.sleep(0.2)
    assert body.strip() == "served-by-csuser"
    run_ok(kc, "%kill_subprocess web")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{local}/index.html", timeout=5)
    run_ok(kc, "%stop_runtime web")


def test_widget_on_a_runtime_follows_the_notebooks_changes(registered, local_kernel, tmp_path):
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("project: {name: widgets}\nadditional_dependencies:\n  pip: [ipywidgets]\n")
    kc = local_kernel  # plays the notebook frontend
    seen: list[dict] = []
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, f"%request_runtime wid --resource workstation --file {setup}\n%switch_runtime wid", timeout=300)
    run_ok(kc, "import ipywidgets as w\nslider = w.IntSlider(value=1)\ndisplay(slider)", hook=seen.append)
    opens = [m for m in seen if m["msg_type"] == "comm_open"
             and m["content"]["data"].get("state", {}).get("_model_name") == "IntSliderModel"]
    assert opens, [m["msg_type"] for m in seen]
    comm_id = opens[0]["content"]["comm_id"]
    assert any(m["msg_type"] == "display_data" and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
               for m in seen)
    # the person moves the slider: the frontend sends comm_msg to *its* (local) kernel
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {
        "method": "update", "state": {"value": 7}, "buffer_paths": []}}))
    out: list[str] = []
    run_ok(kc, "print(slider.value)", hook=lambda m: out.append(m["content"].get("text", "")))
    assert "".join(out).strip() == "7"
    run_ok(kc, "%stop_runtime wid")


@pytest.mark.cluster_alone
def test_a_dropped_ssh_connection_is_reestablished_and_the_running_cells_result_arrives(registered, local_kernel):
    import subprocess

    kc = local_kernel
    run_ok(kc, "import cybershuttle_magic")
    run_ok(kc, "%request_runtime drop --resource workstation\n%switch_runtime drop")
    # The network drops: every SSH session of the test user is cut (the remote kernel keeps running).
    result_arrives_after(kc, lambda: subprocess.run(["pkill", "-f", "^sshd: csuser"],
                                                     capture_output=True).returncode == 0)
    run_ok(kc, "%stop_runtime drop")


def result_arrives_after(kc, drop) -> None:
    """A cell runs on the active runtime while `drop()` cuts connections (True: it cut one): the cell's
    result still arrives (also tests/test_nodes.py)."""
    out: list[str] = []
    msg_id = kc.execute("import time\ntime.sleep(6)\nprint('result after the drop')")
    time.sleep(2)
    assert drop()
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    assert kc.get_shell_msg(timeout=30)["content"]["status"] == "ok"
    assert "".join(out).strip() == "result after the drop"


@pytest.mark.cluster_alone
def test_use_with_several_choices_picks_the_one_that_can_start_soonest(registered):
    from cybershuttle import compute
    from cybershuttle.compute import soonest

    res = compute.get("testcluster")
    short, debug = res.partition_info("short"), res.partition_info("debug")  # short: node1; debug: node1+node2
    blockers = [compute.execute("sleep 30", "testcluster", cpus=short["cpus_per_node"], nodes=short["nodes"],
                                partition="short", walltime=2) for _ in range(2)]  # each fills every node of short
    try:
        deadline = time.time() + 20
        while compute.status(blockers[0].id).state != "RUNNING" and time.time() < deadline:
            time.sleep(0.2)
        if debug["nodes"] > short["nodes"]:  # debug's other nodes are filled too, by one job that runs at once
            blockers.append(compute.execute("sleep 30", "testcluster", cpus=debug["cpus_per_node"],
                                            nodes=debug["nodes"] - short["nodes"], walltime=2))
            while compute.status(blockers[-1].id).state != "RUNNING" and time.time() < deadline + 20:
                time.sleep(0.2)
        # every node is full: both partitions have no idle node; 'short' has a pending job, 'debug' none
        assert soonest("testcluster:short,testcluster:debug", None) == ("testcluster", "debug")
        assert soonest("testcluster:debug,workstation:", None) == ("workstation", None)
        assert soonest("nowhere:x,testcluster:debug", None) == ("testcluster", "debug")
    finally:
        give_back(*(lambda job=job: compute.cancel(job.id) for job in blockers))
