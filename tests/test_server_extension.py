"""The Jupyter server extension loads, lists its routes, and every route refuses strangers:
no credentials at all, or a browser cookie session whose POST lacks the XSRF token."""
from __future__ import annotations

import json
from http.cookies import SimpleCookie

import pytest
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]

API = ("cybershuttle", "api", "v1")


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"cybershuttle_server": True}}}


def _requests():
    """(route, method, concrete path) for every method of every route."""
    from cybershuttle_server.handlers import ROUTES

    return [(r, m, r.example()) for r in ROUTES for m in r.methods]


async def _status(jp_fetch, path, method="GET", headers=None, body=None, params=None):
    kwargs = {"body": body if body is not None else "{}"} if method in ("POST", "PUT", "PATCH") else {}
    try:
        response = await jp_fetch(*API, path, method=method, headers=headers or {}, params=params,
                                  request_timeout=30, **kwargs)
    except HTTPClientError as exc:
        return exc.code, exc.response.body if exc.response is not None else b""
    return response.code, response.body


async def test_index_lists_every_route(jp_fetch, jp_base_url):
    from cybershuttle_server.handlers import ROUTES

    response = await jp_fetch(*API, "")
    body = json.loads(response.body)
    paths = [r["path"] for r in body["routes"]]
    assert paths[0] == jp_base_url + "cybershuttle/api/v1/"
    assert paths == [jp_base_url + "cybershuttle/api/v1/" + r.path for r in ROUTES]
    assert {"compute", "compute/{name}", "jobs/{id}/cancel", "runtimes/{name}/stop", "events", "search"} <= \
        {r.path for r in ROUTES}
    assert all(r["help"] and r["methods"] for r in body["routes"]) and body["version"]


def test_the_route_list_declares_every_method_its_handlers_serve():
    """So walking ROUTES below walks every method a stranger could call."""
    from cybershuttle_server.handlers import ROUTES, CybershuttleHandler

    verbs = ("get", "post", "put", "patch", "delete", "head", "options")
    for route in ROUTES:
        served = {v.upper() for v in verbs if getattr(route.handler, v) is not getattr(CybershuttleHandler, v)}
        assert served == set(route.methods), (route.path, served)


async def test_every_route_refuses_an_unauthenticated_request(jp_fetch):
    requests = _requests()
    assert len(requests) >= 30
    for route, method, path in requests:
        code, body = await _status(jp_fetch, path, method, headers={"Authorization": ""})
        assert code in (401, 403), (route.path, method, code, body)
    # Nothing behind them ran: the registration POST did not register anything.
    from cybershuttle import compute

    assert compute.list_all() == []


async def test_a_cross_site_post_without_the_xsrf_token_is_refused(jp_fetch):
    """A browser holding the login cookie is tricked into POSTing: jupyter_server's XSRF check must stop it.

    The same cookie session *with* the token gets through (so the refusal is the XSRF check's,
    not a broken route), which makes the test able to fail.
    """
    # A token-authenticated request makes the server set the login cookie, as a browser login does.
    first = await jp_fetch(*API, "")
    jar = SimpleCookie()
    for header in first.headers.get_list("Set-Cookie"):
        jar.load(header)
    login = [name for name in jar if name.startswith("username-")]
    assert login, first.headers.get_list("Set-Cookie")
    xsrf = "2|00000000|" + "ab" * 16 + "|1700000000"  # tornado's versioned format; any value the cookie also holds
    cookies = "; ".join([f"{name}={jar[name].value}" for name in login] + [f"_xsrf={xsrf}"])
    session = {"Authorization": "", "Cookie": cookies}

    code, _ = await _status(jp_fetch, "", "GET", headers=session)
    assert code == 200, "the cookie session must be a valid login for the test to mean anything"
    posts = [(route, path) for route, method, path in _requests() if method == "POST"]
    assert posts
    for route, path in posts:
        code, body = await _status(jp_fetch, path, "POST", headers=session)
        assert code == 403 and b"_xsrf" in body, (route.path, code, body)
        code, body = await _status(jp_fetch, path, "POST", headers={**session, "X-XSRFToken": xsrf})
        assert code not in (401, 403), (route.path, code, body)
        assert "error" in json.loads(body) or code < 300, (route.path, code, body)
    from cybershuttle import compute

    assert compute.list_all() == []


async def test_errors_are_json_with_a_4xx_code_and_say_what_to_do(jp_fetch):
    code, body = await _status(jp_fetch, "compute/nosuch")
    assert code == 404 and "no compute named 'nosuch'" in json.loads(body)["error"]
    code, body = await _status(jp_fetch, "jobs", "GET")
    assert code == 200
    code, body = await _status(jp_fetch, "jobs", params={"limit": "x"})
    assert code == 400 and "limit" in json.loads(body)["error"]
    code, body = await _status(jp_fetch, "compute", "POST", body="{not json", headers={"Content-Type": "application/json"})
    assert code == 400 and "not valid JSON" in json.loads(body)["error"]
    code, body = await _status(jp_fetch, "search")
    assert code == 400 and "?q=" in json.loads(body)["error"]


def test_extension_is_enabled_by_the_installed_config():
    import subprocess
    import sys
    from pathlib import Path

    jupyter = Path(sys.executable).parent / "jupyter"
    proc = subprocess.run([str(jupyter), "server", "extension", "list"], capture_output=True, text=True)
    out = proc.stderr + proc.stdout
    line = next(ln for ln in out.splitlines() if "cybershuttle_server" in ln and "enabled" in ln)
    assert "enabled" in line
