"""The site's JupyterHub (deploy/jupyterhub/) with two real OS users: PAM logins, each user's server
running as that user, the REST API and the event stream under each user's prefix, and the shared
PostgreSQL site catalog's ownership seen through it. The hub is started by ui-tests/start-hub.sh
(the test cluster's shared install and catalog) and stopped with SIGTERM."""
from __future__ import annotations

import os
import pwd
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
# Not the browser test's ports, so both can run at once on a developer's machine.
PORT, API_PORT, PROXY_API_PORT = 18100, 18181, 18101
HUB = f"http://127.0.0.1:{PORT}"

pytestmark = pytest.mark.timeout(240)


def _singleuser_owners() -> dict[str, str]:
    """{hub user: OS user running their server} for this module's hub, read from /proc."""
    owners = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if not any(part.endswith(b"jupyterhub-singleuser") for part in cmdline):
                continue
            env = dict(line.split(b"=", 1) for line in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in line)
            if f":{API_PORT}/".encode() not in env.get(b"JUPYTERHUB_API_URL", b""):
                continue  # another hub's (the browser test's)
            owners[env[b"JUPYTERHUB_USER"].decode()] = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
        except (OSError, KeyError):
            continue  # gone meanwhile, or not one of the hub's
    return owners


@pytest.fixture(scope="module")
def hub():
    env = {**os.environ, "CS_HUB_PORT": str(PORT), "CS_HUB_API_PORT": str(API_PORT),
           "CS_HUB_PROXY_API_PORT": str(PROXY_API_PORT)}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{HUB}/hub/api/", timeout=5)  # the port must be ours
    proc = subprocess.Popen(["bash", str(REPO / "ui-tests" / "start-hub.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{HUB}/hub/api/", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
                pytest.fail(f"the hub did not start:\n{proc.stdout.read().decode(errors='replace')[-5000:]}")
            time.sleep(0.25)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class HubUser:
    """A browser-like session of one hub user: logged in through the PAM login form, in their server."""

    def __init__(self, name: str, password: str) -> None:
        self.name = name
        self.session = requests.Session()
        self.session.get(f"{HUB}/hub/login", timeout=30)
        reply = self.session.post(f"{HUB}/hub/login", timeout=120, data={
            "username": name, "password": password, "_xsrf": self.session.cookies.get("_xsrf", path="/hub/")})
        assert reply.ok and "/hub/login" not in reply.url, f"{name} could not log in: {reply.status_code} {reply.url}"
        # The spawn runs, then the single-user server's OAuth round trip sets its cookie.
        deadline = time.monotonic() + 90
        while True:
            page = self.session.get(f"{HUB}/user/{name}/lab", timeout=30)
            if page.ok and page.url.startswith(f"{HUB}/user/{name}/lab") and "jupyter-config-data" in page.text:
                break
            assert time.monotonic() < deadline, f"{name}'s server did not start: {page.status_code} {page.url}"
            time.sleep(0.5)

    @property
    def prefix(self) -> str:
        return f"/user/{self.name}/cybershuttle/api/v1/"

    def call(self, method: str, route: str, *, server: str | None = None, **kwargs) -> requests.Response:
        """A REST call as the sidebar makes it (fetch mode cors, the XSRF header), to `server`'s API."""
        path = f"/user/{server or self.name}/cybershuttle/api/v1/{route}"
        xsrf = self.session.cookies.get("_xsrf", path=f"/user/{self.name}/") or ""
        headers = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin", "X-XSRFToken": xsrf}
        return self.session.request(method, HUB + path, headers=headers, timeout=60, allow_redirects=False, **kwargs)


@pytest.fixture(scope="module")
def users(hub, cluster):
    passwords = Path(cluster.state_dir) / "hub-passwords"
    return [HubUser(name, (passwords / name).read_text().strip()) for name in (cluster.user, cluster.other_user)]


def test_each_user_server_runs_as_that_os_user_with_the_api_under_its_prefix(users):
    owner, other = users
    assert _singleuser_owners() == {owner.name: owner.name, other.name: other.name}
    for user in users:
        index = user.call("GET", "")
        assert index.status_code == 200
        assert {r["path"] for r in index.json()["routes"]} >= {user.prefix, user.prefix + "datasets", user.prefix + "events"}
    # Nobody reaches another user's server, with or without the API's own checks.
    assert other.call("GET", "datasets", server=owner.name).status_code in (302, 403)


def test_the_event_stream_answers_under_the_prefix(users):
    _, other = users
    xsrf = other.session.cookies.get("_xsrf", path=f"/user/{other.name}/")
    # What the sidebar's EventSource sends: cookies and ?_xsrf= (no headers can be set).
    with other.session.get(f"{HUB}{other.prefix}events", params={"_xsrf": xsrf}, stream=True, timeout=30,
                           headers={"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        assert next(stream.iter_content(64)).startswith(b"retry: ")
    with other.session.get(f"{HUB}{other.prefix}events", stream=True, timeout=30,
                           headers={"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}) as refused:
        assert refused.status_code == 403  # JupyterHub's XSRF rule, which the sidebar meets


def test_a_public_dataset_is_seen_with_its_owner_and_only_its_owner_removes_it(users):
    owner, other = users
    name = f"hubtest-{secrets.token_hex(3)}"
    made = owner.call("POST", "datasets", json={"name": name, "location": "https://data.example.org/t.csv",
                                                "description": "shared by the hub test", "public": True})
    assert made.status_code == 201, made.text
    assert (made.json()["owner"], made.json()["public"]) == (owner.name, True)
    try:
        seen = other.call("GET", "datasets", params={"q": name}).json()["items"]
        assert [(d["name"], d["owner"], d["mine"]) for d in seen] == [(name, owner.name, False)]

        refused = other.call("POST", f"datasets/{name}/remove")
        assert 400 <= refused.status_code < 500 and owner.name in refused.json()["error"]
        again = other.call("POST", "datasets", json={"name": name, "location": "/tmp", "public": True})
        assert again.status_code == 409 and name in again.json()["error"]
        kept = owner.call("GET", f"datasets/{name}").json()
        assert (kept["owner"], kept["locations"]) == (owner.name, ["https://data.example.org/t.csv"])
    finally:
        removed = owner.call("POST", f"datasets/{name}/remove")
    assert removed.status_code == 200, removed.text
    assert other.call("GET", f"datasets/{name}").status_code == 404


def test_stopping_the_hub_stops_every_user_server(hub, users):
    assert _singleuser_owners()
    hub.send_signal(signal.SIGTERM)
    hub.wait(timeout=60)
    assert _singleuser_owners() == {}


@pytest.mark.parametrize("settings, message", [
    ({"CS_HUB_ENV": "/nonexistent/install"}, "no JupyterHub in /nonexistent/install"),
    ({"CS_HUB_USERS": "", "CS_HUB_GROUPS": ""}, "nobody may log in: set CS_HUB_USERS"),
    ({"CS_HUB_PROXY": "/nonexistent/chp"}, "configurable-http-proxy not found"),
])
def test_start_refuses_what_it_cannot_run_with_one_line(cluster, tmp_path, settings, message):
    env = {**os.environ, "CS_HUB_ENV": str(Path(cluster.state_dir) / "site"), "CS_HUB_USERS": cluster.user,
           "CS_HUB_STATE": str(tmp_path / "state"), **settings}
    proc = subprocess.run(["bash", str(REPO / "deploy" / "jupyterhub" / "start.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "state").exists()  # nothing made on the way out


def test_start_as_another_user_than_root_says_why_it_needs_root(cluster):
    proc = subprocess.run(["runuser", "-u", cluster.user, "--", "bash", str(REPO / "deploy" / "jupyterhub" / "start.sh")],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 1 and "must run as root" in proc.stderr and "each user's server" in proc.stderr, proc.stderr
