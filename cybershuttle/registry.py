"""The catalog store: one small API over SQLite for every kind of entry.

Each entry is `(kind, name) -> data`, where `kind` is the module that owns it
("storage", "dataset", "compute", ...) and `data` a JSON object that module
defines. Two scopes share the API: the user's private catalog and the site's
public one (see `cybershuttle.profile`).

Why SQLite in WAL mode with `BEGIN IMMEDIATE`: two shells, the server and a
kernel write at the same time; an immediate transaction takes the write lock
up front, so read-modify-write never interleaves and the busy timeout makes
the others wait instead of failing. The schema carries a version
(`PRAGMA user_version`) and migrations run in order inside one transaction.

Everything above this module talks to `Registry`/`Catalog`, never to SQL, so
a site catalog can later move to PostgreSQL behind the same methods.
"""
from __future__ import annotations

import bisect
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, TypeVar

from . import names
from .errors import AlreadyExistsError, CybershuttleError, NotFoundError

Scope = Literal["private", "public"]
T = TypeVar("T")

#: Ordered schema migrations; entry i brings the schema from version i to i+1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE entries (
        kind    TEXT NOT NULL,
        name    TEXT NOT NULL,
        owner   TEXT NOT NULL,
        data    TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (kind, name)
    ) WITHOUT ROWID;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
_BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Entry:
    """One catalog entry as every front end sees it."""

    kind: str
    name: str
    owner: str
    scope: Scope
    data: dict[str, Any]
    created: float
    updated: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Registry:
    """One SQLite catalog file (one scope)."""

    def __init__(self, path: str | os.PathLike[str], scope: Scope = "private") -> None:
        self.path = Path(path)
        self.scope: Scope = scope
        self._local = threading.local()
        self._migrate()

    # -- public API --------------------------------------------------------
    def add(self, kind: str, name: str, data: dict[str, Any], owner: str, *, replace: bool = False) -> Entry:
        """Add an entry; an existing name is an error unless `replace`."""
        names.validate(name, f"{kind} name")
        now = time.time()
        payload = _dumps(data)
        with self._write() as db:
            row = db.execute("SELECT created FROM entries WHERE kind=? AND name=?", (kind, name)).fetchone()
            if row and not replace:
                raise AlreadyExistsError(
                    f"a {kind} named {name!r} already exists in the {self.scope} catalog: "
                    "choose another name or remove it first"
                )
            created = row[0] if row else now
            db.execute(
                "INSERT OR REPLACE INTO entries(kind, name, owner, data, created, updated) VALUES (?,?,?,?,?,?)",
                (kind, name, owner, payload, created, now),
            )
        return Entry(kind, name, owner, self.scope, data, created, now)

    def update(self, kind: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Entry:
        """Read-modify-write one entry atomically; `change` may mutate in place."""
        with self._write() as db:
            entry = self._get(db, kind, name)
            if entry is None:
                raise self._missing(kind, name)
            data = dict(entry.data)
            new = change(data)
            data = data if new is None else new
            now = time.time()
            db.execute("UPDATE entries SET data=?, updated=? WHERE kind=? AND name=?", (_dumps(data), now, kind, name))
        return Entry(kind, name, entry.owner, self.scope, data, entry.created, now)

    def find(self, kind: str, name: str) -> Entry | None:
        """The entry, or None."""
        return self._get(self._conn(), kind, name)

    def get(self, kind: str, name: str) -> Entry:
        """The entry, or NotFoundError naming what exists."""
        entry = self.find(kind, name)
        if entry is None:
            raise self._missing(kind, name)
        return entry

    def list(self, kind: str, search: str | None = None, *, limit: int | None = None, offset: int = 0) -> list[Entry]:
        """Entries of one kind sorted by name; `search` filters name and data text; `limit`/`offset` page."""
        where, params = self._where(kind, search)
        sql = f"SELECT kind, name, owner, data, created, updated FROM entries WHERE {where} ORDER BY name"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else limit, offset]
        rows = self._conn().execute(sql, params).fetchall()
        return [self._entry(r) for r in rows]

    def names(self, kind: str, search: str | None = None, *, limit: int | None = None) -> list[str]:
        """Just the names `list` would return (no JSON decoding: cheap for counting and paging)."""
        where, params = self._where(kind, search)
        sql = f"SELECT name FROM entries WHERE {where} ORDER BY name LIMIT ?"
        return [r[0] for r in self._conn().execute(sql, [*params, -1 if limit is None else limit])]

    def remove(self, kind: str, name: str) -> Entry:
        """Remove and return an entry."""
        with self._write() as db:
            entry = self._get(db, kind, name)
            if entry is None:
                raise self._missing(kind, name)
            db.execute("DELETE FROM entries WHERE kind=? AND name=?", (kind, name))
        return entry

    def count(self, kind: str, search: str | None = None) -> int:
        where, params = self._where(kind, search)
        return self._conn().execute(f"SELECT count(*) FROM entries WHERE {where}", params).fetchone()[0]

    def schema_version(self) -> int:
        return self._conn().execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- internals ---------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.scope == "private" and not self.path.exists():
                # Created 0600 before SQLite opens it; its -wal/-shm files inherit the mode.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            try:
                conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise CybershuttleError(f"cannot open the {self.scope} catalog {self.path}: {exc}") from exc
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise CybershuttleError(f"the {self.scope} catalog {self.path} is busy ({exc}); try again") from exc
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def _migrate(self) -> None:
        db = self._conn()
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._write():
            # Re-read inside the lock: another process may have migrated meanwhile.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CybershuttleError(
                    f"the catalog {self.path} has schema version {version}, newer than this "
                    f"Cybershuttle understands ({SCHEMA_VERSION}): upgrade cybershuttle"
                )
            for script in MIGRATIONS[version:]:
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @staticmethod
    def _where(kind: str, search: str | None) -> tuple[str, list[Any]]:
        where, params = "kind=?", [kind]
        if search:
            where += " AND (name LIKE ? ESCAPE '\\' OR data LIKE ? ESCAPE '\\')"
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [pattern, pattern]
        return where, params

    def _get(self, db: sqlite3.Connection, kind: str, name: str) -> Entry | None:
        row = db.execute(
            "SELECT kind, name, owner, data, created, updated FROM entries WHERE kind=? AND name=?", (kind, name)
        ).fetchone()
        return self._entry(row) if row else None

    def _entry(self, row: tuple[Any, ...]) -> Entry:
        kind, name, owner, data, created, updated = row
        return Entry(kind, name, owner, self.scope, json.loads(data), created, updated)

    def _missing(self, kind: str, name: str) -> NotFoundError:
        known = [e.name for e in self.list(kind)][:10]
        hint = f"known: {', '.join(known)}" if known else f"none is registered yet"
        return NotFoundError(f"no {kind} named {name!r} in the {self.scope} catalog ({hint})")


