"""REST routes for compute resources, jobs, runtimes and the event stream, against the
real loopback sshd and Slurm through a real jupyter_server (pytest-jupyter)."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time

import pytest
from rest_api import SERVER_CONFIG, EventStream, blocking, call

from cybershuttle import compute, runtime
from cybershuttle.errors import CybershuttleError, NotFoundError

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


@pytest.fixture
def events(jp_fetch, jp_http_port, jp_base_url, jp_serverapp):  # jp_fetch: the HTTP server is listening
    """Open `GET /events` streams; closed after the test."""
    streams: list[EventStream] = []

    async def open_stream() -> EventStream:
        token = jp_serverapp.identity_provider.token
        stream = await EventStream(jp_http_port, jp_base_url + "cybershuttle/api/v1/events", token).open()
        streams.append(stream)
        return stream

    yield open_stream
    for stream in streams:
        stream.close()


@pytest.fixture
def jobs_to_cancel():
    ids: list[str] = []
    yield ids
    for job_id in ids:
        try:
            if not compute.status(job_id).final:
                compute.cancel(job_id)
        except CybershuttleError:
            pass


def _form(cluster, **overrides):
    form = {"name": "webcluster", "kind": "slurm", "host": cluster.host, "port": str(cluster.port),
            "user": cluster.user, "key_file": cluster.key, "known_hosts": cluster.known_hosts,
            "partition": cluster.partition, "account": "", "qos": ""}
    form.update(overrides)
    return form


# -- registration (the web form) ----------------------------------------------
async def test_check_only_runs_every_check_and_saves_nothing_then_the_form_registers(jp_fetch, cluster):
    code, body = await call(jp_fetch, "compute", "POST", params={"check_only": "1"}, form=_form(cluster))
    assert code == 200 and body["saved"] is False and body["check_only"] is True and body["ok"] is True
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["connect"]["ok"] and "matches known_hosts" in checks["connect"]["detail"]
    assert checks["slurm"]["ok"] and "Slurm 22." in checks["slurm"]["detail"]
    assert checks["partition"]["ok"] and {"name", "ok", "required", "detail"} <= set(checks["python"])
    with pytest.raises(NotFoundError):
        await blocking(compute.get, "webcluster")

    code, body = await call(jp_fetch, "compute", "POST", form=_form(cluster))
    assert code == 201 and body["saved"] is True
    assert (await blocking(compute.get, "webcluster")).partition == cluster.partition

    code, body = await call(jp_fetch, "compute")
    assert code == 200 and body["total"] == 1
    [item] = body["items"]
    assert item["name"] == "webcluster" and item["kind"] == "slurm" and item["host"] == cluster.host
    assert item["status"]["reachable"] is True and item["status"]["nodes"] >= 1
    code, body = await call(jp_fetch, "compute", params={"status": "0", "q": "nomatch"})
    assert code == 200 and body == {"items": [], "total": 0}

    code, body = await call(jp_fetch, "compute/webcluster")
    assert code == 200 and body["status"]["reachable"] and body["runtimes"] == []
    assert {p["name"] for p in body["facts"]["partitions"]} >= {"debug", "short"}

    code, body = await call(jp_fetch, "compute", "POST", form=_form(cluster))
    assert code == 400 and "already exists" in body["error"]


async def test_failed_checks_are_reported_one_by_one_and_nothing_is_saved(jp_fetch, cluster, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    code, body = await call(jp_fetch, "compute", "POST", form=_form(cluster, known_hosts=str(empty)))
    assert code == 200 and body["saved"] is False and body["ok"] is False
    assert body["checks"][0]["name"] == "connect" and not body["checks"][0]["ok"]
    assert "ssh-keyscan" in body["checks"][0]["detail"]

    code, body = await call(jp_fetch, "compute", "POST", json_body={**_form(cluster), "partition": "nosuch"})
    failed = [c for c in body["checks"] if not c["ok"] and c["required"]]
    assert code == 200 and not body["saved"] and [c["name"] for c in failed] == ["partition"]
    assert "debug, short" in failed[0]["detail"]

    locked = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(locked)], check=True)
    code, body = await call(jp_fetch, "compute", "POST", form=_form(cluster, key_file=str(locked)))
    assert code == 200 and not body["saved"] and not body["checks"][0]["ok"]
    assert "cannot answer from the browser" in body["checks"][0]["detail"]

    code, body = await call(jp_fetch, "compute", "POST", form=_form(cluster, kind="cloud"))
    assert code == 400 and "kind must be one of local, ssh, slurm" in body["error"]
    code, body = await call(jp_fetch, "compute", "POST", form=_form(cluster, port="twenty-two"))
    assert code == 400 and "port must be a number" in body["error"]
    code, body = await call(jp_fetch, "compute", "POST", form=_form(cluster, name="bad name"))
    assert code == 400 and "not a valid compute resource name" in body["error"]
    code, body = await call(jp_fetch, "compute", "POST", form=_form(cluster, key_file="/nonexistent/key"))
    assert code == 400 and "/nonexistent/key" in body["error"]
    assert await blocking(compute.list_all) == []


# -- one slow cluster does not freeze the server -------------------------------
async def test_a_cluster_that_never_answers_does_not_block_other_requests(jp_fetch, cluster):
    """An SSH server that accepts and then says nothing: its request waits, every other one is answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    from cybershuttle.registry import catalog

    catalog().add("compute", "silent", {"kind": "ssh", "host": "127.0.0.1", "port": listener.getsockname()[1],
                                        "user": cluster.user, "key": cluster.key, "known_hosts": cluster.known_hosts})
    try:
        slow = asyncio.ensure_future(call(jp_fetch, "compute/silent"))
        while not accepted:
            await asyncio.sleep(0.05)
        for _ in range(5):
            start = time.monotonic()
            code, _ = await call(jp_fetch, "jobs")
            assert code == 200 and time.monotonic() - start < 3.0  # blocked, it would wait out the 15 s SSH timeout
        assert not slow.done()
    finally:
        for sock in accepted:
            sock.close()
        listener.close()
    code, body = await slow
    assert code == 200 and body["status"]["reachable"] is False and body["status"]["error"]


