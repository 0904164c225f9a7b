"""Shell sessions: a real bash (and zsh) recorded through a pty, replayed, exported, redacted."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import nbformat
import pexpect
import pytest

from conftest import CLI


def _events(cs_home: Path, name: str) -> list[dict]:
    files = list(cs_home.glob(f"users/*/sessions/{name}/events.jsonl"))
    assert len(files) == 1, files
    return [json.loads(line) for line in files[0].read_text().splitlines()]


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def recorder(tmp_path, workdir):
    """`cybershuttle session start NAME` in a real terminal (pexpect's pty), without the user's rc files."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    children = []

    def start(name: str, shell: str = "bash") -> tuple[pexpect.spawn, str]:
        env = {**os.environ, "HOME": str(home), "TERM": "dumb", "SHELL": shutil.which(shell) or shell,
               "ZDOTDIR": str(home)}
        env.pop("CYBERSHUTTLE_SESSION", None)
        child = pexpect.spawn(str(CLI), ["session", "start", name, "--shell", shell], env=env, cwd=str(workdir),
                              encoding="utf-8", timeout=30, dimensions=(40, 1000))
        children.append(child)
        prompt = r"\(" + re.escape(name) + r"\) [^\r\n]*[$#%] "
        child.expect(prompt)
        return child, prompt

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def _type(child: pexpect.spawn, prompt: str, *commands: str) -> None:
    for command in commands:
        child.sendline(command)
        child.expect(prompt)


def test_bash_session_is_recorded_through_a_pty_and_replayed(recorder, workdir, cs_home, cli):
    child, prompt = recorder("analysis1")
    _type(child, prompt, "mkdir -p data", "cd data", "echo one > a.txt", "", "GREETING=hello",
          "for i in 1 2; do echo $i >> b.txt; done", "false", "echo $GREETING > after.txt", "cd ..")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    events = _events(cs_home, "analysis1")
    data = str(workdir / "data")
    assert [(e["command"], e["cwd"], e["exit_code"]) for e in events] == [
        ("mkdir -p data", str(workdir), 0),
        ("cd data", str(workdir), 0),
        ("echo one > a.txt", data, 0),
        ("GREETING=hello", data, 0),
        ("for i in 1 2; do echo $i >> b.txt; done", data, 0),
        ("false", data, 1),
        ("echo $GREETING > after.txt", data, 0),
        ("cd ..", data, 0),
    ]
    times = [e["time"] for e in events]
    assert times == sorted(times) and all(e["duration"] >= 0 and e["shell"] == "bash" for e in events)
    log = next(cs_home.glob("users/*/sessions/analysis1/events.jsonl"))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert not list(log.parent.glob("*.fifo")), "the prompt FIFO is removed with the shell"

    listed = json.loads(cli("session", "list", "--json").out)
    assert [(s["name"], s["kind"], s["state"], s["counts"]) for s in listed] == [
        ("analysis1", "shell", "stopped", {"command": 8})]
    shown = cli("session", "show", "analysis1")
    assert shown.code == 0 and "[6] " in shown.out and "false  (exit 1" in shown.out

    past = cli("session", "load", "analysis1", "--from", "9")
    assert past.code == 1 and "has 8 command(s): --from 9 is past the end" in past.err
    dry = cli("session", "load", "analysis1", "--dry-run", "--from", "3")
    assert dry.code == 0
    assert dry.out.splitlines()[0] == f"[3] {data}$ echo one > a.txt" and len(dry.out.splitlines()) == 6

    shutil.rmtree(workdir / "data")
    replay = cli("session", "load", "analysis1")
    assert replay.code == 1 and "step 6 failed (exit 1): false" in replay.err
    assert (workdir / "data" / "a.txt").read_text() == "one\n"
    assert (workdir / "data" / "b.txt").read_text() == "1\n2\n"
    assert not (workdir / "data" / "after.txt").exists(), "the replay stops at the first failure"

    shutil.rmtree(workdir / "data")
    (workdir / "data").mkdir()
    onward = cli("session", "load", "analysis1", "--continue-on-error", "--from", "4", "--json")
    result = json.loads(onward.out)
    assert onward.code == 1 and result["failed"] == 6
    assert [s["exit_code"] for s in result["steps"]] == [0, 0, 1, 0, 0]
    # a variable set by an earlier step is there for later ones, as in the recorded shell
    assert (workdir / "data" / "after.txt").read_text() == "hello\n"
    assert not (workdir / "data" / "a.txt").exists(), "--from 4 skipped step 3"


def test_exports_run_as_recorded(recorder, workdir, cs_home, cli, tmp_path):
    child, prompt = recorder("exp1")
    _type(child, prompt, "mkdir -p out && cd out", "echo 'x y' > f.txt", "wc -w f.txt")
    child.sendline("exit")
    child.expect(pexpect.EOF)

    script = cli("session", "export", "exp1", "--format", "sh")
    assert script.code == 0 and script.out.startswith("#!/usr/bin/env bash") and "set -e" in script.out
    shutil.rmtree(workdir / "out")
    ran = subprocess.run(["bash", "-c", script.out], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "2 f.txt" and (workdir / "out" / "f.txt").read_text() == "x y\n"

    target = tmp_path / "exp1.ipynb"
    assert cli("session", "export", "exp1", "--format", "ipynb", "--output", str(target)).code == 0
    nb = nbformat.read(target, as_version=4)
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[1] == f"%%bash\ncd -- {workdir / 'out'}\necho 'x y' > f.txt"
    assert [c.metadata["cybershuttle"]["step"] for c in nb.cells if c.cell_type == "code"] == [1, 2, 3]

    from cybershuttle import session

    assert session.export("exp1", format="ipynb") == target.read_text()
    assert cli("session", "rm", "exp1").code == 0
    assert json.loads(cli("session", "list", "--json").out) == []
    assert not list(cs_home.glob("users/*/sessions/exp1"))
    missing = cli("session", "show", "exp1")
    assert missing.code == 1 and "no session named 'exp1'" in missing.err and "Traceback" not in missing.err


def test_session_stop_inside_the_subshell_ends_it(recorder, cs_home, cli):
    child, prompt = recorder("stopme")
    _type(child, prompt, "echo before")
    assert json.loads(cli("session", "list", "--json").out)[0]["state"] == "recording"
    nested = cli("session", "start", "other", env={"CYBERSHUTTLE_SESSION": "stopme"})
    assert nested.code == 1 and "already recording session 'stopme'" in nested.err
    child.sendline(f"{CLI} session stop")
    child.expect("session 'stopme' stopped")
    child.expect(pexpect.EOF)
    assert [e["command"] for e in _events(cs_home, "stopme")] == ["echo before"]
    assert json.loads(cli("session", "list", "--json").out)[0]["state"] == "stopped"


def test_session_stop_from_another_terminal(recorder, cs_home, cli):
    child, prompt = recorder("elsewhere")
    _type(child, prompt, "true")
    stopped = cli("session", "stop", "elsewhere")
    assert stopped.code == 0 and "stopped" in stopped.out
    child.expect(pexpect.EOF)
    assert not child.isalive() or child.wait() is not None
    again = cli("session", "stop", "elsewhere")
    assert again.code == 1 and "not recording" in again.err


def test_secrets_are_redacted_before_anything_is_written(recorder, cs_home, cli, tmp_path):
    child, prompt = recorder("secrets")
    _type(child, prompt,
          "echo mysql --password=S3CRET1 -u me",
          "echo 'https://h.example/api?token=S3CRET2&page=1'",
          "export GITHUB_TOKEN=S3CRET3",
          "AWS_SECRET_ACCESS_KEY=S3CRET4 true",
          "DB_PASSWORD='S3CRET5 x' true",
          "echo -----BEGIN OPENSSH PRIVATE KEY----- S3CRET6 -----END OPENSSH PRIVATE KEY-----",
          "SSH_KEY=S3CRET7 true",
          "echo harmless")
    # a key pasted into a heredoc spans lines: the whole history entry is one command, redacted as one
    child.sendline("cat > k.pem <<'EOF'")
    for line in ("-----BEGIN RSA PRIVATE KEY-----", "MIIEpS3CRET8", "-----END RSA PRIVATE KEY-----"):
        child.expect("> ")
        child.sendline(line)
    child.expect("> ")
    child.sendline("EOF")
    child.expect(prompt)
    child.sendline("exit")
    child.expect(pexpect.EOF)
    stored = [p for p in cs_home.rglob("*") if p.is_file()]
    assert stored
    for path in stored:
        assert b"S3CRET" not in path.read_bytes(), path
    commands = [e["command"] for e in _events(cs_home, "secrets")]
    assert commands[0] == "echo mysql --password=REDACTED -u me"
    assert commands[2] == "export GITHUB_TOKEN=REDACTED" and commands[4] == "DB_PASSWORD='REDACTED' true"
    assert commands[-2] == "echo harmless"
    assert commands[-1] == "cat > k.pem <<'EOF'\n-----BEGIN PRIVATE KEY----- REDACTED -----END PRIVATE KEY-----\nEOF"
    dry = cli("session", "load", "secrets", "--dry-run")
    assert dry.out.count("(a secret was redacted here)") == 8
    sh = cli("session", "export", "secrets", "--format", "sh").out
    assert "S3CRET" not in sh and sh.count("a secret was redacted") == 8


def test_redaction_rules():
    from cybershuttle.session.redact import redact

    assert redact("tool --api-key abc --verbose") == "tool --api-key REDACTED --verbose"
    assert redact("git clone https://me:pw@git.example/x") == "git clone https://me:REDACTED@git.example/x"
    assert redact('curl -H "Authorization: Bearer abc"') == 'curl -H "Authorization: Bearer REDACTED"'
    # references to secrets are not secrets, and ordinary options stay
    assert redact("MY_TOKEN=$(cat ~/.token) run") == "MY_TOKEN=$(cat ~/.token) run"
    assert redact("cybershuttle compute register --key ~/.ssh/id_ed25519") == \
        "cybershuttle compute register --key ~/.ssh/id_ed25519"
    assert redact("-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc") == \
        "-----BEGIN PRIVATE KEY----- REDACTED -----END PRIVATE KEY-----"


def test_recorded_bash_keeps_the_users_histcontrol_and_redacts_tool_credentials(recorder, tmp_path, cs_home, cli):
    # the user's own ~/.bashrc says ignorespace: a command typed with a leading space stays out of the session
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / ".bashrc").write_text("HISTCONTROL=ignorespace\n")
    child, prompt = recorder("tools")
    child.sendline("echo HC=$HISTCONTROL")
    child.expect("HC=ignorespace")
    child.expect(prompt)
    token = "ghp_" + "S3CRETx0" * 5  # synthetic
    _type(child, prompt,
          " echo hidden S3CRETH",
          "echo mysql -u me -pS3CRET1 db",
          "echo psql postgresql://me:S3CRET2@db.example/x",
          "echo curl -u me:S3CRET3 -H 'PRIVATE-TOKEN: S3CRET4' https://api.example",
          "echo sshpass -p S3CRET5 ssh -p 2222 me@h.example",
          f"echo git clone https://{token}@git.example/o/r",
          """echo 'os.environ["HF_TOKEN"] = "S3CRET6"'""",
          "echo ls -la")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    for path in (p for p in cs_home.rglob("*") if p.is_file()):
        assert b"S3CRET" not in path.read_bytes(), path
    assert [e["command"] for e in _events(cs_home, "tools")] == [
        "echo HC=$HISTCONTROL",
        "echo mysql -u me -pREDACTED db",
        "echo psql postgresql://me:REDACTED@db.example/x",
        "echo curl -u me:REDACTED -H 'PRIVATE-TOKEN: REDACTED' https://api.example",
        "echo sshpass -p REDACTED ssh -p 2222 me@h.example",
        "echo git clone https://REDACTED@git.example/o/r",
        """echo 'os.environ["HF_TOKEN"] = "REDACTED"'""",
        "echo ls -la"]
    shown = cli("session", "show", "tools").out
    assert "hidden" not in shown and "-pREDACTED" in shown


def test_zsh_session_is_recorded(recorder, workdir, cs_home):
    child, prompt = recorder("zsh1", shell="zsh")
    _type(child, prompt, "mkdir -p z", "cd z", "false", "export API_KEY=S3CRETZ")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    events = _events(cs_home, "zsh1")
    assert [(e["command"], e["cwd"], e["exit_code"], e["shell"]) for e in events] == [
        ("mkdir -p z", str(workdir), 0, "zsh"), ("cd z", str(workdir), 0, "zsh"),
        ("false", str(workdir / "z"), 1, "zsh"), ("export API_KEY=REDACTED", str(workdir / "z"), 0, "zsh")]


def test_bad_names_and_unknown_sessions_are_refused(cli):
    bad = cli("session", "start", "../x")
    assert bad.code == 1 and "not a valid session name" in bad.err
    assert cli("session", "load", "nope").code == 1
    assert "no session named 'nope'" in cli("session", "export", "nope", "--format", "sh").err
    assert cli("session", "stop").code == 1
