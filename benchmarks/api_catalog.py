"""Listing and searching 10,000 datasets through the REST API of a real `jupyter server`,
against the same listing through the core API (`cybershuttle.dataset`) in this process,
in the same run.

The catalog is a throwaway CYBERSHUTTLE_HOME filled with `dataset.register` (one
transaction each). The server is a real `jupyter server` subprocess with the extension
enabled, asked over one keep-alive connection with its token, as the sidebar does. The
requests are what the sidebar sends: pages of 100 at scattered offsets (its windowed list
scrolling), searches that match a few and many entries, and unknown-word searches that
match none; every request carries the total. The whole 10,000-entry list in one reply is
timed too, and reported apart.

The same workload then runs against the site catalog on PostgreSQL (the test cluster's
server, a fresh database made by its administrator with `cybershuttle site upgrade`):
10,000 *public* datasets registered by two real OS users, csuser and csother, half each,
through the site-wide install (`CS_TEST_CLI`'s python), read by a `jupyter server` running as
root with an empty private catalog. `--no-postgres` skips it.

Prints both p50/p95 of each, then `p95_ms=<SQLite REST p95>`, `pg_p95_ms=<PostgreSQL REST p95>`
(the goal for both is p95 <= 100 ms) and, last, `ratio=<PostgreSQL REST p95 / SQLite REST p95>`.

    python benchmarks/api_catalog.py [--datasets 10000] [--requests 300] [--no-postgres]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

PAGE = 100
WORDS = ["ocean", "genome", "climate", "protein", "galaxy", "traffic", "seismic", "neuron", "soil", "ice"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(count: int, public: bool = False, start_at: int = 0, step: int = 1) -> float:
    from cybershuttle import dataset

    start = time.perf_counter()
    for i in range(start_at, count, step):
        word = WORDS[i % len(WORDS)]
        dataset.register(f"{word}-{i:05d}", f"https://data.example.org/{word}/{i}.tar.gz",
                         description=f"{word} measurements, batch {i // 100}", fields=f"t:float,{word}:float",
                         public=public)
    return time.perf_counter() - start


def workload(count: int, requests: int, seed: int = 7) -> list[dict[str, str]]:
    """The same list of queries for both sides: pages, searches that hit, searches that miss."""
    rng = random.Random(seed)
    out: list[dict[str, str]] = []
    for i in range(requests):
        kind = i % 4
        if kind in (0, 1):
            out.append({"limit": str(PAGE), "offset": str(rng.randrange(0, count - PAGE))})
        elif kind == 2:
            out.append({"q": rng.choice(WORDS), "limit": str(PAGE), "offset": str(rng.randrange(0, 5) * PAGE)})
        else:
            out.append({"q": f"batch {rng.randrange(10, max(11, count // 100))}", "limit": str(PAGE)})  # 100 hits
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--no-postgres", action="store_true", help="only the SQLite catalog")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="cs-bench-api-")
    os.environ["CYBERSHUTTLE_HOME"] = home
    os.environ.pop("CYBERSHUTTLE_SITE_CATALOG", None)
    from cybershuttle import dataset

    fill_s = fill(args.datasets)
    assert dataset.count() == args.datasets
    print(f"datasets={args.datasets} registered with dataset.register in {fill_s:.1f} s "
          f"({fill_s / args.datasets * 1000:.2f} ms each)")
    r95 = measure("SQLite", home, args)
    shutil.rmtree(home, ignore_errors=True)
    if args.no_postgres:
        print(f"p95_ms={r95:.1f}")
        return

    from postgres_site import site_database

    with site_database() as site:
        fill_s = site.fill_as_two_users(args.datasets)
        print(f"PostgreSQL: {args.datasets} public datasets registered by csuser and csother at once in {fill_s:.1f} s")
        home = tempfile.mkdtemp(prefix="cs-bench-api-pg-")
        os.environ["CYBERSHUTTLE_HOME"] = home
        os.environ["CYBERSHUTTLE_SITE_CATALOG"] = site.url
        from cybershuttle import registry

        registry._catalogs.clear()
        owners = {d.owner for d in dataset.list_all(limit=args.datasets)}
        assert dataset.count() == args.datasets and owners == {"csuser", "csother"}, owners
        pg95 = measure("PostgreSQL", home, args)
        shutil.rmtree(home, ignore_errors=True)
    print(f"p95_ms={r95:.1f}")
    print(f"pg_p95_ms={pg95:.1f}  (goal <= 100 ms: {'met' if pg95 <= 100 else 'NOT met'})")
    print(f"ratio={pg95 / r95:.2f}")


def measure(label: str, home: str, args: argparse.Namespace) -> float:
    """REST and core p50/p95 of the workload against the catalog the environment names; REST p95."""
    from cybershuttle import dataset

    port, token = free_port(), secrets.token_hex(16)
    root = tempfile.mkdtemp(prefix="cs-bench-root-")
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [str(jupyter), "server", "--no-browser", f"--port={port}", "--ip=127.0.0.1", f"--ServerApp.root_dir={root}",
           f"--IdentityProvider.token={token}", "--ServerApp.jpserver_extensions={'cybershuttle_server': True}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(Path(home) / "server.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"token {token}"}

        def get(params: dict[str, str]) -> dict:
            from urllib.parse import urlencode

            conn.request("GET", "/cybershuttle/api/v1/datasets?" + urlencode(params), headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                sys.exit(f"GET datasets {params} -> {response.status}: {body[:300]!r}")
            return json.loads(body)

        deadline = time.monotonic() + 90
        while True:
            try:
                get({"limit": "1"})
                break
            except (ConnectionError, OSError, http.client.HTTPException):
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit(f"jupyter server did not start; see {log.name}")
                conn.close()
                time.sleep(0.3)

        queries = workload(args.datasets, args.requests)

        def core(params: dict[str, str]) -> tuple[list, int]:
            q = params.get("q")
            items = dataset.list_all(q, limit=int(params["limit"]), offset=int(params.get("offset", 0)))
            return [d.to_dict() for d in items], dataset.count(q)

        # Same answers both ways (checked once per query kind), then warm both.
        hits = []
        for params in queries[:4]:
            rest = get(params)
            items, total = core(params)
            expect = json.loads(json.dumps(items))
            # REST may add what only a front end needs (e.g. "mine"); the core's fields must agree.
            got = [{k: item.get(k) for k in want} for item, want in zip(rest["items"], expect)]
            if rest["total"] != total or got != expect:
                diff = next(((a, b) for a, b in zip(got, expect) if a != b), None)
                sys.exit(f"REST and core differ for {params}: totals {rest['total']}/{total}, first differing item "
                         f"{diff}")
            hits.append(total)
        print(f"{label}: totals of the four query kinds: {hits}")
        for params in queries[:20]:
            get(params), core(params)

        rest_ms, core_ms = [], []
        for params in queries:  # alternated, so both sides see the same machine load
            rest_ms.append(timed(get, params))
            core_ms.append(timed(core, params))
        whole_rest = [timed(get, {}) for _ in range(5)]
        whole_core = [timed(lambda: [d.to_dict() for d in dataset.list_all()]) for _ in range(5)]
        assert get({})["total"] == args.datasets
    finally:
        server.terminate()
        server.wait(timeout=30)

    shutil.rmtree(root, ignore_errors=True)
    r95, c95 = percentile(rest_ms, 95), percentile(core_ms, 95)
    print(f"{label}: requests={len(queries)} (pages of {PAGE} at scattered offsets, searches with 1000 and 100 hits; "
          "totals each)")
    print(f"{label}: REST  GET /cybershuttle/api/v1/datasets  p50={statistics.median(rest_ms):.1f} ms  "
          f"p95={r95:.1f} ms  max={max(rest_ms):.1f} ms")
    print(f"{label}: core  dataset.list_all + count           p50={statistics.median(core_ms):.1f} ms  "
          f"p95={c95:.1f} ms  max={max(core_ms):.1f} ms  (REST/core p95 {r95 / c95:.2f})")
    print(f"{label}: whole list of {args.datasets} in one reply: REST median={statistics.median(whole_rest):.0f} ms, "
          f"core median={statistics.median(whole_core):.0f} ms (the sidebar pages instead)")
    print(f"{label}: goal: p95 <= 100 ms: {'met' if r95 <= 100 else 'NOT met'}")
    return r95


if __name__ == "__main__":
    main()
