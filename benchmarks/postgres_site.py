"""A throwaway site catalog on the test cluster's PostgreSQL, for benchmarks: a fresh database
made by the administrator (postgres) with `cybershuttle site upgrade`, filled by the real OS
users csuser and csother through the site-wide install (CS_TEST_CLI), dropped afterwards."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from _cluster import cluster_env

USERS = ("csuser", "csother")


@dataclass
class SiteDatabase:
    url: str
    cli: str
    base: Path

    def run_as(self, user: str, code: str) -> subprocess.Popen:
        """Python `code` run by `user` with the site install, against this catalog."""
        home = self.base / user
        home.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(home, user, user)
        python = str(Path(self.cli).parent / "python")
        return subprocess.Popen(["runuser", "-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin", f"HOME=/home/{user}",
                                 f"CYBERSHUTTLE_HOME={home}", f"CYBERSHUTTLE_SITE_CATALOG={self.url}", python, "-c",
                                 code], cwd=str(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def fill_as_two_users(self, count: int) -> float:
        """`count` public datasets, the even ones by csuser and the odd ones by csother, both at once."""
        import inspect

        from api_catalog import WORDS, fill

        start = time.perf_counter()
        procs = [self.run_as(user, f"import time\nWORDS = {WORDS!r}\n{inspect.getsource(fill)}\n"
                                   f"fill({count}, public=True, start_at={k}, step={len(USERS)})\n")
                 for k, user in enumerate(USERS)]
        for p in procs:
            _, err = p.communicate()
            if p.returncode:
                raise SystemExit(f"filling the PostgreSQL site catalog failed: {err.strip()[-500:]}")
        return time.perf_counter() - start


@contextmanager
def site_database() -> Iterator[SiteDatabase]:
    env = cluster_env()
    if "CS_TEST_SITE_CATALOG" not in env:
        raise SystemExit("the test cluster has no PostgreSQL: run `bash tests/cluster/cluster.sh start`")
    sock, cli = env["CS_TEST_PG_SOCKET_DIR"], env["CS_TEST_CLI"]
    db = "cs_bench_" + uuid.uuid4().hex[:10]
    url = f"postgresql:///{db}?host={sock}"
    _admin(sock, "postgres", f"CREATE DATABASE {db} OWNER postgres")
    base = Path(tempfile.mkdtemp(prefix="cs-bench-site-", dir="/var/tmp"))
    base.chmod(0o755)
    try:
        _admin(sock, db, f"REVOKE CONNECT ON DATABASE {db} FROM PUBLIC; "
                         f"GRANT CONNECT ON DATABASE {db} TO csuser, csother, root")
        subprocess.run(["runuser", "-u", "postgres", "--", "env", "-i", "PATH=/usr/bin:/bin",
                        f"CYBERSHUTTLE_SITE_CATALOG={url}", cli, "site", "upgrade"], cwd="/", check=True,
                       capture_output=True)
        yield SiteDatabase(url, cli, base)
    finally:
        _admin(sock, "postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        shutil.rmtree(base, ignore_errors=True)


def _admin(sock: str, db: str, sql: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", sock,
                    "-d", db, "-c", sql], cwd="/", check=True, capture_output=True)
