"""The catalog store: scopes, atomic updates, migrations, and concurrent writers."""
from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat

import pytest

from cybershuttle import profile, registry
from cybershuttle.errors import AlreadyExistsError, CybershuttleError, InvalidNameError, NotFoundError
from cybershuttle.registry import SqliteRegistry as Registry

from siteusers import ATTEMPT, site  # noqa: F401  (fixture)


def test_added_entry_is_listed_and_read_back_with_its_data(tmp_path):
    reg = Registry(tmp_path / "c.db")
    reg.add("dataset", "cifar10", {"location": "https://example.invalid/c.tgz"}, owner="alice")
    entry = reg.get("dataset", "cifar10")
    assert entry.data == {"location": "https://example.invalid/c.tgz"}
    assert entry.owner == "alice" and entry.scope == "private"
    assert [e.name for e in reg.list("dataset")] == ["cifar10"]
    assert reg.list("storage") == []


def test_duplicate_name_is_refused_unless_replacing(tmp_path):
    reg = Registry(tmp_path / "c.db")
    reg.add("storage", "lab", {"v": 1}, owner="a")
    with pytest.raises(AlreadyExistsError, match="already exists"):
        reg.add("storage", "lab", {"v": 2}, owner="a")
    assert reg.get("storage", "lab").data == {"v": 1}
    reg.add("storage", "lab", {"v": 3}, owner="a", replace=True)
    assert reg.get("storage", "lab").data == {"v": 3}


@pytest.mark.parametrize("bad", ["my data", "..", "../etc", "a/b", "x;rm -rf", "$(id)", "", "-flag", "a..b"])
def test_bad_names_are_refused_and_nothing_is_written(tmp_path, bad):
    reg = Registry(tmp_path / "c.db")
    with pytest.raises(InvalidNameError, match="not a valid storage name"):
        reg.add("storage", bad, {}, owner="a")
    assert reg.count("storage") == 0


def test_missing_entry_error_names_what_exists(tmp_path):
    reg = Registry(tmp_path / "c.db")
    reg.add("model", "bert", {}, owner="a")
    with pytest.raises(NotFoundError, match="no model named 'gpt'.*known: bert"):
        reg.get("model", "gpt")


def test_update_is_read_modify_write_and_remove_returns_the_entry(tmp_path):
    reg = Registry(tmp_path / "c.db")
    reg.add("compute", "hpc", {"jobs": []}, owner="a")
    reg.update("compute", "hpc", lambda d: d["jobs"].append(1))
    assert reg.get("compute", "hpc").data == {"jobs": [1]}
    assert reg.remove("compute", "hpc").data == {"jobs": [1]}
    with pytest.raises(NotFoundError):
        reg.remove("compute", "hpc")


def test_search_matches_name_and_data_and_treats_wildcards_literally(tmp_path):
    reg = Registry(tmp_path / "c.db")
    reg.add("dataset", "mnist", {"description": "handwritten digits"}, owner="a")
    reg.add("dataset", "cifar10", {"description": "tiny images 100%"}, owner="a")
    assert [e.name for e in reg.list("dataset", search="digits")] == ["mnist"]
    assert [e.name for e in reg.list("dataset", search="cifar")] == ["cifar10"]
    assert [e.name for e in reg.list("dataset", search="100%")] == ["cifar10"]
    assert [e.name for e in reg.list("dataset", search="%")] == ["cifar10"]
    assert [e.name for e in reg.list("dataset", search="_")] == []


def test_private_catalog_file_is_owner_only(tmp_path):
    Registry(tmp_path / "c.db", "private").add("storage", "a", {}, owner="a")
    assert stat.S_IMODE(os.stat(tmp_path / "c.db").st_mode) == 0o600


