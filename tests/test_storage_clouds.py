"""Cloud drives without a cloud account: an fsspec filesystem found through the
`fsspec.specs` entry point group (as an installed Google Drive or OneDrive package
would be), and rclone remotes of type local and sftp in a private rclone config."""
from __future__ import annotations

import json
import os
import shlex
import textwrap
import uuid
from pathlib import Path

import pytest

from cybershuttle import ssh, storage

# A stand-in for a cloud drive package: protocol `csdrive://BUCKET/path`, whose
# "cloud" is a directory named by $CSDRIVE_ROOT. Only what a drive package provides.
DRIVE_MODULE = '''
import os
from fsspec.implementations.local import LocalFileSystem


class CsDrive(LocalFileSystem):
    protocol = ("csdrive",)
    root_marker = ""

    @classmethod
    def _strip_protocol(cls, path):
        path = path[len("csdrive://"):] if path.startswith("csdrive://") else path
        root = os.environ["CSDRIVE_ROOT"]
        return path if path.startswith(root) else os.path.join(root, path.lstrip("/"))
'''


@pytest.fixture
def drive_package(tmp_path):
    """A test-only distribution on PYTHONPATH declaring `csdrive` in entry point group fsspec.specs."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "csdrive_fs.py").write_text(DRIVE_MODULE)
    dist = site / "csdrive_fs-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: csdrive-fs\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fsspec.specs]\ncsdrive = csdrive_fs:CsDrive\n")
    cloud = tmp_path / "cloud"
    (cloud / "team" / "results").mkdir(parents=True)
    (cloud / "team" / "results" / "r1.csv").write_text("a,b\n1,2\n")
    env = {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""), "CSDRIVE_ROOT": str(cloud)}
    return env, cloud


def test_a_drive_installed_through_entry_points_is_a_storage(cli, drive_package, tmp_path):
    env, cloud = drive_package
    res = cli("storage", "register", "--name", "drive", "--location", "csdrive://team", env=env)
    assert res.code == 0, res.err
    listed = json.loads(cli("storage", "ls", "--json", env=env).out)
    assert [(s["name"], s["protocol"]) for s in listed] == [("drive", "csdrive")]
    files = json.loads(cli("storage", "ls", "drive:/results", "--json", env=env).out)
    assert [(f["name"], f["size"]) for f in files] == [("r1.csv", 8)]
    local = tmp_path / "local.txt"
    local.write_text("from the laptop\n")
    up = cli("storage", "cp", str(local), "drive:/results/", "--checksum", env=env)
    assert up.code == 0, up.err
    assert (cloud / "team" / "results" / "local.txt").read_text() == "from the laptop\n"
    down = cli("storage", "cp", "-r", "drive:/results", str(tmp_path / "back"), env=env)
    assert down.code == 0, down.err
    assert (tmp_path / "back" / "r1.csv").read_text() == "a,b\n1,2\n"
    # without the package, the protocol is reported as missing, not crashed on
    gone = cli("storage", "ls", "drive:/", env={"PYTHONPATH": ""})
    assert gone.code == 1 and "csdrive" in gone.err and "Traceback" not in gone.err


@pytest.fixture
def rclone_config(tmp_path, cluster, monkeypatch):
    """A private rclone config with a `local` remote and an `sftp` remote to the loopback sshd."""
    local_root = tmp_path / "rclone-local"
    (local_root / "docs").mkdir(parents=True)
    (local_root / "docs" / "readme.md").write_text("# hello\n")
    conf = tmp_path / "rclone.conf"
    conf.write_text(textwrap.dedent(f"""\
        [cslocal]
        type = local

        [cssftp]
        type = sftp
        host = {cluster.host}
        port = {cluster.port}
        user = {cluster.user}
        key_file = {cluster.key}
        known_hosts_file = {cluster.known_hosts}
        """))
    conf.chmod(0o600)
    monkeypatch.setenv("RCLONE_CONFIG", str(conf))
    return local_root


def test_rclone_remotes_of_type_local_and_sftp(rclone_config, cluster, tmp_path):
    s = storage.register("box", f"rclone:cslocal:{rclone_config}")
    assert (s.protocol, s.host) == ("rclone", "cslocal")
    assert [(e["name"], e["type"]) for e in storage.ls("box:/")] == [("docs", "directory")]
    assert storage.open("box:/docs/readme.md").read() == b"# hello\n"
    with storage.open("box:/docs/new.txt", "wb") as f:
        f.write(b"written through rclone rcat")
    assert (rclone_config / "docs" / "new.txt").read_bytes() == b"written through rclone rcat"
    m = storage.mount("box", str(tmp_path / "mnt"))
    try:
        assert m.method == "rclone" and os.path.ismount(m.path)
        assert (Path(m.path) / "docs" / "readme.md").read_text() == "# hello\n"
    finally:
        storage.umount("box")
    assert not os.path.exists(m.path)

    remote = f"cs-rclone-{uuid.uuid4().hex[:8]}"
    ssh.connect(cluster.endpoint()).run(f"mkdir -p {remote}")
    try:
        storage.register("sbox", f"rclone:cssftp:{remote}")
        result = storage.copy("box:/docs", "sbox:/", recursive=True, checksum=True)
        assert result.files == 2 and result.method == "fsspec"
        got = ssh.connect(cluster.endpoint()).run(f"cat {remote}/docs/readme.md").stdout
        assert got == "# hello\n"
        assert sorted(e["name"] for e in storage.ls("sbox:/docs")) == ["new.txt", "readme.md"]
        ro = storage.register("robox", f"rclone:cssftp:{remote}", read_only=True)
        assert ro.read_only
        with pytest.raises(storage.ReadOnlyStorageError):
            storage.copy(str(rclone_config / "docs" / "readme.md"), "robox:/x.md")
    finally:
        ssh.connect(cluster.endpoint()).run(f"rm -rf {shlex.quote(remote)}")


def test_a_missing_rclone_remote_is_named(rclone_config):
    with pytest.raises(storage.StorageError, match="configured: cslocal, cssftp"):
        storage.register("nope", "rclone:gdrive:x")

