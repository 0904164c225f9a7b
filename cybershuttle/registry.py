"""The catalog store: one small API over every kind of entry, two backends.

Each entry is `(kind, name) -> data`, where `kind` is the module that owns it
("storage", "dataset", "compute", ...) and `data` a JSON object that module
defines. Two scopes share the API: the user's private catalog and the site's
public one (see `cybershuttle.profile`).

`Registry` is the interface; a location picks the backend (`open_registry`):
a file path is SQLite (`SqliteRegistry`, below), a `postgresql://` URI is
PostgreSQL (`cybershuttle.registry_postgres`), where the database itself sets
each entry's owner and lets only that owner change it (row-level security).

Why SQLite in WAL mode with `BEGIN IMMEDIATE`: two shells, the server and a
kernel write at the same time; an immediate transaction takes the write lock
up front, so read-modify-write never interleaves and the busy timeout makes
the others wait instead of failing. WAL needs memory shared by every writer,
which a network filesystem cannot give: there a site catalog is refused and a
private one uses the rollback journal (see `cybershuttle.netfs`). The schema
carries a version (`PRAGMA user_version`) and migrations run in order inside
one transaction.

Everything above this module talks to `Registry`/`Catalog`, never to SQL.
"""
from __future__ import annotations

import bisect
import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
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


