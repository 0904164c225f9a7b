"""The `cybershuttle` command as a user meets it."""
from __future__ import annotations

import json
import os
import pwd
import sqlite3
import stat
from pathlib import Path

import pytest

from cybershuttle.cli.main import MODULES
from siteusers import site  # noqa: F401  (fixture)

PROFILE_MODULES = [m for m in MODULES if m != "setup"]


def _verbs(cli, module: str) -> list[str]:
    import importlib

    return list(importlib.import_module(f"cybershuttle.cli.{module}").group.verbs)


def test_top_level_help_lists_every_module(cli):
    res = cli("--help")
    assert res.code == 0
    for module in ["storage", "dataset", "compute", "session", "template", "application", "module", "model"]:
        assert f"\n    {module}" in res.out


@pytest.mark.parametrize("module", list(MODULES))
def test_every_verb_has_help_with_an_example(cli, module):
    for verb in _verbs(cli, module):
        res = cli(module, verb, "--help")
        assert res.code == 0, res.err
        assert f"example:\n  cybershuttle {module} {verb}" in res.out


@pytest.mark.parametrize("module", PROFILE_MODULES)
def test_initialize_creates_the_profile_once_for_every_module(cli, cs_home, module):
    me = pwd.getpwuid(os.geteuid()).pw_name
    first = cli(module, "initialize")
    assert first.code == 0, first.err
    assert "created" in first.out
    again = cli(module, "initialize", me)  # naming yourself is allowed
    assert again.code == 0 and "already existed" in again.out
    root = cs_home / "users" / me
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    other = cli(module, "initialize", "alice")  # naming somebody else is not
    assert other.code == 1 and f"you are {me}" in other.err and not (cs_home / "users" / "alice").exists()


def test_initialize_registers_local_compute_and_home_storage(cli, cs_home):
    assert cli("compute", "initialize").code == 0
    assert cli("storage", "initialize").code == 0
    resources = json.loads(cli("compute", "list", "--json").out)
    assert [(r["name"], r["kind"], r["status"]["reachable"]) for r in resources] == [("local", "local", True)]
    storages = json.loads(cli("storage", "ls", "--json").out)
    assert [(s["name"], s["location"]) for s in storages] == [("home", str(Path.home()))]
    assert "home" in cli("storage", "ls").out
    # idempotent: a second initialize registers nothing twice
    assert "already registered" in cli("compute", "initialize").out
    assert len(json.loads(cli("compute", "list", "--json").out)) == 1


def test_two_users_have_separate_profiles(site):
    for user in (site.csuser, site.csother):
        r = user.cli("storage", "initialize")
        assert r.code == 0 and "created" in r.out, r.err
        db = user.cs_home / "users" / user.name / "catalog.db"
        assert db.is_file() and stat.S_IMODE(db.stat().st_mode) == 0o600 and db.stat().st_uid == pwd.getpwnam(
            user.name).pw_uid
    # each sees only their own home storage, and cannot read the other's catalog
    for user, other in ((site.csuser, site.csother), (site.csother, site.csuser)):
        seen = json.loads(user.cli("storage", "ls", "--json").out)
        assert [(s["name"], s["location"]) for s in seen] == [("home", f"/home/{user.name}")]
        peek = user.run(["cat", str(other.cs_home / "users" / other.name / "catalog.db")])
        assert peek.code != 0 and "Permission denied" in peek.err


@pytest.mark.parametrize("spelling", ["--after_download_command", "--after-download-command"])
def test_scientists_spellings_and_dashed_twins_are_accepted(cli, spelling):
    res = cli("dataset", "register", "--name", "d", "--location", "/tmp", spelling, "tar -xz")
    assert res.code == 0, res.err
    assert "tar -xz" in cli("dataset", "show", "d").out


@pytest.mark.parametrize("args, message", [
    (["compute", "execute", "true", "--resource", "r", "--setup_file", "c.yml"], "no compute named 'r'"),
    (["template", "add", "--name", "t", "--input_file_format", "s.toml"], "give exactly one of --session S or --notebook"),
    (["template", "run", "--name", "t", "--input_file", "i.yml"], "no template named 't'"),
    (["model", "run", "m", "--input_folder", "d"], "no model named 'm'"),
    (["model", "run", "m", "--input_sequence", "s.fasta"], "no model named 'm'"),
])
def test_legacy_underscore_options_parse(cli, args, message):
    res = cli(*args)
    assert "unrecognized" not in res.err and message in res.err, res.err


def test_misspelt_option_is_an_error_not_silently_accepted(cli):
    res = cli("dataset", "register", "--name", "d", "--location", "/tmp", "--after_download_comand", "x")
    assert res.code == 2 and "unrecognized arguments: --after_download_comand" in res.err


def test_abbreviated_options_are_refused(cli):
    res = cli("compute", "list", "--js")
    assert res.code == 2 and "unrecognized" in res.err


@pytest.mark.parametrize("args, message", [
    (["nosuch"], "unknown module 'nosuch'"),
    (["storage", "nosuch"], "invalid choice: 'nosuch'"),
    (["storage"], "required: VERB"),
])
def test_unknown_module_or_verb_is_one_line_exit_2(cli, args, message):
    res = cli(*args)
    assert res.code == 2
    assert message in res.err
    assert len(res.err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["my name", "..", "../x", "a/b", "x;id", "$(id)", "a|b", "`id`"])
def test_bad_user_names_are_refused_and_nothing_is_written(cli, cs_home, name):
    res = cli("compute", "initialize", name)
    assert res.code == 1
    assert "not a valid user name" in res.err and "Traceback" not in res.err
    assert not (cs_home / "users").exists() or not any((cs_home / "users").iterdir())


def test_errors_have_no_traceback_unless_debug(cli, cs_home, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("project: [unclosed\n")
    res = cli("setup", "validate", str(bad))
    assert res.code == 1 and "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1
    debug = cli("--debug", "setup", "validate", str(bad))
    assert debug.code != 0 and "Traceback" in debug.err


def test_json_listing_is_valid_json_even_when_empty(cli, cs_home):
    assert json.loads(cli("compute", "list", "--json").out) == []


def test_unknown_storage_name_is_reported_by_name(cli, cs_home):
    cli("storage", "initialize")
    res = cli("storage", "ls", "nosuch:/x")
    assert res.code == 1
    assert res.err.strip() == "cybershuttle: error: no storage named 'nosuch' (known: home)"
    bad = cli("storage", "ls", "no such")
    assert bad.code == 1 and "not a valid storage name" in bad.err
