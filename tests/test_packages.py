"""Every package imports, and the magic extension loads into a real IPython."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", [
    "cybershuttle", "cybershuttle.cli.main", "cybershuttle.registry", "cybershuttle.profile",
    "cybershuttle.ssh", "cybershuttle.setupfile", "cybershuttle.storage", "cybershuttle.compute",
    "cybershuttle_magic", "cybershuttle_server", "jupyterlab_cybershuttle",
])
def test_package_imports(name):
    importlib.import_module(name)


def test_importing_the_magic_package_inside_ipython_registers_the_magics(tmp_path):
    code = (
        "from IPython.testing.globalipapp import start_ipython\n"
        "ip = start_ipython()\n"
        "import cybershuttle_magic\n"
        "assert 'cybershuttle' in ip.magics_manager.magics['line'], 'not registered'\n"
        "ip.run_line_magic('cybershuttle', '')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "cybershuttle 0." in proc.stdout and "site catalog" in proc.stdout


def test_core_does_not_import_front_ends():
    code = ("import sys, cybershuttle.registry, cybershuttle.ssh, cybershuttle.setupfile, cybershuttle.profile\n"
            "bad = [m for m in ('IPython', 'tornado', 'jupyter_server') if m in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
