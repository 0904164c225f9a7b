"""Issue 16 point 2: an API dataset's credential comes from the *caller's* own setting and goes only to
hosts the caller approved; the dataset's owner chooses neither. Two real OS users, loopback HTTP servers."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from siteusers import ATTEMPT, site  # noqa: F401  (fixture)


class Api:
    """A loopback API that records every request's credential headers; /go redirects to `redirect_to`."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str | None]] = []
        self.redirect_to = ""
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                api.seen.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                 "x-api-key": self.headers.get("X-Api-Key")})
                if self.path.startswith("/go") and api.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", api.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def tokens(self) -> set[str]:
        return {v for r in self.seen for k, v in r.items() if k != "path" and v}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def apis():
    made = [Api(), Api()]
    yield made
    for api in made:
        api.close()


def _request(user, name: str, env: dict[str, str], **params: str) -> str:
    code = ATTEMPT + f"from cybershuttle import dataset\nattempt(lambda: print(dataset.request({name!r}, **{params!r}).decode()))\n"
    r = user.python(code, env=env)
    assert r.code == 0, r.err
    return r.out.strip()


def test_a_public_api_dataset_cannot_pick_the_callers_credential_or_where_it_goes(site, apis):
    good, evil = apis
    alice, bob = site.csuser, site.csother
    hub_token = "hub-" + "b0b" * 8  # bob's JupyterHub token: alice's dataset names its variable
    bob_env = {"JUPYTERHUB_API_TOKEN": hub_token, "BOB_WEATHER": "bob-weather-key"}

    r = alice.cli("dataset", "register", "--name", "weather", "--location", good.url + "/obs?day={day}",
                  "--auth-env", "JUPYTERHUB_API_TOKEN", "--public", env={"JUPYTERHUB_API_TOKEN": "alice-own"})
    assert r.code == 0, r.err
    # alice, the owner, uses her own setting (made when she registered): her variable, to her host
    assert json.loads(_request(alice, "weather", {"JUPYTERHUB_API_TOKEN": "alice-own"}, day="1").split("\n")[0])
    assert good.tokens() == {"alice-own"}

    # bob has set nothing: refused in one line naming the dataset, its owner, and what to run; nothing sent
    out = _request(bob, "weather", bob_env, day="2")
    assert out.startswith("CredentialError: API dataset 'weather' (of csuser) needs a credential") and "\n" not in out
    assert "cybershuttle dataset credential weather --env VAR" in out and good.host in out
    assert hub_token not in good.tokens() and len(good.seen) == 1

    # bob says where HIS credential comes from and which header carries it; the current host is approved
    r = bob.cli("dataset", "credential", "weather", "--env", "BOB_WEATHER", "--header", "X-API-Key", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["hosts"] == [good.host]
    assert _request(bob, "weather", bob_env, day="3").startswith('{"path": "/obs?day=3"}')
    assert good.seen[-1]["x-api-key"] == "bob-weather-key" and good.seen[-1]["authorization"] is None
    assert hub_token not in good.tokens()
    shown = bob.cli("dataset", "show", "weather").out
    assert f"header X-API-Key from $BOB_WEATHER, sent only to {good.host}" in shown
    assert "bob-weather-key" not in "".join(p.read_text(errors="replace") for p in bob.cs_home.rglob("*.json")
                                            if p.is_file())
    settings = list(bob.cs_home.rglob("credentials.json"))  # written whole, private, nothing left beside it
    assert settings and all(p.stat().st_mode & 0o777 == 0o600 for p in settings)
    assert not [p for p in bob.cs_home.rglob("*") if ".cybershuttle-partial" in p.name]

    # alice points the dataset at another host: bob's credential does not follow it
    assert alice.cli("dataset", "rm", "weather").code == 0
    assert alice.cli("dataset", "register", "--name", "weather", "--location", evil.url + "/steal?day={day}",
                     "--auth-env", "JUPYTERHUB_API_TOKEN", "--public").code == 0
    out = _request(bob, "weather", bob_env, day="4")
    assert out.startswith(f"CredentialError: API dataset 'weather' (of csuser) now sends requests to {evil.host}")
    assert f"--approve-host {evil.host}" in out and "\n" not in out
    assert evil.seen == []
    # setting his variable again (a new key, say) approves nothing new: the host stays refused until he names it
    r = bob.cli("dataset", "credential", "weather", "--env", "BOB_WEATHER", "--json")
    assert r.code == 0 and json.loads(r.out)["hosts"] == [good.host], r.err + r.out
    assert _request(bob, "weather", bob_env, day="4").startswith("CredentialError: ")
    assert evil.seen == []

    # ... nor a redirect from the approved host to another one
    assert alice.cli("dataset", "rm", "weather").code == 0
    assert alice.cli("dataset", "register", "--name", "weather", "--location", good.url + "/go?day={day}",
                     "--auth-env", "JUPYTERHUB_API_TOKEN", "--public").code == 0
    good.redirect_to = evil.url + "/stolen"
    out = _request(bob, "weather", bob_env, day="5")
    assert out.startswith(f"CredentialError: API dataset 'weather' (of csuser) redirected to {evil.host}")
    assert evil.seen == []
    # approving the second host (bob's own decision) lets the redirect through, with bob's key only
    assert bob.cli("dataset", "credential", "weather", "--approve-host", evil.host).code == 0  # his variable kept
    assert _request(bob, "weather", bob_env, day="6").startswith('{"path": "/stolen"}')
    assert evil.tokens() == {"bob-weather-key"} and evil.seen[-1]["x-api-key"] == "bob-weather-key"  # his header
    assert hub_token not in good.tokens() | evil.tokens()


def test_an_api_dataset_without_a_credential_sends_none(site, apis):
    good, _ = apis
    alice, bob = site.csuser, site.csother
    assert alice.cli("dataset", "register", "--name", "open", "--location", good.url + "/open?q={q}", "--api",
                     "--public").code == 0
    assert _request(bob, "open", {"JUPYTERHUB_API_TOKEN": "hub-secret"}, q="x").startswith('{"path": "/open?q=x"}')
    assert good.tokens() == set()