# -- jobs and events ------------------------------------------------------------
async def test_job_state_changes_arrive_as_events_logs_and_cancel(jp_fetch, events, registered, jobs_to_cancel,
                                                                  jp_serverapp):
    stream = await events()
    assert stream.headers["content-type"].startswith("text/event-stream")
    job = await blocking(compute.execute, "echo hello-from-rest; sleep 120", "testcluster", cpus=1, walltime=3)
    jobs_to_cancel.append(job.id)

    first = await stream.wait_for(lambda e: e.get("id") == job.id, 30)
    assert first["kind"] == "job" and first["resource"] == "testcluster" and not first["final"]
    # Pending while other people's jobs hold the node's two CPUs: that change arrives too.
    running = await stream.wait_for(lambda e: e.get("id") == job.id and e["state"] == "RUNNING", 180)
    assert not running["final"]

    code, body = await call(jp_fetch, "jobs", params={"q": job.id})
    assert code == 200 and [j["id"] for j in body["items"]] == [job.id] and body["items"][0]["state"] == "RUNNING"
    code, body = await call(jp_fetch, f"jobs/{job.id}")
    assert code == 200 and body["state"] == "RUNNING" and body["native_id"] == job.native_id

    deadline = time.monotonic() + 20
    while True:
        code, body = await call(jp_fetch, f"jobs/{job.id}/logs")
        if "hello-from-rest" in body.get("log", "") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert code == 200 and "hello-from-rest" in body["log"]
    code, tail = await call(jp_fetch, f"jobs/{job.id}/logs", params={"offset": str(body["size"])})
    assert code == 200 and tail["log"] == "" and tail["offset"] == body["size"]

    code, body = await call(jp_fetch, f"jobs/{job.id}/cancel", "POST")
    assert code == 200 and body["state"] == "CANCELLED" and body["id"] == job.id
    ended = await stream.wait_for(lambda e: e.get("id") == job.id and e["state"] == "CANCELLED", 30)
    assert ended["final"] is True

    code, body = await call(jp_fetch, f"jobs/{job.id}/cancel", "POST")
    assert code == 400 and "already ended" in body["error"]
    code, body = await call(jp_fetch, "jobs", params={"active": "1"})
    assert job.id not in [j["id"] for j in body["items"]]
    code, body = await call(jp_fetch, "jobs/nosuch.1/logs")
    assert code == 404 and "compute jobs --all" in body["error"]

    # Nobody listens any more: the watcher stops polling.
    watcher = jp_serverapp.web_app.settings["cybershuttle_watcher"]
    stream.close()
    deadline = time.monotonic() + 10
    while (watcher.subscribers or watcher.running) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert watcher.subscribers == 0 and not watcher.running
    polls = watcher.polls
    await asyncio.sleep(1.0)
    assert watcher.polls == polls


