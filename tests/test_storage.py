"""Named storage against real things: local paths, the loopback sshd (sftp, HPC paths on a
registered resource), privacy between two users, read-only enforcement, resumed copies."""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import uuid
from pathlib import Path

import pytest

from cybershuttle import ssh, storage
from siteusers import site  # noqa: F401  (fixture)
from cybershuttle.errors import (
    AlreadyExistsError,
    CybershuttleError,
    InvalidNameError,
    NotFoundError,
)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "lab"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a.csv").write_text("x,y\n1,2\n")
    (root / "sub" / "b.txt").write_text("bee\n")
    (root / "sub" / "deep" / "c.bin").write_bytes(os.urandom(3000))
    return root


@pytest.fixture
def remote_dir(cluster):
    """A fresh directory in the test user's home on the loopback host, removed afterwards."""
    name = f"cs-storage-test-{uuid.uuid4().hex[:8]}"
    conn = ssh.connect(cluster.endpoint())
    conn.run(f"mkdir -p {name} && echo remote > {name}/r.txt")
    yield name
    ssh.connect(cluster.endpoint()).run(f"rm -rf {shlex.quote(name)}")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- local -----------------------------------------------------------------
def test_local_storage_lists_opens_and_resolves_paths(data):
    s = storage.register("lab", str(data))
    assert (s.protocol, s.host, s.root) == ("file", None, str(data))
    entries = storage.ls("lab:/")
    assert [(e["name"], e["type"]) for e in entries] == [("sub", "directory"), ("a.csv", "file")]
    assert entries[1]["size"] == 8 and entries[1]["mtime"] > 0
    assert [e["path"] for e in storage.ls("lab:/sub")] == ["/sub/deep", "/sub/b.txt"]
    with storage.open("lab:/a.csv", "r") as f:
        assert f.read() == "x,y\n1,2\n"
    assert storage.path("lab:/sub/b.txt") == str(data / "sub" / "b.txt")
    assert storage.fs("lab").cat_file("/sub/b.txt") == b"bee\n"
    assert storage.split("lab:/sub/b.txt") == ("lab", "/sub/b.txt")
    with pytest.raises(InvalidNameError, match="leaves the storage's root"):
        storage.ls("lab:/../..")
    with pytest.raises(InvalidNameError, match="leaves the storage's root"):
        storage.open("lab:/sub/../../x")


def test_cli_register_ls_info_rm(cli, data):
    res = cli("storage", "register", "--name", "lab", "--location", str(data), "--read-only")
    assert res.code == 0, res.err
    assert "file" in res.out and "read-only" in res.out
    listed = json.loads(cli("storage", "ls", "--json").out)
    assert [(s["name"], s["protocol"], s["read_only"]) for s in listed] == [("lab", "file", True)]
    table = cli("storage", "ls", "lab:/").out
    assert "a.csv" in table and "8 B" in table and "sub/" in table
    info = json.loads(cli("storage", "info", "lab", "--json").out)
    assert info["scope"] == "private" and info["location"] == str(data)
    assert cli("storage", "rm", "lab").code == 0
    assert data.is_dir() and (data / "a.csv").is_file()  # removing the name leaves the files
    with pytest.raises(NotFoundError, match="no storage named 'lab'"):
        storage.get("lab")


BAD_LOCATIONS = [
    ("/no/such/dir", "is not a directory on this machine"),
    ("gopher://example.org/x", "no installed filesystem handles gopher://"),
    ("sftp:///x", "has no host"),
    ("sftp://u:secret@host/x", "holds a password"),
    ("https://u:secret@host/x", "holds a password"),
    ("rclone:nosuchremote:x", "no rclone remote named 'nosuchremote'"),
    ("ftp:/scratch", "means a path on your remote compute resource"),
    ("", "location is required"),
]


def test_bad_locations_are_refused_with_what_to_do(cli):
    for location, message in BAD_LOCATIONS:
        with pytest.raises(storage.StorageError, match=message.replace("(", r"\(")):
            storage.register("bad", location)
    assert storage.list_all() == []
    res = cli("storage", "register", "--name", "bad", "--location", "sftp://u:secret@host/x")
    assert res.code == 1 and "holds a password" in res.err and "Traceback" not in res.err
    assert "secret" not in res.err.replace("u:secret@host", "")  # only echoed back inside the refused location


