"""`cybershuttle site ...`: the site (public) catalog: where it is, its schema, moving it."""
from __future__ import annotations

import argparse

from .output import print_json
from .verbs import Group, arg

group = Group("site")


@group.verb(
    "info", "show where the site catalog is, its backend, schema version and who you are to it",
    "cybershuttle site info --json", listing=True)
def _info(args: argparse.Namespace) -> None:
    from .. import registry

    cat = registry.catalog()
    info = {"location": cat.public.location, "backend": type(cat.public).__name__,
            "schema_version": cat.public.schema_version(), "user": cat.user,
            "owner_name": cat.public.identity(cat.user)}
    if args.json:
        print_json(info)
        return
    for key, value in info.items():
        print(f"{key}: {value}")


@group.verb(
    "upgrade", "create or migrate the site catalog's schema (on PostgreSQL: run it as the database's owner)",
    "cybershuttle site upgrade   (as the database's owner, e.g. runuser -u postgres -- cybershuttle site upgrade)")
def _upgrade(args: argparse.Namespace) -> None:
    from .. import profile, registry

    # Opening it migrates it; the administrator needs no profile of their own for that.
    public = registry.open_registry(profile.site_catalog_location(), "public")
    print(f"site catalog {public.location}: schema version {public.schema_version()}")


@group.verb(
    "migrate", "move a SQLite site catalog into the PostgreSQL one (all or nothing; owners and times kept)",
    "cybershuttle site migrate --from ~/.cybershuttle/site/catalog.db",
    arg("--from", dest="source", required=True, metavar="FILE.db", help="the SQLite site catalog to copy"))
def _migrate(args: argparse.Namespace) -> None:
    from .. import profile, registry
    from ..registry_postgres import migrate_from_sqlite

    target = registry.open_registry(profile.site_catalog_location(), "public")
    print(f"migrating {args.source} into {target.location} ...", flush=True)
    moved = migrate_from_sqlite(target, args.source)
    owners = sorted({e.owner for e in moved})
    print(f"migrated {len(moved)} entries of {len(owners)} owner(s) ({', '.join(owners) or 'none'}) "
          f"into {target.location}")
