"""A site shared by real people: the OS user is the identity, the PostgreSQL site catalog keeps
ownership itself (row-level security), SQLite refuses WAL on a network filesystem.

Every multi-user test runs as the real OS users csuser and csother (runuser), each with the
site-wide install (CS_TEST_CLI) and a Cybershuttle home of their own.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from cybershuttle import netfs
from cybershuttle.registry import SqliteRegistry
from siteusers import ATTEMPT, Site, site, site_env  # noqa: F401  (fixture)

CLUSTER_SH = Path(__file__).resolve().parent / "cluster" / "cluster.sh"
#: what an attacker might set to pass for someone else
FAKE = {"CYBERSHUTTLE_USER": "csuser", "USER": "csuser", "LOGNAME": "csuser"}


def _keys(site: Site) -> dict[str, Path]:
    """Each user's own copy of their SSH key (the cluster keeps them root-only)."""
    env = site_env()
    copies = {}
    for user, key in (("csuser", env["CS_TEST_KEY"]), ("csother", env["CS_TEST_OTHER_KEY"])):
        target = site.base / user / "id_test"
        shutil.copy(key, target)
        shutil.chown(target, user, user)
        target.chmod(0o600)
        copies[user] = target
    return copies


def _resources(site: Site, user: str, key: Path, known_hosts: Path | None = None, python: str | None = None,
               kind: str = "ssh") -> Path:
    """`user`'s resources file naming the cluster as `shared-hpc` (test_trust's public resource too)."""
    env = site_env()
    path = site.base / user / "resources.yml"
    path.write_text(f"""resources:
  - name: shared-hpc
    kind: {kind}
    host: {env['CS_TEST_HOST']}
    port: {env['CS_TEST_PORT']}
    user: {user}
    key: {key}
    known_hosts: {known_hosts or env['CS_TEST_KNOWN_HOSTS']}
""" + (f"    python: {python}\n" if python else ""))
    shutil.chown(path, user, user)
    return path


