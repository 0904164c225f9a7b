"""Kernelspecs whose provisioner starts the notebook's kernel on a resource."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook


def test_kernelspec_install_lists_the_kernel_and_nbclient_runs_on_the_resource(registered, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    res = cli("compute", "kernelspec", "install", "workstation")
    assert res.code == 0, res.err
    listed = subprocess.run([str(Path(sys.executable).parent / "jupyter"), "kernelspec", "list", "--json"],
                            capture_output=True, text=True).stdout
    spec = json.loads(listed)["kernelspecs"]["cybershuttle-workstation"]["spec"]
    assert spec["metadata"]["kernel_provisioner"]["provisioner_name"] == "cybershuttle-provisioner"
    assert spec["interrupt_mode"] == "message"

    nb = new_notebook(cells=[new_code_cell("import getpass, os\nprint(getpass.getuser(), os.getcwd())")])
    NotebookClient(nb, timeout=240, kernel_name="cybershuttle-workstation").execute()
    assert nb.cells[0].outputs[0].text.strip() == "csuser /home/csuser"
    from cybershuttle import runtime

    assert [r.state for r in runtime.list_all()] == ["STOPPED"]  # shutting the kernel down released it


def test_papermill_runs_a_parameterised_notebook_on_slurm(registered, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    from cybershuttle.runtime import provisioner

    provisioner.install_kernelspec("testcluster", cpus=1, walltime=10)
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                             new_code_cell("import os\nprint(x * 2, os.environ['SLURM_JOB_ID'] != '')")])
    nb.metadata["kernelspec"] = {"name": "cybershuttle-testcluster", "language": "python", "display_name": "x"}
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    papermill.execute_notebook(str(src), str(out), parameters={"x": 21}, kernel_name="cybershuttle-testcluster")
    result = nbformat.read(out, as_version=4)
    assert result.cells[-1].outputs[0].text.strip() == "42 True"


_STOP_SCRIPT = """
import sys, time
from jupyter_client.manager import KernelManager
from cybershuttle import runtime

km = KernelManager(kernel_name="cybershuttle-workstation")
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=240)
out = []
kc.execute_interactive("print('hello from the runtime')", timeout=60, output_hook=lambda m: out.append(m))
kc.stop_channels()
start = time.perf_counter()
km.shutdown_kernel()
print("STOP", time.perf_counter() - start)
print("STATES", [r.state for r in runtime.list_all()])
print("OUTPUT", [m["content"].get("text") for m in out if m["msg_type"] == "stream"])
"""


def test_stopping_a_kernel_is_quick_and_start_and_stop_say_nothing_on_stderr(registered, tmp_path, monkeypatch):
    """Shutdown is seen within a poll (no 5 s status interval) and forwarding retries are no ERROR lines."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    from cybershuttle.runtime import provisioner

    provisioner.install_kernelspec("workstation")
    proc = subprocess.run([sys.executable, "-c", _STOP_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert "hello from the runtime" in lines["OUTPUT"]
    assert lines["STATES"] == "['STOPPED']"
    # The goal is 1 s (benchmarks/provisioner_stop.py); 2.5 s leaves room for a loaded machine and still
    # fails the old 5 s poll.
    assert float(lines["STOP"]) < 2.5, lines["STOP"]
    assert "open FAILED" not in proc.stderr and "Secsh" not in proc.stderr, proc.stderr


def test_forwarding_to_a_closed_port_is_quiet_and_a_real_failure_is_said_once(registered, caplog):
    """A refused channel (nothing listens yet, or any more) is expected; a channel the server will not open
    for another reason is a real failure: one WARNING naming the forward, with paramiko's own line."""
    import logging
    import socket

    from cybershuttle import compute, ssh
    from cybershuttle.runtime.forward import Forwarder

    conn = ssh.connect(compute.get("workstation").endpoint)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(4)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    fwd = Forwarder()
    added = []
    add = fwd.add
    fwd.add = lambda *args: added.append(add(*args)) or added[-1]  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG)
    try:
        open_port = fwd.add("127.0.0.1", listening.getsockname()[1], conn.open_tunnel)
        refused = fwd.add("127.0.0.1", closed.getsockname()[1], conn.open_tunnel)
        assert fwd.probe(open_port.local_port) is True
        assert fwd.probe(refused.local_port) is False
        assert fwd.probe(1) is None  # no such forward
        for _ in range(3):  # what ZeroMQ does while a kernel is not there: connect, get closed, retry
            client = socket.create_connection(("127.0.0.1", refused.local_port), timeout=10)
            assert client.recv(1) == b""
            client.close()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text

        # A host that does not resolve: the server fails the channel with the same code 2, in other words
        odd = fwd.add("no-such-host.invalid", 9, conn.open_tunnel)
        client = socket.create_connection(("127.0.0.1", odd.local_port), timeout=10)
        assert client.recv(1) == b""
        client.close()
        # only refusals are kept quiet: paramiko's line for anything else still shows
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("open FAILED: " in e and "Connection refused" not in e and "open failed" not in e
                   for e in errors), errors

        gone = ssh.Pool().connect(compute.get("workstation").endpoint)
        gone.close()  # the SSH connection is down: a real failure, not a refusal
        broken = fwd.add("127.0.0.1", 9, gone.open_tunnel)
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", broken.local_port), timeout=10)
            assert client.recv(1) == b""
            client.close()
        assert fwd.probe(broken.local_port) is None  # cannot tell: not evidence that nothing listens
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and warnings[0].startswith("cannot forward to 127.0.0.1:9: "), warnings
    finally:
        for f in added:
            fwd.remove(f)
        listening.close()
        closed.close()



def test_a_notebook_whose_runtime_kernel_died_shows_no_forwarding_noise(registered, tmp_path):
    """The magic path: the notebook's kernel holds the forwards, and what it logs lands in the cells'
    output. After the runtime's kernel died, its client keeps reconnecting to ports nothing listens on:
    that shows nothing, in the failed cell or in the next ones."""
    from nbformat.v4 import new_notebook

    cells = ["import cybershuttle_magic",
             "%request_runtime quiet --resource workstation\n%switch_runtime quiet",
             "print('on the runtime')",
             "import os\nos._exit(0)",
             "%%run_on local\nimport time\ntime.sleep(3)\nprint('still here')",
             "%stop_runtime quiet"]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    texts = [o.get("text", "") + str(o.get("data", "")) + str(o.get("evalue", "")) for c in nb.cells for o in c.outputs]
    assert any("on the runtime" in t for t in texts) and any("still here" in t for t in texts), texts
    assert not [t for t in texts if "open FAILED" in t or "Secsh" in t], texts
