"""Datasets: registration, the read-only content-addressed cache, resumable
downloads from a real local HTTP server, after-download commands, nearest
locations, privacy between two users and API datasets."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cybershuttle import dataset, registry
from siteusers import site  # noqa: F401  (fixture)
from cybershuttle.errors import AlreadyExistsError, CybershuttleError, InvalidNameError


class Server:
    """A loopback HTTP server with Range support that can misbehave on purpose."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[dict[str, str | None]] = []
        self.drop_next = 0  # responses to cut off halfway through the body
        self.refuse = False  # answer 503 (the server "went away")
        self.refuse_after_drop = False
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append({"path": self.path, "range": self.headers.get("Range"),
                                        "auth": self.headers.get("X-Api-Key")})
                if server.refuse:
                    self.send_error(503, "try later")
                    return
                path = server.root / self.path.split("?")[0].lstrip("/")
                if self.path.startswith("/api/"):
                    body = json.dumps({"path": self.path}).encode()
                    self._send(200, body, len(body))
                    return
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                wanted = self.headers.get("Range")
                if wanted and wanted.startswith("bytes="):
                    start = int(wanted[6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"v1"')
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if server.drop_next:
                    server.drop_next -= 1
                    server.refuse = server.refuse_after_drop  # set before the client sees the cut
                    half = len(data) // 2 - start
                    self.wfile.write(body[:half])
                    server.sent += half
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)
                server.sent += len(body)

            def _send(self, code: int, body: bytes, length: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = Server(root)
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def unseal_cache(cs_home):
    """Sealed cache entries are immutable for root: open them up so tmp_path can be removed."""
    yield
    from cybershuttle.dataset import cache

    for entry in (cs_home / "users").glob("*/cache/datasets/*"):
        cache.unseal(entry)


def make_archive(root: Path, name: str = "cifar.tar.gz", size: int = 0) -> tuple[Path, bytes]:
    """A .tar.gz holding cifar/README and (with `size`) a random-ish payload file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, content in (("cifar/README", b"ten classes\n"), ("cifar/data.bin", os.urandom(size))):
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    path = root / name
    path.write_bytes(buf.getvalue())
    return path, buf.getvalue()


def cache_entries(cs_home: Path) -> list[str]:
    return sorted(p.name for p in (cs_home / "users").glob("*/cache/datasets/*")
                  if p.name not in ("downloads", "refs", "sources"))


def test_tar_gz_over_http_is_unpacked_once_and_read_only(cli, server, cs_home, tmp_path):
    _, archive = make_archive(server.root, size=10_000)
    command = 'tar -xz && basename "$CYBERSHUTTLE_DOWNLOAD" > downloaded-as'
    r = cli("dataset", "register", "--name", "cifar10", "--location", f"{server.url}/cifar.tar.gz",
            "--after_download_command", command, "--description", "small images")
    assert r.code == 0, r.err
    r = cli("dataset", "load", "cifar10")
    assert r.code == 0, r.err
    path = Path(r.out.strip())
    assert (path / "cifar" / "README").read_text() == "ten classes\n"
    assert (path / "downloaded-as").read_text().strip() == "cifar.tar.gz"
    assert path.parent == next((cs_home / "users").glob("*/cache/datasets"))

    # Read-only: writing, adding or removing fails and the file is unchanged.
    with pytest.raises(PermissionError):
        (path / "cifar" / "README").write_text("changed")
    with pytest.raises(PermissionError):
        (path / "new-file").write_text("x")
    with pytest.raises(PermissionError):
        (path / "cifar" / "README").unlink()
    assert (path / "cifar" / "README").read_text() == "ten classes\n"

    # The checksum of what was downloaded is recorded and shown.
    shown = json.loads(cli("dataset", "show", "cifar10", "--json").out)
    assert shown["checksums"][f"{server.url}/cifar.tar.gz"] == {
        "sha256": hashlib.sha256(archive).hexdigest(), "size": len(archive), "file": "cifar.tar.gz"}
    assert hashlib.sha256(archive).hexdigest() in cli("dataset", "show", "cifar10").out

    # Loaded once: the next load (with --to) makes no request and links the same path.
    asked = len(server.requests)
    r = cli("dataset", "load", "cifar10", "--to", str(tmp_path / "data"))
    assert r.code == 0, r.err
    assert Path(r.out.strip()) == tmp_path / "data" / "cifar10"
    assert (tmp_path / "data" / "cifar10").resolve() == path.resolve()
    assert len(server.requests) == asked


def test_python_load_returns_the_path(server):
    path, _ = make_archive(server.root)
    dataset.register("cifar10", f"{server.url}/cifar.tar.gz")
    loaded = dataset.load("cifar10")
    assert Path(loaded).read_bytes() == path.read_bytes()
    assert Path(loaded).name == "cifar.tar.gz"
    assert dataset.load("cifar10") == loaded


def test_interrupted_download_resumes_with_range(server, cs_home):
    path, archive = make_archive(server.root, size=400_000)
    server.drop_next = 1  # the first response stops halfway and the connection is closed
    dataset.register("big", f"{server.url}/cifar.tar.gz")
    seen: list[int] = []
    loaded = dataset.load("big", progress=lambda done, total: seen.append(done))
    assert Path(loaded).read_bytes() == archive
    ranges = [r["range"] for r in server.requests]
    assert ranges == [None, f"bytes={len(archive) // 2}-"]
    assert server.sent == len(archive)  # nothing was sent twice
    assert seen[-1] == len(archive)


def test_failed_download_keeps_the_partial_file_and_the_next_load_resumes(server, cs_home):
    _, archive = make_archive(server.root, size=400_000)
    dataset.register("big", f"{server.url}/cifar.tar.gz")
    server.drop_next = 1
    server.refuse_after_drop = True  # the server goes away right after cutting the first response
    with pytest.raises(CybershuttleError, match="HTTP 503"):
        dataset.load("big")
    partial = list((cs_home / "users").glob("*/cache/datasets/downloads/*.partial"))
    assert [p.stat().st_size for p in partial] == [len(archive) // 2]
    assert cache_entries(cs_home) == []

    server.refuse = False
    loaded = dataset.load("big")
    assert Path(loaded).read_bytes() == archive
    assert server.requests[-1]["range"] == f"bytes={len(archive) // 2}-"
    assert not list((cs_home / "users").glob("*/cache/datasets/downloads/*.partial"))


def test_failing_command_leaves_no_half_made_dataset_and_says_why(cli, server, cs_home):
    make_archive(server.root)
    cli("dataset", "register", "--name", "broken", "--location", f"{server.url}/cifar.tar.gz",
        "--after-download-command", 'tar -xz && echo "unpacked, then: disk quota exceeded" >&2 && exit 4')
    r = cli("dataset", "load", "broken")
    assert r.code == 1
    assert "exited with status 4" in r.err and "disk quota exceeded" in r.err and "nothing was cached" in r.err
    cache_root = next((cs_home / "users").glob("*/cache/datasets"))
    assert not list(cache_root.glob(".tmp-*"))
    # only the downloaded archive is cached (so a fixed command needs no new download); no unpacked tree
    (blob,) = cache_entries(cs_home)
    assert [p.name for p in (cache_root / blob).iterdir()] == ["cifar.tar.gz"]


def test_local_path_is_used_in_place_and_the_nearest_location_wins(cli, server, cs_home, tmp_path):
    make_archive(server.root)
    local = tmp_path / "local-copy"
    local.mkdir()
    (local / "README").write_text("local\n")
    dataset.register("cifar10", f"{server.url}/cifar.tar.gz")
    dataset.add_location("cifar10", str(local))
    with pytest.raises(CybershuttleError, match="already a location"):
        dataset.add_location("cifar10", str(local))

    # This host first, although the URL was registered first; nothing downloaded or copied.
    assert [w["tier"] for w in dataset.where("cifar10")] == [0, 2]
    assert dataset.load("cifar10") == str(local)
    assert server.requests == [] and cache_entries(cs_home) == []

    # Nearest copy gone: the next one is used.
    (local / "README").unlink()
    local.rmdir()
    loaded = dataset.load("cifar10")
    assert Path(loaded).parent.parent.name == "datasets" and len(server.requests) == 1

    shown = json.loads(cli("dataset", "show", "cifar10", "--json").out)
    assert [n["location"] for n in shown["nearest"]] == [str(local), f"{server.url}/cifar.tar.gz"]


def test_public_datasets_are_shared_private_ones_are_not(server, site):
    make_archive(server.root)
    alice, bob = site.csuser.cli, site.csother.cli
    assert alice("dataset", "register", "--name", "shared", "--location", f"{server.url}/cifar.tar.gz",
                 "--public").code == 0
    assert alice("dataset", "register", "--name", "mine", "--location", f"{server.url}/cifar.tar.gz").code == 0

    listed = {d["name"]: d for d in json.loads(bob("dataset", "list", "--json").out)}
    assert list(listed) == ["shared"] and listed["shared"]["owner"] == "csuser" and listed["shared"]["public"]
    r = bob("dataset", "show", "mine")
    assert r.code == 1 and "no dataset named 'mine'" in r.err and "shared" in r.err
    assert bob("dataset", "load", "mine").code == 1
    r = bob("dataset", "load", "shared")
    assert r.code == 0 and "/users/csother/" in r.out  # bob's own cache
    r = bob("dataset", "rm", "shared")
    assert r.code == 1 and "belongs to csuser" in r.err
    assert [d["name"] for d in json.loads(alice("dataset", "list", "--json").out)] == ["mine", "shared"]
    assert alice("dataset", "rm", "mine").code == 0


def test_api_dataset_stores_names_never_the_credential(cli, server, cs_home, monkeypatch):
    secret = "tok-" + os.urandom(8).hex()
    r = cli("dataset", "register", "--name", "weather", "--location", server.url + "/api/obs?day={day}",
            "--auth-header", "X-API-Key", "--auth-env", "WEATHER_TOKEN", "--fields", "day:date,temp:float",
            env={"WEATHER_TOKEN": secret})
    assert r.code == 0, r.err
    monkeypatch.setenv("WEATHER_TOKEN", secret)
    body = json.loads(dataset.request("weather", day="2024-01-02"))
    assert body == {"path": "/api/obs?day=2024-01-02"}
    assert server.requests[-1]["auth"] == secret

    registry._catalogs.clear()  # close nothing, just make sure the files are what is read
    stored = b"".join(p.read_bytes() for p in cs_home.rglob("*") if p.is_file())
    assert secret.encode() not in stored
    shown = cli("dataset", "show", "weather").out
    assert "X-API-Key" in shown and "$WEATHER_TOKEN" in shown and secret not in shown
    assert "day: date, temp: float" in shown

    monkeypatch.delenv("WEATHER_TOKEN")
    with pytest.raises(CybershuttleError, match="WEATHER_TOKEN: set it"):
        dataset.request("weather", day="x")
    with pytest.raises(CybershuttleError, match="missing: day"):
        dataset.api_url("weather")
    with pytest.raises(CybershuttleError, match="API dataset"):
        dataset.load("weather")
    r = cli("dataset", "register", "--name", "leaky", "--location", f"{server.url}/api/{secret}",
            "--auth-env", "WEATHER_TOKEN", env={"WEATHER_TOKEN": secret})
    assert r.code != 0 and "contains the credential" in r.err


def test_fields_are_recorded_and_shown(cli, tmp_path):
    r = cli("dataset", "register", "--name", "table", "--location", str(tmp_path), "--fields",
            "image:tensor[3,32,32],label:int")
    assert r.code == 0, r.err
    assert dataset.get("table").fields == [{"name": "image", "type": "tensor[3,32,32]"},
                                           {"name": "label", "type": "int"}]
    assert "image: tensor[3,32,32], label: int" in cli("dataset", "show", "table").out
    for bad, message in (("image", "has no type"), ("a:int,a:str", "given twice"), ("1x:int", "not a valid field")):
        r = cli("dataset", "register", "--name", "t2", "--location", str(tmp_path), "--fields", bad)
        assert r.code == 2 and message in r.err, r.err


def test_bad_names_and_locations_are_clear_errors(cli, tmp_path):
    cases = [
        (["--name", "bad name", "--location", str(tmp_path)], "not a valid dataset name"),
        (["--name", "../x", "--location", str(tmp_path)], "not a valid dataset name"),
        (["--name", "d", "--location", "ftp://host/x"], "register a storage first"),
        (["--name", "d", "--location", "http:///nohost"], "has no host name"),
        (["--name", "d", "--location", "http://host:99999/x"], "not a valid URL"),
        (["--name", "d", "--location", "https://user:pw@host/x"], "carries credentials"),
        (["--name", "d", "--location", str(tmp_path / "missing")], "no file or directory"),
        (["--name", "d", "--location", "nosuchstorage:/x"], "no storage named 'nosuchstorage'"),
        (["--name", "d", "--location", str(tmp_path), "--after-download-command", " "], "command is empty"),
    ]
    for args, message in cases:
        r = cli("dataset", "register", *args)
        assert r.code in (1, 2) and message in r.err, (args, r.err)
        assert "Traceback" not in r.err
    assert json.loads(cli("dataset", "list", "--json").out) == []
    assert "no dataset named 'ghost'" in cli("dataset", "load", "ghost").err
    with pytest.raises(InvalidNameError):
        dataset.get("a/b")
    dataset.register("d", str(tmp_path))
    with pytest.raises(AlreadyExistsError):
        dataset.register("d", str(tmp_path))


def test_unreachable_url_fails_fast_with_the_reason(server):
    dataset.register("gone", f"{server.url}/missing.tar.gz")
    with pytest.raises(CybershuttleError, match="HTTP 404"):
        dataset.load("gone")
    port = server.httpd.server_address[1]
    server.close()
    dataset.register("down", f"http://127.0.0.1:{port}/x.tar.gz")
    started = time.monotonic()
    with pytest.raises(CybershuttleError, match="refused"):
        dataset.load("down")
    assert time.monotonic() - started < 5
    server.close = lambda: None  # already closed


def test_rm_removes_the_entry_and_its_unshared_cache(cli, server, cs_home):
    make_archive(server.root)
    dataset.register("a", f"{server.url}/cifar.tar.gz", after_download_command="tar -xz")
    dataset.register("b", f"{server.url}/cifar.tar.gz")
    dataset.load("a")
    dataset.load("b")
    assert len(cache_entries(cs_home)) == 2  # the archive and its unpacked tree
    assert cli("dataset", "rm", "a").code == 0
    assert len(cache_entries(cs_home)) == 1  # b still uses the archive
    assert cli("dataset", "rm", "b").code == 0
    assert cache_entries(cs_home) == []
    assert "no dataset named 'a'" in cli("dataset", "show", "a").err


def test_listing_pages_and_counts_ten_thousand_datasets(cs_home):
    cat = registry.catalog()
    now = time.time()
    with cat.public._write() as db:  # bulk insert: 10,000 registrations one by one take too long for a test
        db.executemany("INSERT INTO entries VALUES ('dataset',?,?,?,?,?)",
                       [(f"ds{i:05d}", "alice", json.dumps({"locations": [f"https://h/{i}"],
                                                             "description": f"set {i}"}), now, now)
                        for i in range(10_000)])
    dataset.register("zz-mine", str(cs_home))
    everything = [d.name for d in dataset.list_all()]
    assert len(everything) == dataset.count() == 10_001
    started = time.perf_counter()
    for offset in (0, 5_000, 9_980):
        page = dataset.list_all(limit=50, offset=offset)
        assert [d.name for d in page] == everything[offset:offset + 50]
    assert dataset.count("set 12") == len(dataset.list_all("set 12")) == 111
    assert [d.name for d in dataset.list_all("set 12", limit=5, offset=100)] == \
        [d.name for d in dataset.list_all("set 12")][100:105]
    assert time.perf_counter() - started < 1.0  # measured ~15 ms a page; generous for a shared machine


def test_changed_content_is_refused_against_the_recorded_checksum(server, site):
    path, _ = make_archive(server.root)
    alice = site.csuser.python(
        "from cybershuttle import dataset\n"
        f"dataset.register('shared', {server.url + '/cifar.tar.gz'!r}, public=True)\n"
        "dataset.load('shared')\n")  # alice's load records the checksum
    assert alice.code == 0, alice.err
    path.write_bytes(b"not the same archive")
    bob = site.csother.cli("dataset", "load", "shared")
    assert bob.code == 1 and "does not match the checksum recorded" in bob.err
    assert not list(site.csother.cs_home.glob("users/csother/cache/datasets/*/cifar.tar.gz"))