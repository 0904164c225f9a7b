"""Issue 16 point 3: copies, restores and downloads in a directory others can write to (0777, no
sticky bit, like many project and scratch directories) never follow a symlink someone planted
there, and never resume from a partial file they did not make or whose bytes differ from the
source. Two real OS users: bob (csother) plants, alice (csuser) copies; on this machine and, over
SFTP, on the cluster's host."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from siteusers import site  # noqa: F401  (fixture)

from cybershuttle import ssh, storage
from cybershuttle.storage.partial import SUFFIX


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def shared():
    """A directory everyone can write to, without the sticky bit."""
    path = Path(tempfile.mkdtemp(prefix="cs-shared-", dir="/var/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_user(user: str, *argv: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", *argv], check=True, capture_output=True, cwd="/")


def test_a_symlink_planted_in_a_shared_directory_is_never_written_through(site, shared):
    alice = site.csuser
    precious = alice.cs_home / "precious.txt"  # alice's, in her 0700 directory
    precious.write_text("alice's own\n")
    shutil.chown(precious, "csuser", "csuser")
    data = alice.cs_home / "data.bin"
    data.write_bytes(os.urandom(3 << 20))
    shutil.chown(data, "csuser", "csuser")
    # bob plants the old fixed partial name, a guess at the new pattern, and the target itself
    for name in ("out.bin" + SUFFIX, f"out.bin{SUFFIX}.0badc0de", "out.bin"):
        as_user("csother", "ln", "-s", str(precious), str(shared / name))

    r = alice.cli("storage", "cp", str(data), str(shared / "out.bin"), "--json")
    assert r.code == 0, r.err
    assert precious.read_text() == "alice's own\n"  # nothing was written through any of bob's links
    out = shared / "out.bin"
    assert not out.is_symlink() and out.stat().st_uid == 1001 and sha(out) == sha(data)
    # bob's links are not alice's to remove; no partial file of hers is left
    left = sorted(p.name for p in shared.iterdir())
    assert left == ["out.bin", "out.bin" + SUFFIX, f"out.bin{SUFFIX}.0badc0de"]
    assert all((shared / n).is_symlink() for n in left[1:])


def test_a_leftover_partial_file_is_resumed_only_when_it_is_yours_and_its_bytes_match(site, shared):
    alice = site.csuser
    data = alice.cs_home / "data.bin"
    data.write_bytes(os.urandom(4 << 20))
    shutil.chown(data, "csuser", "csuser")
    head = data.read_bytes()[: 1 << 20]

    def leftover(user: str, name: str, content: bytes) -> Path:
        path = shared / name
        subprocess.run(["runuser", "-u", user, "--", "sh", "-c", f"umask 077; cat > {path}"], input=content,
                       check=True)
        return path

    def copy(target: str) -> dict:
        r = alice.cli("storage", "cp", str(data), str(shared / target), "--json")
        assert r.code == 0, r.err
        assert sha(shared / target) == sha(data)
        return json.loads(r.out)

    # bob's file with the right bytes is still bob's: never written to, never resumed
    bobs = leftover("csother", f"a.bin{SUFFIX}.b0b0b0", head)
    assert copy("a.bin")["resumed_bytes"] == 0
    assert bobs.read_bytes() == head and bobs.stat().st_uid == 1002
    # alice's own leftover with other bytes (another file's) is stale: removed, the copy starts afresh
    stale = leftover("csuser", f"b.bin{SUFFIX}.a11ce0", os.urandom(1 << 20))
    assert copy("b.bin")["resumed_bytes"] == 0 and not stale.exists()
    # alice's own leftover holding the source's first bytes is resumed
    mine = leftover("csuser", f"c.bin{SUFFIX}.a11ce1", head)
    assert copy("c.bin")["resumed_bytes"] == 1 << 20 and not mine.exists()
    assert not [p for p in shared.iterdir() if p.name.startswith(("b.bin" + SUFFIX, "c.bin" + SUFFIX))]


def test_a_partial_file_is_made_exclusively_under_a_random_name_with_mode_0600(shared):
    from cybershuttle.storage import partial

    old = os.umask(0)  # even with a permissive umask
    try:
        first, second = (partial.local(str(shared / "t.bin"), 10, None) for _ in range(2))
    finally:
        os.umask(old)
    for p in (first, second):
        assert Path(p.path).name.startswith("t.bin" + SUFFIX + ".") and os.stat(p.path).st_mode & 0o777 == 0o600
        p.discard()
    assert first.path != second.path


def test_copies_over_sftp_into_a_shared_directory_on_the_cluster(registered, cluster, shared, tmp_path):
    """alice is the cluster login (csuser); bob (csother) plants on the cluster's host."""
    precious = Path(f"/home/{cluster.user}/cs-precious-{uuid.uuid4().hex[:8]}")
    conn = ssh.connect(cluster.endpoint())
    conn.run(f"echo mine > {precious}")
    try:
        for name in ("up.bin" + SUFFIX, f"up.bin{SUFFIX}.0badc0de", "up.bin"):
            as_user("csother", "ln", "-s", str(precious), str(shared / name))
        storage.register("scratch", str(shared), resource="testcluster")
        src = tmp_path / "src.bin"
        src.write_bytes(os.urandom(2 << 20))
        up = storage.copy(str(src), "scratch:/up.bin", checksum=True)
        # scp writes by name, which others can change here: the copy went through its own SFTP handle
        assert up.method == "fsspec"
        assert conn.run(f"cat {precious}").stdout == "mine\n"
        assert (shared / "up.bin").stat().st_uid == 1001 and not (shared / "up.bin").is_symlink()
        assert sha(shared / "up.bin") == sha(src)

        # and back to a shared directory here, where bob planted links to a file of this machine's user
        here = Path(tempfile.mkdtemp(prefix="cs-shared-here-", dir="/var/tmp"))
        here.chmod(0o777)
        mine = tmp_path / "mine.txt"
        mine.write_text("root's own\n")
        tmp_path.chmod(0o755)  # so the planted link resolves for anyone (as it would in a real home)
        for name in ("down.bin" + SUFFIX, f"down.bin{SUFFIX}.0badc0de"):
            as_user("csother", "ln", "-s", str(mine), str(here / name))
        try:
            down = storage.copy("scratch:/up.bin", str(here / "down.bin"), checksum=True)
            assert down.method == "fsspec" and mine.read_text() == "root's own\n"
            assert sha(here / "down.bin") == sha(src) and (here / "down.bin").stat().st_mode & 0o777 != 0o600
        finally:
            shutil.rmtree(here, ignore_errors=True)
    finally:
        conn.run(f"rm -f {precious}")


