"""The site catalog on PostgreSQL: the `Registry` interface, ownership kept by the database.

`CYBERSHUTTLE_SITE_CATALOG=postgresql:///cybershuttle` (any libpq URI). Users connect
over the server's unix socket with peer authentication, so the database role *is*
the OS user, and no client can claim to be someone else:

* the `owner`, `created` and `updated` columns are written by a trigger
  (`current_user`, the server's clock), whatever the client sends;
* row-level security lets every role read every entry and only the owner
  update or delete it; `FORCE` makes it bind the table's owner too.

The tables belong to the site's administrator (the role that runs the migrations:
`cybershuttle site upgrade`); users get row rights only, so nobody but the
administrator can drop a policy. Which roles may use the catalog at all is the
database's CONNECT privilege.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict

from . import names
from .errors import CybershuttleError
from .registry import (BACKENDS, Entry, Registry, Scope, _dumps, already_exists, apply_change, like_pattern,
                       newer_schema, not_owner)

#: Ordered schema migrations; entry i brings the schema from version i to i+1 (one transaction).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE entries (
        kind    text NOT NULL,
        name    text NOT NULL,
        owner   text NOT NULL DEFAULT current_user,
        data    text NOT NULL,
        created double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
        updated double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
        PRIMARY KEY (kind, name)
    );
    -- Listing pages by name in byte order (as SQLite and Python sort), whatever the database's locale.
    CREATE INDEX entries_kind_name_bytes ON entries (kind, name COLLATE "C");

    -- The database, not the client, says who owns an entry and when it was made. Only the
    -- administrator (a member of the table's owner role) may keep given values: `site migrate`.
    CREATE FUNCTION entries_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        keep boolean := TG_OP = 'INSERT'
            AND coalesce(current_setting('cybershuttle.keep_owner', true), '') = 'on'
            AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER');
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            NEW.owner := OLD.owner;
            NEW.created := OLD.created;
        ELSIF NOT keep THEN
            NEW.owner := current_user;
            NEW.created := extract(epoch FROM clock_timestamp());
        END IF;
        IF NOT keep THEN
            NEW.updated := extract(epoch FROM clock_timestamp());
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER entries_stamp BEFORE INSERT OR UPDATE ON entries
        FOR EACH ROW EXECUTE FUNCTION entries_stamp();

    ALTER TABLE entries ENABLE ROW LEVEL SECURITY;
    ALTER TABLE entries FORCE ROW LEVEL SECURITY;
    CREATE POLICY entries_read ON entries FOR SELECT USING (true);
    CREATE POLICY entries_insert ON entries FOR INSERT WITH CHECK (owner = current_user
        OR pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = 'entries'::regclass), 'MEMBER'));
    CREATE POLICY entries_update ON entries FOR UPDATE USING (owner = current_user) WITH CHECK (owner = current_user);
    CREATE POLICY entries_delete ON entries FOR DELETE USING (owner = current_user);
    GRANT SELECT, INSERT, UPDATE, DELETE ON entries TO PUBLIC;
    """,
    # Searches are ILIKE '%word%' over name and data: trigram indexes answer them without reading
    # every row (10,000 entries: 15 ms a search became about 1 ms). pg_trgm is a trusted extension.
    """
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX entries_name_trgm ON entries USING gin (name gin_trgm_ops);
    CREATE INDEX entries_data_trgm ON entries USING gin (data gin_trgm_ops);
    """,
    # The stamping trigger runs with the writer's rights: it must not resolve a name through a
    # schema the writer controls.
    """
    ALTER FUNCTION entries_stamp() SET search_path = pg_catalog, pg_temp;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
#: pg_advisory_xact_lock key serialising concurrent migrations ("cyshuttl" as an int).
_MIGRATION_LOCK = 0x637973687574746C
_COLUMNS = "kind, name, owner, data, created, updated"


class PostgresRegistry(Registry):
    """A catalog (normally the public one) in a PostgreSQL database."""

    def __init__(self, url: str, scope: Scope = "public") -> None:
        self.url = url
        self.scope: Scope = scope
        self.location = redact(url)
        self._local = threading.local()
        self._migrate()

    # -- the Registry interface ----------------------------------------------
    def add(self, kind: str, name: str, data: dict[str, Any], owner: str, *, replace: bool = False) -> Entry:
        # `owner` is ignored: the database records current_user.
        names.validate(name, f"{kind} name")
        payload = _dumps(data)
        conflict = "DO UPDATE SET data = EXCLUDED.data" if replace else "DO NOTHING"
        with self._errors(kind, name, "replace"), self._tx() as db:
            row = db.execute(
                f"INSERT INTO entries (kind, name, data) VALUES (%s, %s, %s) "
                f"ON CONFLICT (kind, name) {conflict} RETURNING {_COLUMNS}", (kind, name, payload)).fetchone()
        if row is None:
            raise already_exists(kind, name, self.scope)
        return self._entry(row)

    def update(self, kind: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Entry:
        with self._errors(kind, name, "change"), self._tx() as db:
            # FOR UPDATE sees only rows this role may update (RLS): the owner's own.
            row = db.execute(f"SELECT {_COLUMNS} FROM entries WHERE kind = %s AND name = %s FOR UPDATE",
                             (kind, name)).fetchone()
            if row is None:
                raise self._refusal(kind, name, "change")
            data = apply_change(json.loads(row[3]), change)
            row = db.execute(f"UPDATE entries SET data = %s WHERE kind = %s AND name = %s RETURNING {_COLUMNS}",
                             (_dumps(data), kind, name)).fetchone()
        return self._entry(row)

    def find(self, kind: str, name: str) -> Entry | None:
        with self._errors(kind, name, "read"):
            row = self._conn().execute(f"SELECT {_COLUMNS} FROM entries WHERE kind = %s AND name = %s",
                                       (kind, name)).fetchone()
        return self._entry(row) if row else None

    def list(self, kind: str, search: str | None = None, *, limit: int | None = None, offset: int = 0) -> list[Entry]:
        where, params = _where(kind, search)
        sql = f'SELECT {_COLUMNS} FROM entries WHERE {where} ORDER BY name COLLATE "C" LIMIT %s OFFSET %s'
        with self._errors(kind, "", "read"):
            rows = self._conn().execute(sql, [*params, limit, offset]).fetchall()
        return [self._entry(r) for r in rows]

    def names(self, kind: str, search: str | None = None, *, limit: int | None = None) -> list[str]:
        where, params = _where(kind, search)
        sql = f'SELECT name FROM entries WHERE {where} ORDER BY name COLLATE "C" LIMIT %s'
        with self._errors(kind, "", "read"):
            return [r[0] for r in self._conn().execute(sql, [*params, limit])]

    def remove(self, kind: str, name: str) -> Entry:
        with self._errors(kind, name, "remove"), self._tx() as db:
            row = db.execute(f"DELETE FROM entries WHERE kind = %s AND name = %s RETURNING {_COLUMNS}",
                             (kind, name)).fetchone()
            if row is None:  # absent, or (RLS) somebody else's
                raise self._refusal(kind, name, "remove")
        return self._entry(row)

    def count(self, kind: str, search: str | None = None) -> int:
        where, params = _where(kind, search)
        with self._errors(kind, "", "read"):
            return self._conn().execute(f"SELECT count(*) FROM entries WHERE {where}", params).fetchone()[0]

    def schema_version(self) -> int:
        return _version(self._conn())

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            if self._local.pid == os.getpid():  # never close a parent's connection from a fork
                conn.close()
            self._local.conn = None

    def identity(self, default: str) -> str:
        """The database role of this session (peer authentication: the OS user)."""
        self._conn()
        return self._local.role

    # -- administration --------------------------------------------------------
    def is_administrator(self) -> bool:
        """Whether this role owns the catalog's tables (and so may keep owners when migrating)."""
        return self._conn().execute(
            "SELECT pg_has_role(current_user, relowner, 'MEMBER') FROM pg_class WHERE oid = 'entries'::regclass"
        ).fetchone()[0]

    def existing(self, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Which of these (kind, name) pairs the catalog already holds."""
        if not keys:
            return []
        kinds, names_ = [k for k, _ in keys], [n for _, n in keys]
        with self._errors("entry", "", "read"):
            rows = self._conn().execute(
                "SELECT kind, name FROM entries JOIN unnest(%s::text[], %s::text[]) AS k(kind, name) "
                "USING (kind, name) ORDER BY kind, name", (kinds, names_)).fetchall()
        return [(k, n) for k, n in rows]

    def import_entries(self, entries: list[Entry]) -> list[tuple[str, str]]:
        """Insert entries keeping their owners and times, all or nothing.

        Returns the (kind, name) pairs that already exist; then nothing was inserted.
        """
        with self._errors("entry", "", "migrate into"), self._tx() as db:
            # No one registers meanwhile: the duplicate check stays true until commit.
            db.execute("LOCK TABLE entries IN SHARE ROW EXCLUSIVE MODE")
            db.execute("SET LOCAL cybershuttle.keep_owner = 'on'")
            taken = self.existing([(e.kind, e.name) for e in entries])
            if taken:
                return taken
            with db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO entries (kind, name, owner, data, created, updated) VALUES (%s, %s, %s, %s, %s, %s)",
                    [(e.kind, e.name, e.owner, _dumps(e.data), e.created, e.updated) for e in entries])
        return []

    # -- internals ---------------------------------------------------------------
    def _conn(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        # A forked child must not talk over its parent's socket: it opens its own.
        if conn is None or conn.closed or self._local.pid != os.getpid():
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10,
                                       application_name="cybershuttle")
            except psycopg.Error as exc:
                raise connect_error(self.location, self.url, exc) from None
            self._local.conn, self._local.pid = conn, os.getpid()
            self._local.role = conn.execute("SELECT current_user").fetchone()[0]
        return conn

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        conn = self._conn()
        with conn.transaction():
            yield conn

    @contextmanager
    def _errors(self, kind: str, name: str, verb: str) -> Iterator[None]:
        """The driver's errors as one line naming the catalog and what to do."""
        try:
            yield
        except pgerrors.InsufficientPrivilege as exc:
            if "row-level security" in str(exc) and name:
                owner = self._owner(kind, name)
                raise not_owner(kind, name, owner or "another user", verb) from None
            raise no_rights(self.location, getattr(self._local, "role", "?"), exc) from None
        except psycopg.OperationalError as exc:
            self._local.conn = None  # broken: the next call reconnects
            raise connect_error(self.location, self.url, exc) from None

    def _owner(self, kind: str, name: str) -> str | None:
        row = self._conn().execute("SELECT owner FROM entries WHERE kind = %s AND name = %s", (kind, name)).fetchone()
        return row[0] if row else None

    def _refusal(self, kind: str, name: str, verb: str) -> CybershuttleError:
        owner = self._owner(kind, name)
        return self._missing(kind, name) if owner is None else not_owner(kind, name, owner, verb)

    def _migrate(self) -> None:
        conn = self._conn()
        version = _version(conn)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise newer_schema(self.location, version, SCHEMA_VERSION)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS cybershuttle_schema (version integer NOT NULL)")
                conn.execute("GRANT SELECT ON cybershuttle_schema TO PUBLIC")
                version = _version(conn)  # re-read under the lock: someone may have migrated meanwhile
                for script in MIGRATIONS[version:]:
                    conn.execute(script)
                conn.execute("DELETE FROM cybershuttle_schema")
                conn.execute("INSERT INTO cybershuttle_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        except pgerrors.InsufficientPrivilege as exc:
            raise CybershuttleError(
                f"the site catalog {self.location} has schema version {version} and this Cybershuttle needs "
                f"{SCHEMA_VERSION}, which role {self._local.role} may not create ({_first_line(exc)}): the site's "
                "administrator must run `cybershuttle site upgrade` as the database's owner"
            ) from None

    def _entry(self, row: tuple[Any, ...]) -> Entry:
        kind, name, owner, data, created, updated = row
        return Entry(kind, name, owner, self.scope, json.loads(data), created, updated)


def redact(url: str) -> str:
    """The URI as messages may show it: without a password."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        userinfo, host = rest.split("@", 1)
        return f"{scheme}://{userinfo.split(':', 1)[0]}@{host}"
    return url


def connect_error(location: str, url: str, exc: Exception) -> CybershuttleError:
    """Why a connection failed, in one line that says what to do."""
    text = _first_line(exc)
    role = _role_of(url)
    low = text.lower()
    if "permission denied for database" in low:
        return no_rights(location, role, exc)
    if "does not exist" in low and "role" in low:
        return CybershuttleError(
            f"the site catalog {location} has no role {role} ({text}): ask the site's administrator to create it "
            f"(CREATE ROLE \"{role}\" LOGIN) and grant it CONNECT on the database")
    if "authentication failed" in low:
        return CybershuttleError(
            f"the site catalog {location} refused role {role} ({text}): with peer authentication the role is your "
            "login name; drop any other user name from CYBERSHUTTLE_SITE_CATALOG and PGUSER")
    if "database" in low and "does not exist" in low:
        return CybershuttleError(
            f"the site catalog {location} does not exist ({text}): create the database (createdb) or fix "
            "CYBERSHUTTLE_SITE_CATALOG")
    return CybershuttleError(
        f"cannot reach the site catalog {location} ({text}): start its PostgreSQL server (the test cluster: "
        "`bash tests/cluster/cluster.sh start`; a site: ask its administrator) or set CYBERSHUTTLE_SITE_CATALOG")


def no_rights(location: str, role: str, exc: Exception) -> CybershuttleError:
    return CybershuttleError(
        f"role {role} has no rights on the site catalog {location} ({_first_line(exc)}): ask the site's administrator "
        f"to grant them (GRANT CONNECT ON DATABASE ... TO \"{role}\")")


def _role_of(url: str) -> str:
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        params = {}
    role = params.get("user") or os.environ.get("PGUSER")
    if not role:
        import pwd

        role = pwd.getpwuid(os.geteuid()).pw_name
    return str(role)


def _version(conn: psycopg.Connection) -> int:
    if conn.execute("SELECT to_regclass('cybershuttle_schema')").fetchone()[0] is None:
        return 0
    row = conn.execute("SELECT max(version) FROM cybershuttle_schema").fetchone()
    return row[0] or 0


def _where(kind: str, search: str | None) -> tuple[str, list[Any]]:
    # ILIKE: SQLite's LIKE ignores case too, so both backends find the same entries.
    if not search:
        return "kind = %s", [kind]
    return "kind = %s AND (name ILIKE %s OR data ILIKE %s)", [kind, like_pattern(search), like_pattern(search)]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _open(url: str, scope: Scope) -> Registry:
    return PostgresRegistry(url, scope)


BACKENDS.update({"postgresql": _open, "postgres": _open})


def migrate_from_sqlite(target: Registry, source: str | os.PathLike[str]) -> list[Entry]:
    """Copy every entry of a SQLite site catalog into `target`, keeping owners and times.

    All or nothing: one transaction; names `target` already holds are listed in the error
    and nothing is copied. Entries of other owners need the catalog's administrator (the
    database would otherwise record the caller as their owner). Returns the copied entries.
    """
    if not isinstance(target, PostgresRegistry):
        raise CybershuttleError(
            f"the site catalog {target.location} is not a database: set CYBERSHUTTLE_SITE_CATALOG to a "
            "postgresql:// URI to migrate into")
    entries = _read_sqlite(os.fspath(source))
    me = target.identity("")
    others = sorted({e.owner for e in entries} - {me})
    if others and not target.is_administrator():
        raise CybershuttleError(
            f"{source} holds entries of {', '.join(others)}: only the site catalog's administrator keeps their "
            f"owners; run `cybershuttle site migrate` as the role that owns {target.location}'s tables")
    taken = target.import_entries(entries)
    if taken:
        shown = ", ".join(f"{k} {n!r}" for k, n in taken[:20])
        shown += f" and {len(taken) - 20} more" if len(taken) > 20 else ""
        raise CybershuttleError(
            f"{len(taken)} entr{'y' if len(taken) == 1 else 'ies'} of {source} already exist in the site catalog "
            f"{target.location}: {shown}; nothing was migrated (remove or rename them, then migrate again)")
    return entries


def _read_sqlite(path: str) -> list[Entry]:
    import sqlite3
    from pathlib import Path

    from .registry import SCHEMA_VERSION as SQLITE_SCHEMA

    if not Path(path).is_file():
        raise CybershuttleError(f"no SQLite catalog at {path}: give the site catalog's file (e.g. site/catalog.db)")
    import shutil
    import tempfile

    try:
        # Read from a private copy: the old catalog stays as it was, and a WAL-mode file can be
        # read by an administrator who may not write next to it (SQLite wants its -shm file there).
        with tempfile.TemporaryDirectory(prefix="cs-migrate-") as tmp:
            copy = Path(tmp) / "catalog.db"
            shutil.copyfile(path, copy)
            if Path(path + "-wal").is_file():
                shutil.copyfile(path + "-wal", str(copy) + "-wal")
            db = sqlite3.connect(copy)
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if not 1 <= version <= SQLITE_SCHEMA:
                    raise CybershuttleError(
                        f"{path} has catalog schema version {version}; this Cybershuttle reads 1 to {SQLITE_SCHEMA}")
                rows = db.execute("SELECT kind, name, owner, data, created, updated FROM entries ORDER BY kind, name")
                return [Entry(k, n, o, "public", json.loads(d), c, u) for k, n, o, d, c, u in rows]
            finally:
                db.close()
    except (sqlite3.Error, OSError) as exc:
        raise CybershuttleError(f"cannot read the SQLite catalog {path}: {exc}") from None