def test_old_schema_is_migrated_and_newer_schema_is_refused(tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # version 0: an empty database
    reg = Registry(path)
    assert reg.schema_version() == registry.SCHEMA_VERSION
    reg.add("storage", "x", {}, owner="a")
    reg.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={registry.SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(CybershuttleError, match="newer than this Cybershuttle understands"):
        Registry(path)


def test_catalog_reads_private_and_public_and_private_shadows_nothing_silently(cs_home):
    cat = registry.catalog()
    cat.add("dataset", "shared", {"x": 1}, public=True)
    cat.add("dataset", "mine", {"x": 2})
    assert {(e.name, e.scope) for e in cat.list("dataset")} == {("shared", "public"), ("mine", "private")}
    with pytest.raises(AlreadyExistsError, match="public catalog"):
        cat.add("dataset", "shared", {"x": 3})


def test_public_entries_are_visible_to_other_users_but_only_the_owner_may_remove(site):
    made = site.csuser.python(
        "from cybershuttle import registry\n"
        "registry.catalog().add('model', 'bert', {}, public=True)\n"
        "registry.catalog().add('model', 'alices-own', {})\n")
    assert made.code == 0, made.err
    seen = site.csother.python(
        ATTEMPT + "from cybershuttle import registry\n"
        "bob = registry.catalog()\n"
        "print([(e.name, e.owner) for e in bob.list('model')])\n"
        "attempt(bob.remove, 'model', 'bert')\n"
        "attempt(bob.get, 'model', 'alices-own')\n")
    assert seen.code == 0, seen.err
    lines = seen.out.splitlines()
    assert lines[0] == "[('bert', 'csuser')]"
    assert lines[1].startswith("CybershuttleError:") and "belongs to csuser" in lines[1]
    assert lines[2].startswith("NotFoundError:")


def test_the_user_is_the_login_whatever_the_environment_says(cs_home, monkeypatch, cli):
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.setenv("CYBERSHUTTLE_USER", "alice")
    (cs_home).mkdir(parents=True, exist_ok=True)
    (cs_home / "current").write_text("alice\n")  # the old marker file means nothing either
    assert profile.current_user() == me
    assert registry.catalog().add("dataset", "d", {}, public=True).owner == me
    r = cli("dataset", "initialize", "alice", env={"CYBERSHUTTLE_USER": "alice"})
    assert r.code == 1 and f"you are {me}" in r.err and "not alice" in r.err
    assert not (cs_home / "users" / "alice").exists()


def test_site_catalog_location_comes_from_the_environment(cs_home, tmp_path, monkeypatch):
    site = tmp_path / "site-dir"
    site.mkdir()
    monkeypatch.setenv("CYBERSHUTTLE_SITE_CATALOG", str(site))
    assert profile.site_catalog_path() == site / "catalog.db"
    monkeypatch.setenv("CYBERSHUTTLE_SITE_CATALOG", str(tmp_path / "lab.sqlite"))
    assert profile.site_catalog_path() == tmp_path / "lab.sqlite"
    registry.catalog().add("dataset", "d", {}, public=True)
    assert (tmp_path / "lab.sqlite").is_file()


def _register_many(path: str, worker: int, count: int) -> None:
    reg = Registry(path, "public")
    for i in range(count):
        reg.add("dataset", f"w{worker}-d{i}", {"worker": worker, "i": i}, owner=f"user{worker}")
        # Interleave read-modify-write on one shared entry: lost updates would show in the counter.
        reg.update("counter", "shared", lambda d: d.update(n=d["n"] + 1))
    reg.close()


def test_four_processes_registering_250_each_lose_nothing(tmp_path):
    path = str(tmp_path / "site.db")
    Registry(path, "public").add("counter", "shared", {"n": 0}, owner="test")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_register_many, args=(path, w, 250)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    reg = Registry(path, "public")
    assert reg.count("dataset") == 1000
    assert {e.name for e in reg.list("dataset")} == {f"w{w}-d{i}" for w in range(4) for i in range(250)}
    assert reg.get("counter", "shared").data["n"] == 1000
