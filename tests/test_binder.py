"""binder/postBuild leaves a binder user with a `local` resource, sample storage and datasets that
load; the sidebar and the REST API are enabled in this environment's JupyterLab."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_post_build_registers_local_resource_sample_storage_and_datasets(cs_home, tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(ROOT / "binder" / "postBuild")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr

    from cybershuttle import compute, dataset, storage

    assert "local" in [r.name for r in compute.list_all()]
    storages = {s.name: s for s in storage.list_all()}
    assert {"home", "samples"} <= set(storages) and storages["samples"].read_only
    assert {"weather", "sequences", "samples-all"} <= {d.name for d in dataset.list_all()}
    loaded = Path(dataset.load("weather", to=tmp_path / "data"))
    csv = loaded / "weather.csv" if loaded.is_dir() else loaded
    assert csv.read_text().startswith("date,station,temp_c,rain_mm\n")


def test_sidebar_and_server_extension_are_enabled():
    """What mybinder's JupyterLab loads: `make sidebar` (part of `make test`) builds and links the sidebar."""
    labext = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True, timeout=120)
    listing = labext.stdout + labext.stderr
    line = next((ln for ln in listing.splitlines() if "jupyterlab-cybershuttle" in ln), "")
    assert "enabled" in line and "OK" in line, f"sidebar not installed (run `make sidebar`):\n{listing}"
    server = subprocess.run([str(BIN / "jupyter"), "server", "extension", "list"], capture_output=True, text=True,
                            timeout=120)
    line = next((ln for ln in (server.stdout + server.stderr).splitlines() if "cybershuttle_server" in ln), "")
    assert "enabled" in line, server.stdout + server.stderr