class Registry(ABC):
    """One catalog (one scope) in some store: the interface both backends implement."""

    scope: Scope
    #: where it lives, as messages name it (a path, or a URI without its password)
    location: str

    @abstractmethod
    def add(self, kind: str, name: str, data: dict[str, Any], owner: str, *, replace: bool = False) -> Entry:
        """Add an entry; an existing name is an error unless `replace`.

        `owner` is what a store that cannot tell who writes records; a store that can
        (PostgreSQL) ignores it and records its own answer.
        """

    @abstractmethod
    def update(self, kind: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Entry:
        """Read-modify-write one entry atomically; `change` may mutate in place."""

    @abstractmethod
    def find(self, kind: str, name: str) -> Entry | None:
        """The entry, or None."""

    @abstractmethod
    def list(self, kind: str, search: str | None = None, *, limit: int | None = None, offset: int = 0) -> list[Entry]:
        """Entries of one kind sorted by name (byte order).

        `search` filters name and data text (case-insensitive); `limit`/`offset` page.
        """

    @abstractmethod
    def names(self, kind: str, search: str | None = None, *, limit: int | None = None) -> list[str]:
        """Just the names `list` would return (no JSON decoding: cheap for counting and paging)."""

    @abstractmethod
    def remove(self, kind: str, name: str) -> Entry:
        """Remove and return an entry."""

    @abstractmethod
    def count(self, kind: str, search: str | None = None) -> int:
        """How many entries `list(kind, search)` returns."""

    @abstractmethod
    def schema_version(self) -> int:
        """The store's schema version (migrations bring it to SCHEMA_VERSION on open)."""

    @abstractmethod
    def close(self) -> None:
        """Close this thread's connection (reopened on next use)."""

    def identity(self, default: str) -> str:
        """Who this store records as the writer: `default` (the OS user) unless it knows better."""
        return default

    def get(self, kind: str, name: str) -> Entry:
        """The entry, or NotFoundError naming what exists."""
        entry = self.find(kind, name)
        if entry is None:
            raise self._missing(kind, name)
        return entry

    def _missing(self, kind: str, name: str) -> NotFoundError:
        known = self.names(kind, limit=10)
        hint = f"known: {', '.join(known)}" if known else "none is registered yet"
        return NotFoundError(f"no {kind} named {name!r} in the {self.scope} catalog ({hint})")


#: Backends by URI scheme; anything that is not `SCHEME://...` is a SQLite file path.
BACKENDS: dict[str, Callable[[str, Scope], Registry]] = {}


def open_registry(location: str | os.PathLike[str], scope: Scope = "private") -> Registry:
    """The registry stored at `location`: a SQLite file path, or a URI of a registered backend."""
    text = os.fspath(location)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if not scheme:
        return SqliteRegistry(text, scope)
    if scheme not in BACKENDS:
        _load_backends()
    if scheme not in BACKENDS:
        raise CybershuttleError(
            f"the catalog location {text.split('://', 1)[0]}://... is not supported: use a file path "
            f"or one of {', '.join(s + '://' for s in sorted(BACKENDS))}"
        )
    return BACKENDS[scheme](text, scope)


def _load_backends() -> None:
    # Imported on demand: the PostgreSQL driver costs start-up time nobody with SQLite should pay.
    from . import registry_postgres  # noqa: F401  (registers itself in BACKENDS)


class SqliteRegistry(Registry):
    """One SQLite catalog file (one scope)."""

    def __init__(self, path: str | os.PathLike[str], scope: Scope = "private") -> None:
        self.path = Path(path)
        self.scope: Scope = scope
        self.location = str(self.path)
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
                raise already_exists(kind, name, self.scope)
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
            data = apply_change(entry.data, change)
            now = time.time()
            db.execute("UPDATE entries SET data=?, updated=? WHERE kind=? AND name=?", (_dumps(data), now, kind, name))
        return Entry(kind, name, entry.owner, self.scope, data, entry.created, now)

    def find(self, kind: str, name: str) -> Entry | None:
        """The entry, or None."""
        return self._get(self._conn(), kind, name)

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
            journal = self._journal_mode()
            if self.scope == "private" and not self.path.exists():
                # Created 0600 before SQLite opens it; its -wal/-shm files inherit the mode.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            try:
                conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
                conn.execute(f"PRAGMA journal_mode={journal}")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise CybershuttleError(f"cannot open the {self.scope} catalog {self.path}: {exc}") from exc
            self._local.conn = conn
        return conn

    def _journal_mode(self) -> str:
        """WAL, unless the file is on a network filesystem, where WAL's shared memory breaks."""
        from .netfs import network_filesystem

        fs = network_filesystem(self.path)
        if fs is None:
            return "WAL"
        if self.scope == "public":
            # Many people on many hosts write a site catalog: SQLite cannot lock that safely there.
            raise CybershuttleError(
                f"the site catalog {self.path} is on a network filesystem ({fs}), where SQLite's WAL mode "
                "corrupts databases written from several hosts: set CYBERSHUTTLE_SITE_CATALOG to a "
                "PostgreSQL URI (e.g. postgresql:///cybershuttle) or to a file on a local disk"
            )
        # One person's private catalog: the rollback journal and the filesystem's locks are enough.
        return "DELETE"

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
                raise newer_schema(self.location, version, SCHEMA_VERSION)
            for script in MIGRATIONS[version:]:
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @staticmethod
    def _where(kind: str, search: str | None) -> tuple[str, list[Any]]:
        where, params = "kind=?", [kind]
        if search:
            where += " AND (name LIKE ? ESCAPE '\\' OR data LIKE ? ESCAPE '\\')"
            params += [like_pattern(search)] * 2
        return where, params

    def _get(self, db: sqlite3.Connection, kind: str, name: str) -> Entry | None:
        row = db.execute(
            "SELECT kind, name, owner, data, created, updated FROM entries WHERE kind=? AND name=?", (kind, name)
        ).fetchone()
        return self._entry(row) if row else None

    def _entry(self, row: tuple[Any, ...]) -> Entry:
        kind, name, owner, data, created, updated = row
        return Entry(kind, name, owner, self.scope, json.loads(data), created, updated)


# -- helpers both backends share -------------------------------------------------
def apply_change(data: dict[str, Any], change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
    copy = dict(data)
    new = change(copy)
    return copy if new is None else new


def like_pattern(search: str) -> str:
    """`search` as a LIKE pattern matching it anywhere (its own % and _ taken literally, escape \\)."""
    return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def already_exists(kind: str, name: str, scope: str) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"a {kind} named {name!r} already exists in the {scope} catalog: choose another name or remove it first"
    )


def not_owner(kind: str, name: str, owner: str, verb: str) -> CybershuttleError:
    return CybershuttleError(f"the public {kind} {name!r} belongs to {owner}: only its owner can {verb} it")


def newer_schema(location: str, version: int, known: int) -> CybershuttleError:
    return CybershuttleError(
        f"the catalog {location} has schema version {version}, newer than this "
        f"Cybershuttle understands ({known}): upgrade cybershuttle"
    )


class Catalog:
    """The private and the public registry of one user, read as one."""

    def __init__(self, private: Registry, public: Registry, user: str) -> None:
        self.private = private
        self.public = public
        self.user = user

    def scope(self, public: bool) -> Registry:
        return self.public if public else self.private

    def add(self, kind: str, name: str, data: dict[str, Any], *, public: bool = False, replace: bool = False) -> Entry:
        """Register in one scope; a name taken in the other scope is refused too.

        `replace` replaces only the caller's own public entry. A SQLite site catalog relies
        on this check; PostgreSQL enforces the same rule itself (row-level security).
        """
        other = self.scope(not public).find(kind, names.validate(name, f"{kind} name"))
        if other is not None:
            raise AlreadyExistsError(
                f"a {kind} named {name!r} already exists in the {other.scope} catalog: choose another name"
            )
        target = self.scope(public)
        if public and replace:
            current = target.find(kind, name)
            if current is not None:
                self._check_owner(current, "replace")
        return target.add(kind, name, data, self._writer(public), replace=replace)

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
        # One scope empty (the usual case: a site catalog and no private entries of this kind):
        # the other pages itself, one query (what a site catalog on a server needs).
        for empty, other in ((self.private, self.public), (self.public, self.private)):
            if not empty.names(kind, search, limit=1):
                return other.list(kind, search, limit=limit, offset=offset)
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
        (small, small_n), (large, large_n) = sorted(
            ((r, r.count(kind, search)) for r in (self.private, self.public)), key=lambda pair: pair[1])
        if small_n == 0:
            return large_n
        mine = small.names(kind, search)
        if len(mine) > 100:  # both scopes large: one set union
            return len(set(mine) | set(large.names(kind, search)))
        # usually a few private entries over a large site catalog: add those not shadowing one
        return large_n + sum(1 for name in mine if large.find(kind, name) is None)

    def update(self, kind: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Entry:
        entry = self.get(kind, name)
        self._check_owner(entry, "change")
        return self.scope(entry.scope == "public").update(kind, name, change)

    def remove(self, kind: str, name: str) -> Entry:
        entry = self.get(kind, name)
        self._check_owner(entry, "remove")
        return self.scope(entry.scope == "public").remove(kind, name)

    def _writer(self, public: bool) -> str:
        """Who writes: the OS user, or the role the site's database knows this session as."""
        return self.public.identity(self.user) if public else self.user

    def owns(self, entry: Entry) -> bool:
        """Whether `entry` is the active user's: private, or public and written by them."""
        return entry.scope != "public" or entry.owner == self._writer(True)

    def _check_owner(self, entry: Entry, verb: str) -> None:
        if not self.owns(entry):
            raise not_owner(entry.kind, entry.name, entry.owner, verb)


_catalogs: dict[tuple[str, str, str], Catalog] = {}


def catalog() -> Catalog:
    """The active user's catalog (cached per profile path)."""
    from . import profile

    prof = profile.active()
    key = (prof.user, str(prof.catalog), str(prof.site_catalog))
    if key not in _catalogs:
        _catalogs[key] = Catalog(SqliteRegistry(prof.catalog, "private"), open_registry(prof.site_catalog, "public"),
                                 prof.user)
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
