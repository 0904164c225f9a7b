"""Redaction of the credential forms of common tools, token prefixes, Python and JSON/YAML fields.

Every secret below is synthetic (S3CRET... or a repeated pattern of the right shape); the
prefix of a well-known token stays, so a reader still sees which kind of credential was there.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from cybershuttle.session.redact import redact

# synthetic tokens of the well-known shapes (no real account's key)
GH = "ghp_" + "Zz0" * 12
TOKENS = {
    GH: "ghp_REDACTED",
    "gho_" + "Ab1" * 12: "gho_REDACTED",
    "ghu_" + "Ab1" * 12: "ghu_REDACTED",
    "ghs_" + "Ab1" * 12: "ghs_REDACTED",
    "ghr_" + "Ab1" * 12: "ghr_REDACTED",
    "github_pat_" + "S3CRETx0" * 10: "github_pat_REDACTED",
    "glpat-" + "S3CRETx0ab": "glpat-" + "S3CRETx0ab",  # too short to be a token: stays (see below)
    "glpat-" + "S3CRETx0ab" * 2: "glpat-REDACTED",
    "sk-" + "S3CRETx0" * 6: "sk-REDACTED",
    "sk-proj-" + "S3CRETx0" * 8: "sk-proj-REDACTED",
    "sk-ant-api03-" + "S3CRETx0" * 10: "sk-ant-api03-REDACTED",
    "AKIA" + "S3CRETX0S3CRETX0": "AKIAREDACTED",
    "xoxb-" + "1111-2222-S3CRETx0S3CRET": "xoxb-REDACTED",
    "xoxp-" + "1111-2222-S3CRETx0S3CRET": "xoxp-REDACTED",
    "hf_" + "S3CRETx0" * 4: "hf_REDACTED",
    "AIza" + "S3CRETx0S3CRETx0S3CRETx0S3CRETx0123": "AIzaREDACTED",
}


@pytest.mark.parametrize("line, expected", [
    # database clients
    ("mysql -h db -u me -pS3CRET1 analysis", "mysql -h db -u me -pREDACTED analysis"),
    ("mysqldump -u me -p'S3CRET 2' db", "mysqldump -u me -p'REDACTED' db"),
    ("mysql --password=S3CRET3 -u me", "mysql --password=REDACTED -u me"),
    ("MYSQL_PWD=S3CRET4 mysql -u me", "MYSQL_PWD=REDACTED mysql -u me"),
    ("psql postgresql://me:S3CRET5@db.example/analysis", "psql postgresql://me:REDACTED@db.example/analysis"),
    ("PGPASSWORD=S3CRET6 psql -h db -U me", "PGPASSWORD=REDACTED psql -h db -U me"),
    # curl
    ("curl -u me:S3CRET7 https://api.example/x", "curl -u me:REDACTED https://api.example/x"),
    ("curl --user 'me:S3CRET8' https://api.example/x", "curl --user 'me:REDACTED' https://api.example/x"),
    ("curl -H 'Authorization: Bearer S3CRET9' https://api.example",
     "curl -H 'Authorization: Bearer REDACTED' https://api.example"),
    ('curl --header "PRIVATE-TOKEN: S3CRET10" https://git.example/api',
     'curl --header "PRIVATE-TOKEN: REDACTED" https://git.example/api'),
    # sshpass: its own -p only; the port of the ssh it runs stays
    ("sshpass -p S3CRET11 ssh -p 2222 me@h.example", "sshpass -p REDACTED ssh -p 2222 me@h.example"),
    ("sshpass -v -pS3CRET12 scp a me@h.example:", "sshpass -v -pREDACTED scp a me@h.example:"),
    # git remotes carrying tokens
    ("git clone https://me:S3CRET13@git.example/o/r.git", "git clone https://me:REDACTED@git.example/o/r.git"),
    ("git remote set-url origin https://x0S3CRET14x0S3CRET14x0@git.example/o/r",
     "git remote set-url origin https://REDACTED@git.example/o/r"),
    (f"git clone https://{GH}@github.example/o/r", "git clone https://REDACTED@github.example/o/r"),
    # Python
    ('os.environ["HF_TOKEN"] = "S3CRET15"', 'os.environ["HF_TOKEN"] = "REDACTED"'),
    ("os.environ['OPENAI_API_KEY']='S3CRET16'", "os.environ['OPENAI_API_KEY']='REDACTED'"),
    ('os.environ.setdefault("DB_PASSWORD", "S3CRET17")', 'os.environ.setdefault("DB_PASSWORD", "REDACTED")'),
    ("os.putenv('AWS_SECRET_ACCESS_KEY', 'S3CRET18')", "os.putenv('AWS_SECRET_ACCESS_KEY', 'REDACTED')"),
    # JSON and YAML fields
    ('{"user": "me", "password": "S3CRET19", "token_type": "bearer"}',
     '{"user": "me", "password": "REDACTED", "token_type": "bearer"}'),
    ("{'api_key': 'S3CRET20', 'n': 1}", "{'api_key': 'REDACTED', 'n': 1}"),
    ("db:\n  host: db.example\n  password: S3CRET21\n  token: 'S3CRET22'  # rotated\n  secret: S3CRET 23\n"
     "  api_key: S3CRET24\n",
     "db:\n  host: db.example\n  password: REDACTED\n  token: 'REDACTED'  # rotated\n  secret: REDACTED\n"
     "  api_key: REDACTED\n"),
])
def test_credential_forms_lose_only_the_secret(line, expected):
    assert redact(line) == expected
    assert "S3CRET" not in expected


@pytest.mark.parametrize("token", sorted(TOKENS))
def test_well_known_token_prefixes(token):
    assert redact(f"export X={token}") == f"export X={TOKENS[token]}"
    assert redact(f"echo {token} | tool") == f"echo {TOKENS[token]} | tool"
    assert redact(f'client = Client("{token}")') == f'client = Client("{TOKENS[token]}")'


ORDINARY = """\
ls -la ~/data && mkdir -p results/a
mysql -h db.example -P 3306 -u me -p analysis
curl -u me https://api.example/x
curl -H 'Accept: application/json' -sS https://api.example/x
ssh -p 2222 me@h.example
sshpass -f ~/.pw ssh -p 2222 me@h.example
docker run -p 8888:8888 img
git clone https://github.example/org/repo.git
git clone https://me@git.example/org/repo.git
git clone git@github.example:org/repo.git
pip install scikit-learn task-sk-1
PGPASSWORD=$(cat ~/.pgpass_x) psql -h db
os.environ["CUDA_VISIBLE_DEVICES"] = "0"
os.environ["HF_TOKEN"] = getpass.getpass()
tokenizer = AutoTokenizer.from_pretrained("gpt2", max_tokens=100)
token = os.environ["HF_TOKEN"]
def login(token: str) -> None:
class Settings:
    token: str = ""
    password: Optional[str] = None