async def test_the_event_stream_takes_the_token_in_the_url_as_eventsource_sends_it(jp_fetch, jp_http_port,
                                                                                  jp_base_url, jp_serverapp):
    path = jp_base_url + "cybershuttle/api/v1/events"
    stream = await EventStream(jp_http_port, f"{path}?token={jp_serverapp.identity_provider.token}", "").open()
    try:
        assert stream.headers["content-type"].startswith("text/event-stream")
    finally:
        stream.close()
    with pytest.raises(AssertionError, match="403"):
        await EventStream(jp_http_port, f"{path}?token=wrong", "").open()


async def test_a_subscriber_first_gets_the_active_jobs_then_only_changes(jp_fetch, events, registered,
                                                                          jobs_to_cancel):
    job = await blocking(compute.execute, "sleep 120", "local")
    jobs_to_cancel.append(job.id)
    first = await events()
    snapshot = await first.wait_for(lambda e: e.get("id") == job.id, 15)
    assert snapshot["state"] == "RUNNING"
    second = await events()  # joins a watcher that is already running: gets the snapshot from memory
    assert (await second.wait_for(lambda e: e.get("id") == job.id, 5))["state"] == "RUNNING"
    await blocking(compute.cancel, job.id)
    for stream in (first, second):
        ended = await stream.wait_for(lambda e: e.get("id") == job.id and e["final"], 15)
        assert ended["state"] != "RUNNING"
    assert [e["state"] for e in first.events if e.get("id") == job.id].count("RUNNING") == 1


async def test_runtimes_listed_their_death_pushed_and_stopped(jp_fetch, events, registered, jobs_to_cancel):
    rt, _ = await blocking(runtime.request, "webrt", "testcluster", cpus=1, walltime=5)
    jobs_to_cancel.append(rt.job_id)
    try:
        await blocking(runtime.wait, "webrt", timeout=120)
        code, body = await call(jp_fetch, "runtimes")
        assert code == 200 and [(r["name"], r["state"]) for r in body["items"]] == [("webrt", "READY")]
        code, body = await call(jp_fetch, "compute/testcluster", params={})
        assert [r["name"] for r in body["runtimes"]] == ["webrt"]

        stream = await events()
        await stream.wait_for(lambda e: e.get("kind") == "runtime" and e["state"] == "READY", 15)
        await blocking(compute.cancel, rt.job_id)  # the job ends behind the runtime's back
        dead = await stream.wait_for(lambda e: e.get("kind") == "runtime" and e["state"] == "DEAD", 30)
        assert dead["name"] == "webrt" and rt.job_id in dead["message"]

        code, body = await call(jp_fetch, "runtimes/webrt/stop", "POST")
        assert code == 200 and body["state"] == "STOPPED"
        await stream.wait_for(lambda e: e.get("kind") == "runtime" and e["state"] == "STOPPED", 15)
        code, body = await call(jp_fetch, "runtimes/nosuch/stop", "POST")
        assert code == 404 and "request it first" in body["error"]
    finally:
        if (await blocking(runtime.get, "webrt")).state in runtime.LIVE_STATES:
            await blocking(runtime.stop, "webrt")


async def test_search_finds_resources_by_name_kind_and_host(jp_fetch, registered):
    code, body = await call(jp_fetch, "search", params={"q": "testcl"})
    assert code == 200 and {"kind": "compute", "name": "testcluster", "detail": "slurm 127.0.0.1"} in body["items"]
    code, body = await call(jp_fetch, "search", params={"q": "this machine"})
    assert [i["name"] for i in body["items"] if i["kind"] == "compute"] == ["local"]


async def test_ssh_prompts_in_the_servers_worker_threads_are_refused_not_asked_on_a_terminal(cluster, tmp_path):
    """Every blocking call of the API (status, jobs, events), not only registration, refuses a passphrase
    prompt: a server started from a terminal must not ask there and hold a worker thread."""
    from cybershuttle import ssh
    from cybershuttle.errors import SSHError
    from cybershuttle_server.handlers.base import run_blocking

    locked = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(locked)], check=True)
    endpoint = cluster.endpoint(key=str(locked))
    with pytest.raises(SSHError, match="cannot answer from the browser"):
        await run_blocking(ssh.connect, endpoint)
    with pytest.raises(SSHError, match="no terminal to answer it"):  # outside the pool: the caller's own way
        ssh.connect(endpoint)


async def test_the_state_vocabulary_is_served_for_the_sidebar(jp_fetch):
    code, body = await call(jp_fetch, "states")
    assert code == 200
    from cybershuttle.compute import states

    assert body == states.vocabulary()
    final = set(body["final"])
    assert {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "STOPPED", "DEAD"} <= final
    assert not final & {"PENDING", "RUNNING", "REQUESTED", "READY", "UNKNOWN"}
