"""The REST API asks the server's Authorizer (as JupyterHub deployments configure it):
GET needs "read", changes need "write", running things needs "execute" -- and "write" alone
cannot make code run: copies and mounts never land where files run code (dot-directories and
dot-files of the home or anywhere, configuration Jupyter and Python load on start), checked
where the files really land. Through a real jupyter_server, for every route it serves."""
from __future__ import annotations

import os
import shlex
import uuid
from pathlib import Path

import pytest
from jupyter_server.auth import Authorizer
from rest_api import blocking, call

from cybershuttle import ssh, storage
from cybershuttle_server.handlers import ROUTES
from cybershuttle_server.handlers.permissions import action_for

pytest_plugins = ["pytest_jupyter.jupyter_server"]

ASKED: list[tuple[str, str]] = []
ALLOWED: set[str] = set()

#: The only changes a user with "write" (and not "execute") can make. A new route must be added
#: here or given "execute": this list is reviewed, not derived.
WRITE_ROUTES = {
    ("storage/copy", "POST"),  # confined: see the copy tests below
    ("storage/{name}/mount", "POST"),  # confined: see the mount test below
    ("storage/{name}/umount", "POST"),
    ("datasets", "POST"),  # a catalog entry: name, location, description (no command)
    ("datasets/{name}/remove", "POST"),
    ("jobs/{id}/cancel", "POST"),
    ("runtimes/{name}/stop", "POST"),
    ("runtimes/{name}/subprocess", "DELETE"),  # stops the process; starting one is "execute"
}


class Permissions(Authorizer):
    """Grants the actions in ALLOWED on Cybershuttle resources (and everything else Jupyter asks)."""

    def is_authorized(self, handler, user, action, resource):
        ASKED.append((action, resource))
        return resource != "cybershuttle" or action in ALLOWED


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home with what a writer would aim at; it is also the Jupyter root, as under JupyterHub."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA mine\n")
    (home / ".bashrc").write_text("# mine\n")
    (home / "linked").symlink_to(home / ".ssh")  # a harmless-looking name for ~/.ssh
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def jp_root_dir(home):
    return home


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"cybershuttle_server": True}, "authorizer_class": Permissions}}


@pytest.fixture
def write_only():
    ALLOWED.clear()
    ALLOWED.add("write")
    ASKED.clear()
    yield
    ALLOWED.clear()


@pytest.fixture
def payload(tmp_path):
    """A local storage `lab` holding what an attacker would copy: keys, start-up files, a git hook."""
    lab = tmp_path / "lab"
    (lab / "proj" / ".git" / "hooks").mkdir(parents=True)
    (lab / "proj" / "data.csv").write_text("x\n1\n")
    (lab / "proj" / ".git" / "hooks" / "post-checkout").write_text("#!/bin/sh\ntouch /tmp/pwned\n")
    (lab / "authorized_keys").write_text("ssh-ed25519 AAAA attacker\n")
    (lab / "jupyter_server_config.py").write_text("import os; os.system('touch /tmp/pwned')\n")
    (lab / "a.csv").write_text("x\n2\n")
    storage.register("lab", str(lab))
    storage.register_home()
    return lab


async def test_every_route_asks_for_the_permission_it_needs(jp_fetch, write_only):
    seen_write: set[tuple[str, str]] = set()
    for route in ROUTES:
        for method in route.methods:
            ASKED.clear()
            action = action_for(route.handler, method)
            code, body = await call(jp_fetch, route.example(), method, timeout=30)
            assert (action, "cybershuttle") in ASKED, (route.path, method, ASKED)
            if action == "write":
                seen_write.add((route.path, method))
                # allowed through to the core, which knows no "nosuch" or misses a field
                assert code != 403 and code < 500, (route.path, method, code, body)
            else:
                assert code == 403 and f"not allowed to {action} Cybershuttle resources" in body["error"], \
                    (route.path, method, body)
                assert "\n" not in body["error"]
    assert seen_write == WRITE_ROUTES
    # what runs code needs "execute" (the routes a reviewer would worry about, named)
    for path, method in (("templates/{name}/runs", "POST"), ("templates/{name}/sweeps/{id}/rerun", "POST"),
                         ("models/{name}/run", "POST"), ("sessions/{name}/load", "POST"),
                         ("applications/{name}/load", "POST"), ("compute", "POST"),
                         ("runtimes/{name}/restart", "POST"), ("runtimes/{name}/subprocess", "POST")):
        handler = next(r.handler for r in ROUTES if r.path == path)
        assert action_for(handler, method) == "execute", (path, method)


