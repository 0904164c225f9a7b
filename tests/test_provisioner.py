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
