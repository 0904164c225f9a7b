"""Secrets out of session text before anything is written.

Sessions are replayable histories; a password typed on a command line or a
token pasted into a cell must not end up in the profile. Everything a session
stores (command lines, call arguments, cell sources, notebook snapshots) goes
through `redact()` first. The redacted value becomes the word REDACTED, so a
replay of such a step fails visibly instead of using a stale secret.
"""
from __future__ import annotations

import re
from typing import Any, Callable

MARK = "REDACTED"

# A value as a shell or a URL writes it: quoted, or up to the next separator.
# Values starting with `$` are references ($VAR, $(cat file)), not secrets; so are Python's
# `os.environ[...]`, `os.getenv(...)` and `getpass...` (where a secret is read from).
_VALUE = r"""(?:"[^"]*"|'[^']*'|(?!\$|(?:os\.)?(?:environ\b|getenv\b|getpass\b))[^\s&;|'"]+)"""
_SECRET_WORDS = r"(?:password|passwd|passphrase|token|secret|api[-_]?key|access[-_]?key|secret[-_]?key|auth)"

_QUOTED = r"""(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
# environment variable names that hold credentials (os.environ["CUDA_VISIBLE_DEVICES"] = "0" stays)
_SECRET_ENV = r"[A-Za-z0-9_]*(?:TOKEN|KEY|PASS|PWD|SECRET|CREDENTIAL)[A-Za-z0-9_]*"
# JSON/YAML field names that hold credentials: the name ends with one of these ("token_type" stays)
_FIELD_WORDS = (r"(?:password|passwd|passphrase|token|secret|api[-_]?key|access[-_]?key|secret[-_]?key|"
                r"private[-_]?key|client[-_]?secret)")


def _keep(prefix_groups: int, value_group: int | None = None) -> Callable[[re.Match[str]], str]:
    """A replacement keeping the first groups and the value's quotes: `x = 'REDACTED'` stays valid Python.

    The value is the group after the kept ones, or `value_group` where a quote captured inside the
    kept prefix (for a back-reference) comes in between.
    """

    def replace(match: re.Match[str]) -> str:
        value = match.group(value_group or prefix_groups + 1)
        quote = value[0] if value[:1] in ("'", '"') else ""
        return "".join(match.group(i) for i in range(1, prefix_groups + 1)) + quote + MARK + quote

    return replace


_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # PEM private keys, whole (or from BEGIN to the end when pasted cut short)
    (re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)", re.S),
     f"-----BEGIN PRIVATE KEY----- {MARK} -----END PRIVATE KEY-----"),
    # --password=VALUE, --token VALUE, --api-key=VALUE
    (re.compile(r"(--?" + _SECRET_WORDS + r"(?:[-_][A-Za-z]+)*)(=|\s+)(" + _VALUE + ")", re.I), _keep(2)),
    # NAME_TOKEN=..., NAME_KEY=..., NAME_PASSWORD=..., NAME_SECRET=... (shell or Python assignments, env lines)
    (re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*(?:TOKEN|KEY|PASSWORD|PASSWD|SECRET|PASSPHRASE))(\s*=\s*)(" + _VALUE + ")",
                re.I), _keep(2)),
    # token=..., password=..., secret=... (query strings, key=value arguments, Python keyword arguments)
    (re.compile(r"\b(" + _SECRET_WORDS + r")(\s*=\s*)(" + _VALUE + ")", re.I), _keep(2)),
    # Authorization headers
    (re.compile(r"(authorization:\s*(?:bearer|basic|token)\s+)[^\s'\"]+", re.I), rf"\1{MARK}"),
    # user:password@host in URLs
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(@)", re.I), rf"\1{MARK}\2"),
    # https://TOKEN@host (a git remote carrying a token as its user): a long user name with a digit in it;
    # short ones (https://me@host, ssh://git@host) are user names and stay
    (re.compile(r"(\bhttps?://)(?=[A-Za-z_-]*\d)[A-Za-z0-9_.~-]{20,}(@)", re.I), rf"\1{MARK}\2"),
    # database clients: mysql -pSECRET (only glued to -p; a bare -p prompts), MYSQL_PWD= and SSHPASS= in the env
    (re.compile(r"(\b(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mysqlcheck|mariadb(?:-dump|-admin)?)\b"
                r"[^\n;&|]*?\s-p)(" + _VALUE + ")"), _keep(1)),
    (re.compile(r"\b(MYSQL_PWD|SSHPASS)(=)(" + _VALUE + ")"), _keep(2)),
    # sshpass -p SECRET (among sshpass's own options, before the command it runs: `ssh -p 22` is a port)
    (re.compile(r"(\bsshpass(?:\s+-[a-oq-zA-Z]\S*)*\s+-p\s*)(" + _VALUE + ")"), _keep(1)),
    # curl -u user:SECRET / --user user:SECRET (a user without ':' makes curl prompt: nothing to hide)
    (re.compile(r"(\bcurl\b[^\n;&|]*?\s(?:-u\s*|--user(?:=|\s+))([\"']?)[^\s:'\"]+:)[^\s'\"]+"),
     rf"\1{MARK}"),
    # other credential headers: -H 'PRIVATE-TOKEN: x', -H 'X-Api-Key: x'
    (re.compile(r"((?:-H\s*|--header(?:=|\s+))[\"']?[A-Za-z0-9-]*(?:token|api-?key|secret|password)[A-Za-z0-9-]*:\s*)"
                r"[^\s'\"]+", re.I), rf"\1{MARK}"),
    # well-known token prefixes (code hosts, AI and cloud APIs): the prefix stays, so one still sees which kind
    (re.compile(r"(?<![A-Za-z0-9_-])(gh[pousr]_|github_pat_|glpat-|hf_|xox[baprs]-)[A-Za-z0-9_-]{16,}"), rf"\1{MARK}"),
    (re.compile(r"(?<![A-Za-z0-9_-])(sk-(?:proj-|ant-(?:[a-z]+\d\d-)?|svcacct-)?)(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{20,}"),
     rf"\1{MARK}"),
    (re.compile(r"(?<![A-Za-z0-9])((?:AKIA|ASIA))[0-9A-Z]{16}(?![A-Za-z0-9])"), rf"\1{MARK}"),
    (re.compile(r"(?<![A-Za-z0-9_-])(AIza)[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"), rf"\1{MARK}"),
    # Python: os.environ["X_TOKEN"] = "...", os.environ.setdefault("X_TOKEN", "..."), os.putenv("X_TOKEN", "...");
    # only literal strings (a call like getpass() is where the secret comes from, not the secret)
    (re.compile(r"(\benviron\[\s*([\"'])" + _SECRET_ENV + r"\2\s*\]\s*=\s*)(" + _QUOTED + ")", re.I),
     _keep(1, 3)),
    (re.compile(r"(\b(?:environ\.setdefault|putenv)\(\s*([\"'])" + _SECRET_ENV + r"\2\s*,\s*)(" + _QUOTED + ")", re.I),
     _keep(1, 3)),
    # JSON (and Python dict literals): "password": "...", 'api_key': '...'
    (re.compile(r"""(([\"'])[A-Za-z0-9_.-]*?""" + _FIELD_WORDS + r"""\2\s*:\s*)(""" + _QUOTED + ")", re.I),
     _keep(1, 3)),
    # YAML: `token: value` on its own line; ${VAR} references, tags, blocks and Python annotations
    # (`token: str = ...`) stay
    (re.compile(r"""^(\s*(?:-\s+)?[A-Za-z0-9_.-]*?""" + _FIELD_WORDS + r"""\s*:[ \t]+)"""
                r"""(""" + _QUOTED + r"""|(?![^\n]*\s=\s)(?!(?:str|bytes|int|None|Any|Optional|SecretStr)\b)"""
                r"""[^\s#'"{}\[\],&*!|>%@`$][^\n#]*?)"""
                r"""(?=[ \t]*(?:#.*)?$)""", re.I | re.M), _keep(1)),
]


def redact(text: str) -> str:
    """`text` with every recognised secret replaced by REDACTED."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """Redact every string inside a JSON-like value (dicts, lists, strings)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: (MARK if _is_secret_name(k) and v else redact_value(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def _is_secret_name(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(r"(?:.*_)?" + _SECRET_WORDS + r"(?:_.*)?", name, re.I) is not None