async def test_read_and_write_still_cannot_execute(jp_fetch):
    ALLOWED.clear()
    ALLOWED.update({"read", "write"})
    ASKED.clear()
    code, body = await call(jp_fetch, "datasets")
    assert code == 200 and ("read", "cybershuttle") in ASKED
    code, body = await call(jp_fetch, "jobs/nosuch.1/cancel", "POST")
    assert code == 404  # allowed to write: the request reached the core, which knows no such job
    for path in ("templates/t/runs", "models/m/run", "sessions/s/load", "applications/a/load", "compute",
                 "runtimes/r/restart", "runtimes/r/subprocess"):
        code, body = await call(jp_fetch, path, "POST")
        assert code == 403 and "not allowed to execute" in body["error"], (path, body)
    code, body = await call(jp_fetch, "templates/t/runs")
    assert code == 404  # reading the same route is allowed


async def test_write_only_copies_never_land_where_files_run_code(jp_fetch, home, payload, write_only):
    keys = (home / ".ssh" / "authorized_keys").read_text()
    refused = {
        "home:/.ssh/authorized_keys": "'.ssh' is a dot-file or dot-directory",
        "home:/.bashrc": "'.bashrc' is a dot-file or dot-directory",
        "home:/linked/authorized_keys": "'.ssh' is a dot-file or dot-directory",  # resolved where it lands
        "home:/work/jupyter_server_config.py": "'jupyter_server_config.py' is loaded as code on start",
    }
    for dst, why in refused.items():
        src = "lab:/jupyter_server_config.py" if dst.endswith(".py") else "lab:/authorized_keys"
        code, body = await call(jp_fetch, "storage/copy", "POST", json_body={"src": src, "dst": dst})
        assert code == 403, (dst, body)
        line = body["error"]
        assert why in line and "into storage 'home' (owner " in line and "\n" not in line, line
        assert f"run `cybershuttle storage cp {src} {dst}` in a terminal" in line
    # a tree is checked file by file before anything is written: its git hook stops all of it
    code, body = await call(jp_fetch, "storage/copy", "POST",
                            json_body={"src": "lab:/proj", "dst": "home:/work/", "recursive": True})
    assert code == 403 and "'.git' is a dot-file or dot-directory" in body["error"]
    assert not (home / "work").exists()
    assert (home / ".ssh" / "authorized_keys").read_text() == keys and (home / ".bashrc").read_text() == "# mine\n"
    assert not list(home.rglob("*cybershuttle-partial*"))
    # nor can it copy keys out of a dot-directory to where it could read them (a link is followed to see)
    for src in ("home:/.ssh/authorized_keys", "home:/linked/authorized_keys"):
        code, body = await call(jp_fetch, "storage/copy", "POST", json_body={"src": src, "dst": "lab:/k"})
        assert code == 403 and f"would read {home}/.ssh/authorized_keys, and '.ssh' is a dot-file" in body["error"]
        assert "copying out of storage 'home' (owner " in body["error"]
    assert not (payload / "k").exists()
    # ... nor through a link inside a tree it copies (the tree's names have no dot; where they lead has)
    (home / "proj").mkdir()
    (home / "proj" / "keys").symlink_to(home / ".ssh")
    code, body = await call(jp_fetch, "storage/copy", "POST",
                            json_body={"src": "home:/proj", "dst": "lab:/out/", "recursive": True})
    assert code == 403 and f"would read {home}/.ssh" in body["error"], body
    assert not (payload / "out").exists()
    # and only between registered storages, inside their roots
    for dst, message in (("/etc/cron.d/x", "must be a storage path NAME:/path"), ("nosuch:/x", "nosuch"),
                         ("lab:/../../x", "leaves")):
        code, body = await call(jp_fetch, "storage/copy", "POST", json_body={"src": "lab:/a.csv", "dst": dst})
        assert code in (400, 404) and message in body["error"], (dst, body)
    # within the storage, away from dot-directories, a write-only user copies as before
    code, body = await call(jp_fetch, "storage/copy", "POST", json_body={"src": "lab:/a.csv", "dst": "home:/work/"})
    assert code == 200 and (home / "work" / "a.csv").read_text() == "x\n2\n", body
    code, body = await call(jp_fetch, "storage/copy", "POST",
                            json_body={"src": "lab:/proj/data.csv", "dst": "home:/work/proj/"})
    assert code == 200 and (home / "work" / "proj" / "data.csv").exists(), body