if secret:
{"token_type": "bearer", "expires_in": 3600}
max_tokens: 100
db:
  password: ${DB_PASSWORD}
  token: !vault |
  host: db.example
"""


def test_ordinary_commands_and_code_stay_unchanged():
    assert redact(ORDINARY) == ORDINARY


def test_notebook_snapshot_stores_cells_and_outputs_redacted(tmp_path, cs_home):
    """A notebook saved into a session: what the snapshot stores and what a restore writes back."""
    from cybershuttle import session

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('import os\nos.environ["HF_TOKEN"] = "S3CRETA"\n'
                                  'os.environ["CUDA_VISIBLE_DEVICES"] = "0"'),
        nbformat.v4.new_code_cell("!mysql -u me -pS3CRETB -e 'select 1'",
                                  outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")]),
        nbformat.v4.new_code_cell("config", outputs=[nbformat.v4.new_output(
            "execute_result", execution_count=3,
            data={"text/plain": "{'password': 'S3CRETC', 'user': 'me'}",
                  "application/json": {"password": "S3CRETC", "user": "me", "key": "hf_" + "S3CRETD" * 4}})]),
        nbformat.v4.new_code_cell("print('" + "sk-proj-" + "S3CRETx0" * 8 + "')"),
    ]
    path = tmp_path / "work.ipynb"
    nbformat.write(nb, path)
    session.attach("nbsecrets", path)
    for stored in cs_home.rglob("*"):
        if stored.is_file():
            assert b"S3CRET" not in stored.read_bytes(), stored

    back = tmp_path / "back"
    session.restore("nbsecrets", str(back), runtimes=False, mounts=False)
    cells = nbformat.read(back / "work.ipynb", as_version=4).cells
    assert cells[0].source == 'import os\nos.environ["HF_TOKEN"] = "REDACTED"\nos.environ["CUDA_VISIBLE_DEVICES"] = "0"'
    assert cells[1].source == "!mysql -u me -pREDACTED -e 'select 1'" and cells[1].outputs[0].text == "1\n"
    data = cells[2].outputs[0].data
    assert data["text/plain"] == "{'password': 'REDACTED', 'user': 'me'}"
    assert data["application/json"] == {"password": "REDACTED", "user": "me", "key": "hf_REDACTED"}
    assert cells[3].source == "print('sk-proj-REDACTED')"
    assert json.loads(Path(back / "work.ipynb").read_text())["nbformat"] == 4