def _notebook(site: Site, name: str, default: int) -> Path:
    nb = new_notebook(cells=[new_code_cell(f"alpha = {default}", metadata={"tags": ["parameters"]}),
                             new_code_cell("print(alpha)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = site.base / "shared" / name
    path.parent.mkdir(exist_ok=True, mode=0o755)
    nbformat.write(nb, path)
    path.chmod(0o644)
    return path


def _public_state(user) -> dict[str, list]:
    """Everything a user sees of the site catalog, read through the API (owner and times included)."""
    out = user.python(
        "import json\n"
        "from cybershuttle import registry\n"
        "cat = registry.catalog()\n"
        "print(json.dumps({k: [e.to_dict() for e in cat.public.list(k)] for k in "
        "('compute', 'dataset', 'template', 'model', 'storage', 'application')}))\n")
    assert out.code == 0, out.err
    return json.loads(out.out)


def test_another_user_cannot_change_replace_or_remove_public_entries_through_any_verb(site):
    keys = _keys(site)
    alice, bob = site.csuser, site.csother
    nb = _notebook(site, "tune.ipynb", 1)
    made = [
        alice.cli("compute", "import", str(_resources(site, "csuser", keys["csuser"])), "--public"),
        alice.cli("dataset", "register", "--name", "shared1", "--location", "/usr/share", "--public"),
        alice.cli("template", "add", "--name", "tune", "--notebook", str(nb), "--public"),
        alice.cli("model", "register", "--name", "seqprops", "--kind", "computational", "--location",
                  "python3 /srv/seqprops.py {input} {output}", "--public"),
        alice.cli("storage", "register", "--name", "lab", "--location", "/usr/lib", "--public"),
        alice.cli("application", "register", "--name", "tool", "--command", "/srv/bin/tool", "--public"),
    ]
    assert all(r.code == 0 for r in made), [r.err for r in made]
    before = _public_state(alice)
    assert before["compute"][0]["owner"] == "csuser" and before["compute"][0]["data"]["user"] == "csuser"

    other_nb = _notebook(site, "evil.ipynb", 666)
    attempts = {
        "compute import": bob.cli("compute", "import", str(_resources(site, "csother", keys["csother"])),
                                  "--public", env=FAKE),
        "dataset register": bob.cli("dataset", "register", "--name", "shared1", "--location", "/tmp",
                                    "--public", env=FAKE),
        "dataset add-location": bob.cli("dataset", "add-location", "shared1", "/tmp", env=FAKE),
        "dataset rm": bob.cli("dataset", "rm", "shared1", env=FAKE),
        "template add --replace": bob.cli("template", "add", "--name", "tune", "--notebook", str(other_nb),
                                          "--public", "--replace", env=FAKE),
        "template rm": bob.cli("template", "rm", "tune", env=FAKE),
        "model register": bob.cli("model", "register", "--name", "seqprops", "--kind", "computational",
                                  "--location", "python3 /tmp/evil.py {input} {output}", "--public", env=FAKE),
        "model remove": bob.cli("model", "remove", "seqprops", env=FAKE),
        "storage register": bob.cli("storage", "register", "--name", "lab", "--location", "/tmp", "--public",
                                    env=FAKE),
        "storage rm": bob.cli("storage", "rm", "lab", env=FAKE),
        "application register": bob.cli("application", "register", "--name", "tool", "--command", "/tmp/evil",
                                        "--public", env=FAKE),
        # libpq's own variables: peer authentication refuses a role that is not the login
        "PGUSER=csuser dataset rm": bob.cli("dataset", "rm", "shared1", env={**FAKE, "PGUSER": "csuser"}),
    }
    for verb, r in attempts.items():
        assert r.code != 0, f"{verb} was allowed: {r.out}"
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, (verb, r.err)
        assert any(word in r.err for word in ("belongs to csuser", "already exists", "refused role csuser")), \
            (verb, r.err)
    # The Python API, with replace=True where the verbs have no flag for it.
    api = bob.python(
        ATTEMPT + "from cybershuttle import model, template\n"
        "attempt(model.register, 'seqprops', 'computational', 'python3 /tmp/evil.py {input} {output}',\n"
        "        public=True, replace=True)\n"
        f"attempt(template.add, 'tune', notebook={str(other_nb)!r}, public=True, replace=True)\n", env=FAKE)
    assert api.code == 0, api.err
    assert api.out.splitlines() == [line for line in api.out.splitlines() if "belongs to csuser" in line]
    assert len(api.out.splitlines()) == 2

    assert _public_state(alice) == before  # nothing changed: data, owner, created, updated
    assert _public_state(bob) == before  # and bob sees the same, with the true owner


def test_the_database_enforces_ownership_whatever_the_client_does(site):
    made = site.csuser.cli("dataset", "register", "--name", "shared1", "--location", "/usr/share", "--public")
    assert made.code == 0, made.err
    # csother's own code, skipping the client-side checks: the registry backend directly.
    direct = site.csother.python(
        ATTEMPT + "from cybershuttle import registry\n"
        f"reg = registry.open_registry({site.url!r}, 'public')\n"
        "attempt(reg.add, 'dataset', 'shared1', {'locations': ['/tmp/evil']}, 'csuser', replace=True)\n"
        "attempt(reg.update, 'dataset', 'shared1', lambda d: d.update(locations=['/tmp/evil']))\n"
        "attempt(reg.remove, 'dataset', 'shared1')\n"
        "print(reg.add('dataset', 'mine', {}, 'csuser').owner)\n")
    assert direct.code == 0, direct.err
    lines = direct.out.splitlines()
    assert all(line.startswith("CybershuttleError:") and "belongs to csuser" in line for line in lines[:3]), lines
    assert lines[3] == "csother"  # the owner it claimed was ignored
    # Raw SQL as csother: no row of csuser's can be touched, a forged owner and time are overwritten.
    sql = site.psql("UPDATE entries SET data = '{}' WHERE name = 'shared1'; DELETE FROM entries WHERE name = 'shared1';"
                    "INSERT INTO entries (kind, name, owner, data, created) VALUES ('dataset', 'forged', 'csuser', "
                    "'{}', 1); SELECT name, owner, created > 1000 FROM entries ORDER BY name", user="csother")
    assert sql.code == 0, sql.err
    assert sql.out.split() == ["forged|csother|t", "mine|csother|t", "shared1|csuser|t"]
    policy = site.psql("ALTER TABLE entries DISABLE ROW LEVEL SECURITY", user="csother")
    assert policy.code != 0 and "must be owner" in policy.err
    shown = json.loads(site.csuser.cli("dataset", "show", "shared1", "--json").out)
    assert shown["locations"] == ["/usr/share"] and shown["owner"] == "csuser"


def test_each_user_sees_the_others_public_entries_with_the_true_owner(site):
    assert site.csuser.cli("dataset", "register", "--name", "from-alice", "--location", "/usr", "--public").code == 0
    assert site.csother.cli("dataset", "register", "--name", "from-bob", "--location", "/etc", "--public",
                            env=FAKE).code == 0
    assert site.csother.cli("dataset", "register", "--name", "bobs-own", "--location", "/var").code == 0
    for user in (site.csuser, site.csother):
        listed = {d["name"]: d["owner"] for d in json.loads(user.cli("dataset", "list", "--json").out)}
        public = {k: v for k, v in listed.items() if k != "bobs-own"}
        assert public == {"from-alice": "csuser", "from-bob": "csother"}
    assert "bobs-own" not in site.csuser.cli("dataset", "list").out


def test_four_processes_of_two_users_register_1000_entries_at_once(site):
    code = ("import sys\n"
            "from cybershuttle import registry\n"
            "cat = registry.catalog()\n"
            "for i in range(250):\n"
            "    cat.add('dataset', f'{sys.argv[1]}-{i}', {'i': i}, public=True)\n")
    procs = []
    for worker, user in enumerate((site.csuser, site.csother, site.csuser, site.csother)):
        procs.append(subprocess.Popen(["runuser", "-u", user.name, "--", *user.env(), user.python_path, "-c", code,
                                       f"w{worker}"], cwd=str(user.cs_home), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    counted = site.psql("SELECT owner, count(*) FROM entries WHERE kind = 'dataset' GROUP BY owner ORDER BY owner")
    assert counted.out.split() == ["csother|500", "csuser|500"]
    listed = json.loads(site.csuser.cli("dataset", "list", "--json").out)
    assert len(listed) == 1000 and len({d["name"] for d in listed}) == 1000


# -- bad input -------------------------------------------------------------------------------
def test_postgresql_down_is_one_line_naming_the_catalog_and_what_to_start(cli, tmp_path):
    empty = tmp_path / "no-server"  # a socket directory no server listens in: what clients see when it is down
    empty.mkdir()
    url = f"postgresql:///cybershuttle?host={empty}"
    r = cli("dataset", "list", env={"CYBERSHUTTLE_SITE_CATALOG": url})
    assert r.code == 1
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert f"cannot reach the site catalog {url}" in r.err and "start its PostgreSQL server" in r.err


def _cli_as(user: str, group: str, site: Site, *args: str) -> subprocess.CompletedProcess:
    """The site CLI run by a system user that is not a test user, with a home of its own."""
    home = Path(tempfile.mkdtemp(dir="/var/tmp", prefix=f"cs-{user}-"))
    shutil.chown(home, user, group)
    try:
        return subprocess.run(["runuser", "-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin",
                               f"CYBERSHUTTLE_HOME={home}", f"CYBERSHUTTLE_SITE_CATALOG={site.url}",
                               site.csuser.cli_path, *args], capture_output=True, text=True, cwd=str(home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_role_without_rights_is_told_so(site):
    # `nobody` is a real OS user; give it a role but no CONNECT on the catalog's database.
    created = site.psql("CREATE ROLE nobody LOGIN")
    assert created.code == 0 or "already exists" in created.err
    try:
        r = _cli_as("nobody", "nogroup", site, "dataset", "list")
        assert r.returncode == 1 and r.stderr.count("\n") == 1
        assert "role nobody has no rights on the site catalog" in r.stderr and "GRANT CONNECT" in r.stderr
    finally:
        site.psql("DROP ROLE IF EXISTS nobody")


def test_a_user_without_a_role_is_told_so(site):
    # `daemon` is a real OS user with no role in the database at all.
    r = _cli_as("daemon", "daemon", site, "dataset", "list")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "has no role daemon" in r.stderr and "CREATE ROLE" in r.stderr


# -- migrating a SQLite site catalog ---------------------------------------------------------
def _old_site(path: Path) -> None:
    reg = SqliteRegistry(path, "public")
    for i in range(3):
        reg.add("dataset", f"old-{i}", {"i": i}, owner="csuser")
    reg.add("model", "old-model", {"kind": "ai"}, owner="csother")
    reg.add("dataset", "clash", {"from": "sqlite"}, owner="csother")
    reg.close()
    path.chmod(0o644)


def test_migrate_meeting_duplicate_names_lists_them_and_migrates_nothing(site):
    old = site.base / "shared" / "old-site.db"
    old.parent.mkdir(exist_ok=True, mode=0o755)
    _old_site(old)
    assert site.csuser.cli("dataset", "register", "--name", "clash", "--location", "/opt", "--public").code == 0
    admin = _as_admin(site, "site", "migrate", "--from", str(old))
    assert admin.returncode == 1 and admin.stderr.count("\n") == 1
    assert "1 entry of" in admin.stderr and "dataset 'clash'" in admin.stderr and "nothing was migrated" in admin.stderr
    assert site.psql("SELECT count(*) FROM entries").out.strip() == "1"

    assert site.csuser.cli("dataset", "rm", "clash").code == 0
    ok = _as_admin(site, "site", "migrate", "--from", str(old))
    assert ok.returncode == 0, ok.stderr
    assert "migrated 5 entries of 2 owner(s) (csother, csuser)" in ok.stdout
    rows = site.psql("SELECT kind, name, owner FROM entries ORDER BY kind, name").out.split()
    assert rows == ["dataset|clash|csother", "dataset|old-0|csuser", "dataset|old-1|csuser", "dataset|old-2|csuser",
                    "model|old-model|csother"]
    # owners kept, and still enforced: csuser cannot remove csother's migrated entry
    r = site.csuser.cli("dataset", "rm", "clash")
    assert r.code == 1 and "belongs to csother" in r.err
    created = SqliteRegistry(old, "public").get("dataset", "old-0").created
    assert json.loads(site.csother.cli("dataset", "show", "old-0", "--json").out)["owner"] == "csuser"
    assert abs(float(site.psql("SELECT created FROM entries WHERE name = 'old-0'").out) - created) < 1e-3


def test_a_user_cannot_migrate_other_peoples_entries_as_their_own(site):
    old = site.base / "shared" / "old-site.db"
    old.parent.mkdir(exist_ok=True, mode=0o755)
    _old_site(old)
    r = site.csuser.cli("site", "migrate", "--from", str(old))
    assert r.code == 1 and "holds entries of csother" in r.err and "administrator" in r.err
    assert site.psql("SELECT count(*) FROM entries").out.strip() == "0"


def _as_admin(site: Site, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", "env", "-i", "PATH=/usr/bin:/bin",
                           f"CYBERSHUTTLE_SITE_CATALOG={site.url}", "CYBERSHUTTLE_HOME=/nonexistent/cs",
                           site.csuser.cli_path, *args], capture_output=True, text=True, cwd="/", timeout=120)


# -- SQLite on a network filesystem -----------------------------------------------------------
@pytest.fixture
def network_mount(tmp_path):
    """A real network filesystem mounted here: csuser's home over sshfs through the loopback sshd.

    (NFS itself cannot be mounted on this machine: its kernel has no NFS client or server,
    CONFIG_NFS_FS/CONFIG_NFSD unset, and no loadable modules; sshfs is the closest network
    filesystem it can mount, and the check treats both the same way.)"""
    env = site_env()
    if shutil.which("sshfs") is None:
        pytest.fail("sshfs is missing: `cluster.sh start` installs it", pytrace=False)
    point = tmp_path / "netmount"
    point.mkdir()
    remote = f"cs-netfs-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ssh", "-i", env["CS_TEST_KEY"], "-p", env["CS_TEST_PORT"], "-o",
                    f"UserKnownHostsFile={env['CS_TEST_KNOWN_HOSTS']}", "-o", "StrictHostKeyChecking=yes",
                    f"{env['CS_TEST_USER']}@{env['CS_TEST_HOST']}", "mkdir", "-p", remote], check=True, timeout=60)
    subprocess.run(["sshfs", "-p", env["CS_TEST_PORT"], "-o", f"IdentityFile={env['CS_TEST_KEY']}", "-o",
                    f"UserKnownHostsFile={env['CS_TEST_KNOWN_HOSTS']}", "-o", "StrictHostKeyChecking=yes",
                    f"{env['CS_TEST_USER']}@{env['CS_TEST_HOST']}:{remote}", str(point)], check=True, timeout=60)
    try:
        yield point
    finally:
        subprocess.run(["fusermount3", "-u", str(point)], capture_output=True)
        subprocess.run(["ssh", "-i", env["CS_TEST_KEY"], "-p", env["CS_TEST_PORT"], "-o",
                        f"UserKnownHostsFile={env['CS_TEST_KNOWN_HOSTS']}",
                        f"{env['CS_TEST_USER']}@{env['CS_TEST_HOST']}", "rm", "-rf", remote], timeout=60)


def test_sqlite_site_catalog_on_a_network_mount_is_refused_in_wal_mode(network_mount, cli, cs_home):
    mounts = Path("/proc/self/mounts").read_text()
    assert f" {network_mount} fuse.sshfs " in mounts  # a real entry in the real mount table
    assert netfs.network_filesystem(network_mount / "site.db") == "fuse.sshfs"
    site_db = network_mount / "site.db"
    r = cli("dataset", "register", "--name", "d", "--location", "/usr", "--public",
            env={"CYBERSHUTTLE_SITE_CATALOG": str(site_db)})
    assert r.code == 1 and r.err.count("\n") == 1
    assert f"the site catalog {site_db} is on a network filesystem (fuse.sshfs)" in r.err
    assert "postgresql:///cybershuttle" in r.err and "local disk" in r.err
    assert not site_db.exists()
    # A private catalog there (a home on NFS) still works, with the rollback journal instead of WAL.
    private = SqliteRegistry(network_mount / "private.db", "private")
    private.add("dataset", "mine", {}, owner="me")
    assert private._conn().execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    private.close()


def test_local_disk_keeps_wal(tmp_path):
    assert netfs.network_filesystem(tmp_path) is None
    reg = SqliteRegistry(tmp_path / "c.db", "public")
    assert reg._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_mount_table_types_of_cluster_filesystems_count_as_network():
    table = ("/dev/vda / ext4 rw 0 0\n"
             "nfs.example:/home /home nfs4 rw,vers=4.2 0 0\n"
             "lustre@tcp:/scratch /scratch lustre rw 0 0\n"
             "gpfs0 /gpfs gpfs rw 0 0\n")
    assert netfs.mount_type_of(Path("/home/alice/.cybershuttle"), table) == "nfs4"
    assert netfs.mount_type_of(Path("/scratch/x"), table) == "lustre"
    assert netfs.mount_type_of(Path("/gpfs/proj"), table) == "gpfs"
    assert netfs.mount_type_of(Path("/var/tmp"), table) == "ext4"
    assert {"nfs4", "lustre", "gpfs"} <= netfs.NETWORK_TYPES and "ext4" not in netfs.NETWORK_TYPES


def test_schema_versions_migrate_by_the_administrator_and_a_newer_one_is_refused(site):
    from cybershuttle.registry_postgres import SCHEMA_VERSION

    assert SCHEMA_VERSION >= 2
    assert site.csuser.cli("dataset", "register", "--name", "kept", "--location", "/usr", "--public").code == 0
    # Back to version 1 (no search indexes): a user may not migrate it, and is told who may.
    assert site.psql("DROP INDEX entries_name_trgm, entries_data_trgm; UPDATE cybershuttle_schema SET version = 1"
                     ).code == 0
    r = site.csuser.cli("dataset", "list")
    assert r.code == 1 and r.err.count("\n") == 1
    assert f"has schema version 1 and this Cybershuttle needs {SCHEMA_VERSION}" in r.err
    assert "administrator must run `cybershuttle site upgrade`" in r.err
    up = subprocess.run(["runuser", "-u", "postgres", "--", "env", "-i", "PATH=/usr/bin:/bin",
                         f"CYBERSHUTTLE_SITE_CATALOG={site.url}", site.csuser.cli_path, "site", "upgrade"],
                        capture_output=True, text=True, cwd="/", timeout=120)
    assert up.returncode == 0 and f"schema version {SCHEMA_VERSION}" in up.stdout, up.stderr
    assert site.psql("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'entries_%_trgm'").out.strip() == "2"
    assert [d["name"] for d in json.loads(site.csother.cli("dataset", "list", "--json").out)] == ["kept"]
    # A catalog made by a newer Cybershuttle is refused, not misread.
    assert site.psql(f"UPDATE cybershuttle_schema SET version = {SCHEMA_VERSION + 1}").code == 0
    r = site.csuser.cli("dataset", "list")
    assert r.code == 1 and "newer than this Cybershuttle understands" in r.err