@pytest.mark.parametrize("name", ["a b", "..", "x;id", "$(id)", "-r"])
def test_bad_names_are_refused(data, name):
    with pytest.raises(InvalidNameError):
        storage.register(name, str(data))
    assert storage.list_all() == []


def test_a_name_is_registered_once(data):
    storage.register("lab", str(data))
    with pytest.raises(AlreadyExistsError):
        storage.register("lab", str(data))


def test_unknown_storage_in_a_copy_is_named(data, tmp_path):
    with pytest.raises(NotFoundError, match="no storage named 'nosuch'"):
        storage.copy("nosuch:/a", str(tmp_path))


# -- privacy ---------------------------------------------------------------
def test_private_storages_are_invisible_to_another_user(data, site):
    lab = site.shared_copy(data)
    made = site.csuser.python(
        "from cybershuttle import storage\n"
        f"storage.register('mine', {str(lab)!r})\n"
        f"storage.register('shared', {str(lab)!r}, public=True)\n"
        "print([s.name for s in storage.list_all()])\n")
    assert made.code == 0 and made.out.strip() == "['mine', 'shared']", made.err
    seen = json.loads(site.csother.cli("storage", "ls", "--json").out)
    assert [(s["name"], s["public"], s["owner"]) for s in seen] == [("shared", True, "csuser")]
    bob = site.csother.python(
        "from cybershuttle import storage\n"
        "from cybershuttle.errors import CybershuttleError, NotFoundError\n"
        "def refused(f, *a, kind=CybershuttleError):\n"
        "    try:\n        f(*a)\n    except kind as e:\n        print(type(e).__name__, e)\n"
        "    else:\n        print('ALLOWED')\n"
        "refused(storage.ls, 'mine:/', kind=NotFoundError)\n"
        f"refused(storage.copy, 'mine:/a.csv', {str(site.csother.cs_home / 'never')!r}, kind=NotFoundError)\n"
        "refused(storage.remove, 'shared')\n"
        "print(storage.open('shared:/a.csv').read())\n")
    assert bob.code == 0, bob.err
    lines = bob.out.splitlines()
    assert lines[0].startswith("NotFoundError no storage named 'mine'")
    assert lines[1].startswith("NotFoundError")
    assert "only its owner" in lines[2]
    assert lines[3] == "b'x,y\\n1,2\\n'"  # public ones are readable by everyone


# -- read-only -------------------------------------------------------------
def test_read_only_storage_refuses_every_write_and_the_file_is_unchanged(cli, data, tmp_path):
    storage.register("ro", str(data), read_only=True)
    before = sha(data / "a.csv")
    fs = storage.fs("ro")
    for attempt in (lambda: storage.open("ro:/a.csv", "wb"), lambda: storage.open("ro:/a.csv", "a"),
                    lambda: fs.pipe_file("/a.csv", b"changed"), lambda: fs.rm("/a.csv"),
                    lambda: fs.mv("/a.csv", "/z.csv"), lambda: fs.mkdir("/new"), lambda: fs.touch("/t")):
        with pytest.raises(storage.ReadOnlyStorageError, match="storage 'ro' is read-only"):
            attempt()
    (tmp_path / "new.csv").write_text("new")
    res = cli("storage", "cp", str(tmp_path / "new.csv"), "ro:/a.csv")
    assert res.code == 1 and "storage 'ro' is read-only" in res.err and "Traceback" not in res.err
    assert sha(data / "a.csv") == before
    assert sorted(p.name for p in data.iterdir()) == ["a.csv", "sub"]
    # reading still works
    assert storage.open("ro:/a.csv").read() == b"x,y\n1,2\n"


