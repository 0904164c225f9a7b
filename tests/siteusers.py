"""Two real OS users (csuser, csother) sharing a site catalog on the test cluster's PostgreSQL.

Each user runs the site-wide install (`CS_TEST_CLI`, a venv every user can read) as
themselves through `runuser`, with a Cybershuttle home of their own and a clean
environment; the site catalog is a fresh database per test, made by the postgres
administrator with the project's own migration (`cybershuttle site upgrade`).
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLUSTER_SH = REPO / "tests" / "cluster" / "cluster.sh"


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class OsUser:
    """One real OS user with a Cybershuttle home of their own."""

    name: str
    cs_home: Path
    site: str
    cli_path: str
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def python_path(self) -> str:
        return str(Path(self.cli_path).parent / "python")

    def env(self, more: dict[str, str] | None = None) -> list[str]:
        home = Path(f"/home/{self.name}")
        values = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
                  "CYBERSHUTTLE_HOME": str(self.cs_home), "CYBERSHUTTLE_SITE_CATALOG": self.site,
                  **self.extra_env, **(more or {})}
        return ["env", "-i", *(f"{k}={v}" for k, v in values.items())]

    def run(self, argv: list[str], env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 300) -> Result:
        proc = subprocess.run(["runuser", "-u", self.name, "--", *self.env(env), *argv], capture_output=True,
                              text=True, input=input, timeout=timeout, cwd=str(self.cs_home))
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def cli(self, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        """`cybershuttle ARGS...` run by this user."""
        return self.run([self.cli_path, *args], env=env, input=input)

    def python(self, code: str, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
        """Python code using the Cybershuttle API, run by this user."""
        return self.run([self.python_path, "-c", code], env=env, timeout=timeout)


#: Prelude for code a user runs: `attempt(f, *args)` prints "ErrorName: message", or "ALLOWED".
ATTEMPT = ("def attempt(f, *args, **kwargs):\n"
           "    try:\n        f(*args, **kwargs)\n"
           "    except Exception as e:\n        print(f'{type(e).__name__}: {e}')\n"
           "    else:\n        print('ALLOWED')\n")


@dataclass
class Site:
    url: str
    csuser: OsUser
    csother: OsUser
    base: Path

    def shared_copy(self, path: Path) -> Path:
        """A copy of `path` both users can read (root's tmp_path is closed to them)."""
        target = self.base / "shared" / path.name
        target.parent.mkdir(exist_ok=True, mode=0o755)
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, target)
        subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)
        return target

    def psql(self, sql: str, user: str = "postgres") -> Result:
        """SQL run by `user` over the socket (peer authentication: as that OS user)."""
        sock = _settings()["CS_TEST_PG_SOCKET_DIR"]
        proc = subprocess.run(["runuser", "-u", user, "--", "psql", "-X", "-q", "-tA", "-h", sock,
                               "-d", self.url.split("///", 1)[1].split("?", 1)[0], "-c", sql],
                              capture_output=True, text=True, timeout=60, cwd="/")
        return Result(proc.returncode, proc.stdout, proc.stderr)


_cached: dict[str, str] = {}


def _settings() -> dict[str, str]:
    """The cluster's settings, after one `cluster.sh start` per session (it reinstalls CS_TEST_CLI
    when the sources changed, and is a quick no-op otherwise)."""
    if not _cached:
        started = subprocess.run(["bash", str(CLUSTER_SH), "start"], capture_output=True, text=True, timeout=900)
        if started.returncode != 0:
            pytest.fail(f"the test cluster did not start: {started.stderr.strip()[-500:]}", pytrace=False)
        out = subprocess.run(["bash", str(CLUSTER_SH), "env"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                key, value = words[1].split("=", 1)
                _cached[key] = value
    return _cached


def new_database() -> str:
    """A fresh site-catalog database, its schema made by the administrator; returns its URI."""
    env = _settings()
    sock, cli = env["CS_TEST_PG_SOCKET_DIR"], env["CS_TEST_CLI"]
    db = "cs_test_" + uuid.uuid4().hex[:12]
    _admin(sock, "postgres", f"CREATE DATABASE {db} OWNER postgres")
    _admin(sock, db, f"REVOKE CONNECT ON DATABASE {db} FROM PUBLIC; "
                     f'GRANT CONNECT ON DATABASE {db} TO csuser, csother, root')
    url = f"postgresql:///{db}?host={sock}"
    up = subprocess.run(["runuser", "-u", "postgres", "--", "env", "-i", "PATH=/usr/bin:/bin",
                         f"CYBERSHUTTLE_SITE_CATALOG={url}", "CYBERSHUTTLE_HOME=/nonexistent/cs", cli,
                         "site", "upgrade"], capture_output=True, text=True, cwd="/", timeout=120)
    assert up.returncode == 0, up.stderr
    return url


def drop_database(url: str) -> None:
    sock = _settings()["CS_TEST_PG_SOCKET_DIR"]
    db = url.split("///", 1)[1].split("?", 1)[0]
    _admin(sock, "postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _admin(sock: str, db: str, sql: str) -> None:
    proc = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           "-h", sock, "-d", db, "-c", sql], capture_output=True, text=True, cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def site():
    """csuser and csother, each with their own Cybershuttle home, sharing a fresh PostgreSQL site catalog."""
    env = _settings()
    url = new_database()
    # Somewhere both users can reach (root's pytest tmp_path is 0700); each home is its owner's.
    base = Path(tempfile.mkdtemp(prefix="cs-site-", dir="/var/tmp"))
    base.chmod(0o755)
    users = {}
    for name in ("csuser", "csother"):
        home = base / name
        home.mkdir(mode=0o700)
        shutil.chown(home, name, name)
        users[name] = OsUser(name, home, url, env["CS_TEST_CLI"])
    yield Site(url, users["csuser"], users["csother"], base)
    drop_database(url)
    # Sealed dataset caches are immutable: open them before deleting.
    subprocess.run(["chattr", "-R", "-i", str(base)], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def site_env() -> dict[str, str]:
    return dict(_settings())


__all__ = ["ATTEMPT", "site", "Site", "OsUser", "new_database", "drop_database", "site_env"]
