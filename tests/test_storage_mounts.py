"""Mounts for real: symlinks, sshfs over the loopback sshd, rclone mounts for read-only
storages, the FUSE-missing error, and `%storage mount` on an active runtime's host."""
from __future__ import annotations

import errno
import json
import os
import shlex
import uuid
from pathlib import Path

import pytest

from cybershuttle import ssh, storage
from cybershuttle.storage import mounting as mount_module


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "lab"
    root.mkdir()
    (root / "a.csv").write_text("x,y\n1,2\n")
    return root


@pytest.fixture
def remote_dir(cluster):
    name = f"cs-mount-test-{uuid.uuid4().hex[:8]}"
    ssh.connect(cluster.endpoint()).run(f"mkdir -p {name} && echo remote > {name}/r.txt")
    yield name
    ssh.connect(cluster.endpoint()).run(f"rm -rf {shlex.quote(name)}")


@pytest.fixture
def unmount_all():
    yield
    for m in storage.mounts():
        try:
            storage.umount(m.name, runtime=m.runtime)
        except Exception as exc:  # noqa: BLE001 - teardown must try every mount
            print(f"teardown: {exc}")


def test_local_read_write_storage_is_a_symlink(data, tmp_path, unmount_all):
    storage.register("lab", str(data))
    m = storage.mount("lab", str(tmp_path / "mnt"))
    link = tmp_path / "mnt" / "lab"
    assert (m.method, m.path, m.host) == ("symlink", str(link), None)
    assert link.is_symlink() and (link / "a.csv").read_text() == "x,y\n1,2\n"
    with pytest.raises(storage.StorageError, match="already mounted"):
        storage.mount("lab", str(tmp_path / "other"))
    with pytest.raises(storage.StorageError, match="is mounted"):
        storage.remove("lab")
    storage.umount("lab")
    assert not link.exists() and (data / "a.csv").is_file()
    assert storage.mounts() == []


def test_read_only_local_storage_is_mounted_read_only(data, tmp_path, unmount_all):
    storage.register("ro", str(data), read_only=True)
    m = storage.mount("ro", str(tmp_path / "mnt"))
    target = Path(m.path)
    assert (m.method, m.read_only) == ("rclone", True)
    assert (target / "a.csv").read_text() == "x,y\n1,2\n"
    with pytest.raises(OSError) as info:
        (target / "a.csv").write_text("changed")
    assert info.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    assert (data / "a.csv").read_text() == "x,y\n1,2\n"
    storage.umount("ro")
    assert not target.exists()


@pytest.mark.parametrize("read_only", [False, True])
def test_sftp_storage_is_an_sshfs_mount(registered, remote_dir, cluster, tmp_path, cli, read_only, unmount_all):
    storage.register("hpc", f"sftp://{cluster.user}@{cluster.host}:{cluster.port}/~/{remote_dir}",
                     read_only=read_only)
    m = storage.mount("hpc", str(tmp_path / "mnt"))
    target = Path(m.path)
    assert (m.method, m.read_only) == ("sshfs", read_only)
    assert os.path.ismount(target)
    assert (target / "r.txt").read_text() == "remote\n"
    listed = json.loads(cli("storage", "mounts", "--json").out)
    assert [(x["name"], x["method"], x["path"]) for x in listed] == [("hpc", "sshfs", str(target))]
    if read_only:
        with pytest.raises(OSError):
            (target / "new.txt").write_text("no")
        assert not ssh.connect(cluster.endpoint()).run(f"test -e {remote_dir}/new.txt", check=False).ok
    else:
        (target / "new.txt").write_text("through sshfs")
        assert ssh.connect(cluster.endpoint()).run(f"cat {remote_dir}/new.txt").stdout == "through sshfs"
    assert cli("storage", "umount", "hpc").code == 0
    assert not os.path.ismount(target) and not target.exists()


@pytest.mark.parametrize("missing", ["/dev/fuse", "fusermount"])
def test_without_fuse_the_error_says_so_and_what_to_use(registered, remote_dir, cluster, tmp_path, monkeypatch,
                                                        missing):
    storage.register("hpc", f"~/{remote_dir}", resource="testcluster")
    if missing == "/dev/fuse":
        real = os.path.exists
        monkeypatch.setattr(mount_module.os.path, "exists", lambda p: False if p == "/dev/fuse" else real(p))
        expected = "there is no /dev/fuse"
    else:
        monkeypatch.setattr(mount_module.shutil, "which", lambda name: None)
        expected = "fusermount is not installed"
    with pytest.raises(storage.StorageError) as info:
        storage.mount("hpc", str(tmp_path / "mnt"))
    assert expected in str(info.value) and "storage cp" in str(info.value)
    assert storage.mounts() == [] and not (tmp_path / "mnt" / "hpc").exists()


def test_a_taken_directory_is_not_overwritten(data, tmp_path):
    storage.register("lab", str(data))
    (tmp_path / "mnt" / "lab").mkdir(parents=True)
    (tmp_path / "mnt" / "lab" / "mine.txt").write_text("keep")
    with pytest.raises(storage.StorageError, match="already exists"):
        storage.mount("lab", str(tmp_path / "mnt"))
    assert (tmp_path / "mnt" / "lab" / "mine.txt").read_text() == "keep"


def test_storage_magic_mounts_on_the_active_runtimes_host_and_here_without_one(registered, remote_dir, cluster,
                                                                               data, tmp_path):
    from test_magics import run_notebook, text_of

    storage.register("hpc", f"~/{remote_dir}", resource="workstation")
    storage.register("lab", str(data))
    remote_mnt = f"/tmp/cs-magic-mnt-{uuid.uuid4().hex[:8]}"
    try:
        nb = run_notebook(
            tmp_path,
            "import cybershuttle_magic",
            f"%storage mount lab {tmp_path}/here",
            "%request_runtime srt --resource workstation\n%switch_runtime srt",
            f"%storage mount hpc {remote_mnt}",
            f"import os, getpass\nprint(getpass.getuser(), open('{remote_mnt}/hpc/r.txt').read().strip(), "
            f"os.path.islink('{remote_mnt}/hpc'))",
            "%storage mounts",
            "%storage umount hpc",
            "%stop_runtime srt",
            "%storage umount lab",
        )
        assert "mounted at" in text_of(nb.cells[1]) and "this machine" in text_of(nb.cells[1])
        assert "(runtime srt)" in text_of(nb.cells[3]) and "symlink" in text_of(nb.cells[3])
        assert text_of(nb.cells[4]).split() == [cluster.user, "remote", "True"]
        assert "hpc" in text_of(nb.cells[5]) and "lab" in text_of(nb.cells[5])
        assert "unmounted" in text_of(nb.cells[6]) and "unmounted" in text_of(nb.cells[8])
        assert not ssh.connect(cluster.endpoint()).run(f"test -e {remote_mnt}/hpc", check=False).ok
        assert storage.mounts() == []
    finally:
        ssh.connect(cluster.endpoint()).run(f"rm -rf {shlex.quote(remote_mnt)}", check=False)
        from cybershuttle import runtime

        if runtime.find("srt") is not None and runtime.get("srt").state in runtime.LIVE_STATES:
            runtime.stop("srt")