def test_http_storage_is_read_only(data):
    import http.server
    import threading
    from functools import partial

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(http.server.SimpleHTTPRequestHandler, directory=str(data)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        s = storage.register("web", url)
        assert (s.protocol, s.read_only) == ("http", True)
        assert storage.open("web:/a.csv").read() == b"x,y\n1,2\n"
        assert "a.csv" in [e["name"] for e in storage.ls("web:/")]
        with pytest.raises(storage.ReadOnlyStorageError):
            storage.open("web:/a.csv", "wb")
    finally:
        server.shutdown()


# -- sftp and HPC paths ----------------------------------------------------
def test_hpc_path_on_a_registered_resource_reuses_its_ssh_settings(registered, remote_dir, cluster):
    s = storage.register("hpc", f"~/{remote_dir}", resource="testcluster")
    assert (s.protocol, s.resource, s.host, s.port) == ("sftp", "testcluster", cluster.host, cluster.port)
    assert s.key is None  # settings are read from the resource at use time, not copied
    assert [e["name"] for e in storage.ls("hpc:/")] == ["r.txt"]
    assert storage.open("hpc:/r.txt").read() == b"remote\n"
    with storage.open("hpc:/w.txt", "wb") as f:
        f.write(b"written over sftp")
    got = ssh.connect(cluster.endpoint()).run(f"cat {remote_dir}/w.txt").stdout
    assert got == "written over sftp"
    assert storage.path("hpc:/r.txt").startswith(f"sftp://{cluster.user}@{cluster.host}:{cluster.port}/")


@pytest.mark.parametrize("form", ["url", "host", "resource-name", "ftp"])
def test_the_forms_scientists_type_reach_the_same_files(registered, remote_dir, cluster, form):
    home = f"/home/{cluster.user}/{remote_dir}"
    location = {"url": f"sftp://{cluster.user}@{cluster.host}:{cluster.port}{home}",
                "host": f"{cluster.host}:{home}", "resource-name": f"testcluster:{home}", "ftp": f"ftp:{home}"}[form]
    if form == "ftp":  # ftp:/path means "on my remote resource": only one may be registered
        from cybershuttle import registry

        registry.catalog().remove("compute", "workstation")
    s = storage.register("r", location)
    assert s.protocol == "sftp" and s.host == cluster.host and s.port == cluster.port
    assert storage.open("r:/r.txt").read() == b"remote\n"


def test_unknown_host_key_is_refused(registered, remote_dir, cluster, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    from cybershuttle.registry import catalog

    catalog().add("storage", "evil", {"location": "x", "protocol": "sftp", "root": remote_dir,
                                      "host": cluster.host, "port": cluster.port, "user": cluster.user,
                                      "key": cluster.key, "known_hosts": str(empty)})
    with pytest.raises(ssh.HostKeyError, match="not in"):
        storage.ls("evil:/")


def test_copy_between_storages_both_ways_with_checksums_and_the_openssh_fast_path(registered, remote_dir, data,
                                                                                   tmp_path, cli, cluster):
    storage.register("lab", str(data))
    storage.register("hpc", f"~/{remote_dir}", resource="testcluster")
    up = storage.copy("lab:/sub", "hpc:/in/", recursive=True, checksum=True)
    assert (up.files, up.method) == (2, "openssh")
    assert sorted(up.checksums) == ["hpc:/in/sub/b.txt", "hpc:/in/sub/deep/c.bin"]
    assert up.checksums["hpc:/in/sub/deep/c.bin"] == sha(data / "sub" / "deep" / "c.bin")
    assert {e["name"] for e in storage.ls("hpc:/in/sub")} == {"b.txt", "deep"}
    back = tmp_path / "back"
    res = cli("storage", "cp", "-r", "hpc:/in/sub", f"{back}/", "--checksum", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["files"] == 2
    assert sha(back / "sub" / "deep" / "c.bin") == sha(data / "sub" / "deep" / "c.bin")
    # a directory without --recursive is refused
    refused = cli("storage", "cp", "hpc:/in", str(tmp_path / "x"))
    assert refused.code == 1 and "--recursive" in refused.err
    # no partial files are left behind
    listing = ssh.connect(cluster.endpoint()).run(f"find {remote_dir}").stdout
    assert "cybershuttle-partial" not in listing


def test_interrupted_copies_resume_from_the_partial_file_both_ways(registered, remote_dir, tmp_path, cluster):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 << 20))
    storage.register("hpc", f"~/{remote_dir}", resource="testcluster")
    conn = ssh.connect(cluster.endpoint())
    # put: what an interrupted upload leaves is the first bytes in TARGET.cybershuttle-partial.RANDOM
    conn.run(f"cat > {remote_dir}/big.bin.cybershuttle-partial.0a1b2c", stdin=big.read_bytes()[: 2 << 20])
    up = storage.copy(str(big), "hpc:/big.bin", checksum=True)
    assert up.resumed_bytes == 2 << 20 and up.method == "openssh"
    assert conn.run(f"sha256sum {remote_dir}/big.bin").stdout.split()[0] == sha(big)
    # get: the same from the other side
    local = tmp_path / "got.bin"
    (tmp_path / "got.bin.cybershuttle-partial.0a1b2c").write_bytes(big.read_bytes()[: 3 << 20])
    seen: list[tuple[int, int]] = []
    down = storage.copy("hpc:/big.bin", str(local), checksum=True, progress=lambda d, t, f: seen.append((d, t)))
    assert down.resumed_bytes == 3 << 20
    assert seen[0] == (3 << 20, 6 << 20) and seen[-1] == (6 << 20, 6 << 20)  # the bar starts where it resumed
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert sha(local) == sha(big) and not list(tmp_path.glob("got.bin.cybershuttle-partial*"))
    # the pure-Python path resumes too (local to local)
    (tmp_path / "again.bin.cybershuttle-partial.0a1b2c").write_bytes(big.read_bytes()[: 1 << 20])
    again = storage.copy(str(big), str(tmp_path / "again.bin"))
    assert (again.resumed_bytes, again.method) == (1 << 20, "fsspec")
    assert sha(tmp_path / "again.bin") == sha(big)


def test_a_killed_cli_copy_is_resumed_by_the_next_one(registered, remote_dir, tmp_path, cluster):
    import subprocess
    import sys
    import time

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(96 << 20))
    storage.register("hpc", f"~/{remote_dir}", resource="testcluster")
    cli_path = Path(sys.executable).parent / "cybershuttle"
    ssh.connect(cluster.endpoint()).sftp().put(str(src), f"{remote_dir}/src.bin")
    copier = subprocess.Popen([str(cli_path), "storage", "cp", "hpc:/src.bin", str(tmp_path / "dst.bin"),
                               "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    partial = tmp_path / "none-yet"
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < (1 << 20)):
        made = list(tmp_path.glob("dst.bin.cybershuttle-partial.*"))  # a random name, made by the copy
        partial = made[0] if made else partial
        time.sleep(0.005)
    os.killpg(copier.pid, 9)  # the CLI and its scp, as Ctrl-C then a closed terminal would
    copier.wait()
    assert not (tmp_path / "dst.bin").exists()  # never half a file under the target's name
    assert (1 << 20) <= partial.stat().st_size < src.stat().st_size
    result = storage.copy("hpc:/src.bin", str(tmp_path / "dst.bin"), checksum=True)
    assert result.resumed_bytes >= 1 << 20
    assert sha(tmp_path / "dst.bin") == sha(src)


def test_without_the_openssh_binaries_sftp_copies_and_resumes_over_the_pool(registered, remote_dir, tmp_path,
                                                                            monkeypatch, cluster):
    from cybershuttle.storage import transfer

    monkeypatch.setattr(transfer.shutil, "which", lambda name: None)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 << 20))
    storage.register("hpc", f"~/{remote_dir}", resource="testcluster")
    up = storage.copy(str(big), "hpc:/big.bin", checksum=True)
    assert (up.method, up.resumed_bytes) == ("fsspec", 0)
    (tmp_path / "got.bin.cybershuttle-partial.0a1b2c").write_bytes(big.read_bytes()[: (2 << 20) + 123])
    down = storage.copy("hpc:/big.bin", str(tmp_path / "got.bin"), checksum=True)
    assert (down.method, down.resumed_bytes) == ("fsspec", (2 << 20) + 123)
    assert sha(tmp_path / "got.bin") == sha(big)