def test_a_restored_notebook_replaces_a_planted_link_instead_of_writing_through_it(tmp_path, shared):
    from cybershuttle.session.notebook import _write_bytes

    mine = tmp_path / "mine.ipynb"
    mine.write_text("root's own\n")
    tmp_path.chmod(0o755)
    for name in (".nb.ipynb.cs-tmp", "nb.ipynb"):  # the old fixed temporary name, and the target
        as_user("csother", "ln", "-s", str(mine), str(shared / name))
    _write_bytes(shared / "nb.ipynb", b'{"cells": []}\n')
    assert mine.read_text() == "root's own\n"
    assert not (shared / "nb.ipynb").is_symlink() and (shared / "nb.ipynb").read_bytes() == b'{"cells": []}\n'


def test_a_setup_file_and_collected_outputs_in_a_shared_directory_replace_planted_links(tmp_path, shared):
    from cybershuttle.application.setup_edit import _replace
    from cybershuttle.storage.partial import copy_local

    mine = tmp_path / "mine.txt"
    mine.write_text("root's own\n")
    tmp_path.chmod(0o755)
    for name in (".cybershuttle.yml.cybershuttle-tmp", "cybershuttle.yml", "out.csv"):
        as_user("csother", "ln", "-s", str(mine), str(shared / name))
    _replace(shared / "cybershuttle.yml", "modules: [gcc]\n")
    source = tmp_path / "result.csv"
    source.write_text("x\n1\n")
    copy_local(str(source), str(shared / "out.csv"))
    assert mine.read_text() == "root's own\n"
    assert (shared / "cybershuttle.yml").read_text() == "modules: [gcc]\n"
    assert not (shared / "out.csv").is_symlink() and (shared / "out.csv").read_text() == "x\n1\n"


def test_a_directory_link_planted_in_a_shared_directory_is_not_followed(site, shared):
    alice = site.csuser
    private = alice.cs_home / "private"  # alice's own directory, where bob's link leads
    private.mkdir()
    (private / "notes.txt").write_text("alice's notes\n")
    subprocess.run(["chown", "-R", "csuser:csuser", str(private)], check=True)
    data = alice.cs_home / "data.txt"
    data.write_text("results\n")
    shutil.chown(data, "csuser", "csuser")
    as_user("csother", "ln", "-s", str(private), str(shared / "results"))

    for args in ([str(data), str(shared / "results" / "notes.txt")], ["-r", str(private), str(shared / "results/")]):
        r = alice.cli("storage", "cp", *args)
        assert r.code == 1, r.out
        line = r.err.strip()
        assert f"{shared}/results is a symbolic link made by csother, not you" in line and "\n" not in line, line
    assert (private / "notes.txt").read_text() == "alice's notes\n"
    assert sorted(os.listdir(private)) == ["notes.txt"]


def test_dataset_load_into_a_shared_directory_replaces_a_planted_link(site, shared):
    alice = site.csuser
    data = alice.cs_home / "cifar"
    data.mkdir()
    (data / "README").write_text("ten classes\n")
    precious = alice.cs_home / "precious.txt"
    precious.write_text("alice's own\n")
    subprocess.run(["chown", "-R", "csuser:csuser", str(data), str(precious)], check=True)
    for name in ("cifar", ".cifar.link-tmp"):  # the link's name, and the old fixed temporary name
        as_user("csother", "ln", "-s", str(precious), str(shared / name))
    assert alice.cli("dataset", "register", "--name", "cifar", "--location", str(data)).code == 0
    r = alice.cli("dataset", "load", "cifar", "--to", str(shared))
    assert r.code == 0, r.err
    assert os.readlink(shared / "cifar") == str(data) and (shared / "cifar").lstat().st_uid == 1001
    assert precious.read_text() == "alice's own\n"
