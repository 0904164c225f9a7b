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
# Values starting with `$` are references ($VAR, $(cat file)), not secrets.
_VALUE = r"""(?:"[^"]*"|'[^']*'|(?!\$)[^\s&;|'"]+)"""
_SECRET_WORDS = r"(?:password|passwd|passphrase|token|secret|api[-_]?key|access[-_]?key|secret[-_]?key|auth)"

def _keep(prefix_groups: int) -> Callable[[re.Match[str]], str]:
    """A replacement keeping the first groups and the value's quotes: `x = 'REDACTED'` stays valid Python."""

    def replace(match: re.Match[str]) -> str:
        value = match.group(prefix_groups + 1)
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