class Catalog:
    """The private and the public registry of one user, read as one."""

    def __init__(self, private: Registry, public: Registry, user: str) -> None:
        self.private = private
        self.public = public
        self.user = user

    def scope(self, public: bool) -> Registry:
        return self.public if public else self.private

    def add(self, kind: str, name: str, data: dict[str, Any], *, public: bool = False, replace: bool = False) -> Entry:
        """Register in one scope; a name taken in the other scope is refused too."""
        other = self.scope(not public).find(kind, names.validate(name, f"{kind} name"))
        if other is not None:
            raise AlreadyExistsError(
                f"a {kind} named {name!r} already exists in the {other.scope} catalog: choose another name"
            )
        return self.scope(public).add(kind, name, data, self.user, replace=replace)

    def find(self, kind: str, name: str) -> Entry | None:
        """Private entries shadow public ones of the same name."""
        return self.private.find(kind, name) or self.public.find(kind, name)

    def get(self, kind: str, name: str) -> Entry:
        names.validate(name, f"{kind} name")
        entry = self.find(kind, name)
        if entry is None:
            known = sorted({e.name for e in self.list(kind)})[:10]
            hint = f"known: {', '.join(known)}" if known else "none is registered yet"
            raise NotFoundError(f"no {kind} named {name!r} ({hint})")
        return entry

    def list(self, kind: str, search: str | None = None, *, limit: int | None = None, offset: int = 0) -> list[Entry]:
        """Both scopes merged by name (private shadows public); `limit`/`offset` page the merged list."""
        if limit is None and not offset:
            entries = {e.name: e for e in self.public.list(kind, search)}
            entries.update({e.name: e for e in self.private.list(kind, search)})
            return [entries[n] for n in sorted(entries)]
        # Page over the names first (no JSON decoding), then read only the page's rows: a
        # page's names are one contiguous run in each scope's sorted list.
        end = None if limit is None else offset + limit
        public, private = self.public.names(kind, search, limit=end), self.private.names(kind, search, limit=end)
        page = sorted(set(public) | set(private))[offset:end]
        found: dict[str, Entry] = {}
        for registry, known in ((self.public, public), (self.private, private)):
            if not page:
                break
            lo, hi = bisect.bisect_left(known, page[0]), bisect.bisect_right(known, page[-1])
            if hi > lo:
                found.update({e.name: e for e in registry.list(kind, search, limit=hi - lo, offset=lo)})
        return [found[n] for n in page if n in found]

    def count(self, kind: str, search: str | None = None) -> int:
        """How many entries `list(kind, search)` returns, without decoding them."""
        small, large = sorted((self.private, self.public), key=lambda r: r.count(kind, search))
        mine = small.names(kind, search)
        if len(mine) > 100:  # both scopes large: one set union
            return len(set(mine) | set(large.names(kind, search)))
        # usually a few private entries over a large site catalog: add those not shadowing one
        return large.count(kind, search) + sum(1 for name in mine if large.find(kind, name) is None)

    def update(self, kind: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Entry:
        entry = self.get(kind, name)
        self._check_owner(entry, "change")
        return self.scope(entry.scope == "public").update(kind, name, change)

    def remove(self, kind: str, name: str) -> Entry:
        entry = self.get(kind, name)
        self._check_owner(entry, "remove")
        return self.scope(entry.scope == "public").remove(kind, name)

    def _check_owner(self, entry: Entry, verb: str) -> None:
        if entry.scope == "public" and entry.owner != self.user:
            raise CybershuttleError(
                f"the public {entry.kind} {entry.name!r} belongs to {entry.owner}: only its owner can {verb} it"
            )


_catalogs: dict[tuple[str, str, str], Catalog] = {}


def catalog() -> Catalog:
    """The active user's catalog (cached per profile path)."""
    from . import profile

    prof = profile.active()
    key = (prof.user, str(prof.catalog), str(prof.site_catalog))
    if key not in _catalogs:
        _catalogs[key] = Catalog(Registry(prof.catalog, "private"), Registry(prof.site_catalog, "public"), prof.user)
    return _catalogs[key]


def dump_record(record: Any, key: str) -> dict[str, Any]:
    """A dataclass record as catalog data (without `key`, which is the entry's name)."""
    data = asdict(record)
    data.pop(key)
    return data


def load_record(cls: Callable[..., T], key: str, name: str, data: dict[str, Any]) -> T:
    """The inverse of `dump_record`; keys this version does not know are ignored."""
    from dataclasses import fields

    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: name}, **{k: v for k, v in data.items() if k in known and k != key})


def _dumps(data: dict[str, Any]) -> str:
    if not isinstance(data, dict):
        raise TypeError("catalog data must be a dict")
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