async def test_write_only_copies_to_a_cluster_are_checked_on_the_cluster(jp_fetch, home, payload, registered,
                                                                          cluster, write_only):
    remote = f"cs-rest-auth-{uuid.uuid4().hex[:8]}"
    conn = ssh.connect(cluster.endpoint())
    conn.run(f"mkdir -p {remote}/.ssh {remote}/work && ln -s .ssh {remote}/keys")
    try:
        await blocking(storage.register, "hpc", f"~/{remote}", resource="testcluster")
        for dst, part in (("hpc:/.ssh/authorized_keys", ".ssh"), ("hpc:/keys/authorized_keys", ".ssh")):
            code, body = await call(jp_fetch, "storage/copy", "POST",
                                    json_body={"src": "lab:/authorized_keys", "dst": dst})
            assert code == 403 and f"{part!r} is a dot-file or dot-directory" in body["error"], (dst, body)
            assert f"/home/{cluster.user}/{remote}/.ssh/authorized_keys" in body["error"]
        assert conn.run(f"ls -A {remote}/.ssh").stdout.strip() == ""
        code, body = await call(jp_fetch, "storage/copy", "POST", json_body={"src": "lab:/a.csv", "dst": "hpc:/work/"})
        assert code == 200, body
        assert conn.run(f"cat {remote}/work/a.csv").stdout == "x\n2\n"
    finally:
        conn.run(f"rm -rf {shlex.quote(remote)}")


async def test_write_only_mounts_stay_out_of_dot_directories(jp_fetch, home, payload, write_only):
    for directory in (".ipython/profile_default/startup", ".jupyter", "linked"):
        code, body = await call(jp_fetch, "storage/lab/mount", "POST", json_body={"directory": directory})
        assert code == 403 and "mounting into storage 'lab' (owner " in body["error"], (directory, body)
        assert "`cybershuttle storage mount lab DIR`" in body["error"] and "\n" not in body["error"]
    code, body = await call(jp_fetch, "storage/lab/mount", "POST", json_body={"directory": "../../elsewhere"})
    assert code == 400 and "leaves" in body["error"], body  # only within the Jupyter root
    code, body = await call(jp_fetch, "storage/lab/mount", "POST",
                            json_body={"directory": "~/.ssh", "runtime": "nosuch"})
    assert code == 403 and "'.ssh' is a dot-file or dot-directory" in body["error"], body
    assert not (home / ".ipython").exists() and not (home / ".jupyter").exists()
    assert sorted(os.listdir(home / ".ssh")) == ["authorized_keys"]
    # nor mount a storage whose files are a dot-directory (writable through the mount in the Jupyter root)
    await blocking(storage.register, "keys", str(home / "linked"))
    code, body = await call(jp_fetch, "storage/keys/mount", "POST", json_body={"directory": "mounts"})
    assert code == 403 and f"would write {home}/.ssh, and '.ssh' is a dot-file" in body["error"], body
    assert not (home / "mounts").exists()
    code, body = await call(jp_fetch, "storage/lab/mount", "POST", json_body={"directory": "mounts"})
    assert code == 200 and Path(home / "mounts" / "lab").is_symlink(), body
    code, body = await call(jp_fetch, "storage/lab/umount", "POST")
    assert code == 200, body
