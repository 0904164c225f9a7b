"""Datasets: a name over one or more locations, resolved to a read-only local path.

`load(name)` uses the nearest location (`locations` explains the order): one
on the host where the work runs is used in place; otherwise the data is
fetched once into the content-addressed cache (`cache`), resumably, its
sha256 recorded in the catalog, the after-download command (if any) run on
it, and the result sealed read-only.

API datasets are different: the catalog keeps a URL template (and, as a hint,
the header its owner uses), never a credential; `request(name, **params)` passes
straight through to the API with the credential the *caller's own* setting names,
only to hosts the caller approved (`credentials`).
"""
from __future__ import annotations

import os
import posixpath
import re
import secrets
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import names, trust
from ..errors import CybershuttleError, NotFoundError, UsageError
from ..registry import Entry, catalog
from . import cache, credentials, fetch, locations
from .locations import Location, LocationError

KIND = "dataset"
Progress = Callable[[int, "int | None"], None]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_\[\]<>, ]{0,63}")
_REQUEST_TIMEOUT_S = 60.0


@dataclass
class Dataset:
    """One dataset as every front end sees it (no secrets: only names of them)."""

    name: str
    locations: list[str]
    description: str = ""
    fields: list[dict[str, str]] = field(default_factory=list)
    after_download_command: str | None = None
    api: dict[str, Any] | None = None  # {"url_template", "auth_header", "auth_env", "parameters"}
    #: per fetched location, recorded on its first load: {"sha256", "size", "file"} (size and file None for a folder)
    checksums: dict[str, dict[str, Any]] = field(default_factory=dict)
    public: bool = False
    owner: str = ""
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register(name: str, location: str, *, after_download_command: str | None = None, public: bool = False,
             description: str = "", fields: str | list[Any] | None = None, auth_header: str | None = None,
             auth_env: str | None = None, api: bool = False) -> Dataset:
    """Register a dataset (see the module doc); `fields` is "name:type,..." or a list of pairs.

    `api=True` (implied by `auth_header`/`auth_env`) registers an API dataset whose
    location is a URL template such as `https://host/v1/items?page={page}`.
    """
    names.validate(name, "dataset name")
    api = api or bool(auth_header or auth_env)
    data: dict[str, Any] = {"description": description or "", "fields": parse_fields(fields)}
    if api:
        if after_download_command:
            raise UsageError("an API dataset passes requests through and caches nothing: "
                             "drop --after-download-command")
        data["api"] = _api_spec(location, auth_header, auth_env)
        data["locations"] = [location.strip()]
        host = credentials.approvable(data["api"]["url_template"]) if auth_env else ""  # checked before saving
    else:
        if after_download_command is not None and not after_download_command.strip():
            raise UsageError("the after-download command is empty: give a command such as 'tar -xz', or leave it out")
        data["locations"] = [locations.parse(location).text]
        data["after_download_command"] = after_download_command
    ds = _from_entry(catalog().add(KIND, name, data, public=public))
    if api and auth_env:
        # The registering user's own setting: their variable and header, to the URL's host only.
        credentials.save(name, auth_env, header=data["api"]["auth_header"], hosts=[host])
    return ds


def get(name: str) -> Dataset:
    """The dataset called `name` (your own, or a public one)."""
    return _from_entry(catalog().get(KIND, name))


def list_all(search: str | None = None, *, limit: int | None = None, offset: int = 0) -> list[Dataset]:
    """Datasets you can see (public and your own), sorted by name, optionally one page of them."""
    if (limit is not None and limit < 0) or offset < 0:
        raise UsageError("limit and offset must not be negative")
    return [_from_entry(e) for e in catalog().list(KIND, search, limit=limit, offset=offset)]


def count(search: str | None = None) -> int:
    """How many datasets `list_all(search)` would return."""
    return catalog().count(KIND, search)


def add_location(name: str, location: str) -> Dataset:
    """Add another copy of a dataset; `load` reads from the nearest one."""
    ds = get(name)
    if ds.api:
        raise UsageError(f"{name!r} is an API dataset: it has a single URL template")
    text = locations.parse(location).text

    def change(data: dict[str, Any]) -> None:
        if text in data["locations"]:
            raise CybershuttleError(f"{text!r} is already a location of dataset {name!r}")
        data["locations"] = [*data["locations"], text]

    return _from_entry(catalog().update(KIND, name, change))


def remove(name: str) -> Dataset:
    """Remove a dataset from the catalog, and its cache entries no other dataset of yours uses."""
    entry = catalog().remove(KIND, names.validate(name, "dataset name"))
    cache.drop_refs(name)
    return _from_entry(entry)


def where(name: str, resource: str | None = None) -> list[dict[str, Any]]:
    """The dataset's locations nearest first, with their tier, for work on `resource` (None: here)."""
    ds = get(name)
    res = _resource(resource)
    return [{"location": loc.text, "tier": tier, "where": locations.TIER_WORDS[tier]}
            for tier, loc in locations.nearest([locations.parse(t, check=False) for t in ds.locations], res)]


def load(name: str, to: str | os.PathLike[str] | None = None, *, progress: Progress | None = None,
         resource: str | None = None) -> str:
    """A read-only path holding the dataset, for work on this machine (or on compute `resource`).

    With `to`, also a symlink `to/NAME` pointing there, whose path is returned.
    """
    ds = get(name)
    trust.require(KIND, ds)  # another user's after-download command runs only when trusted; before any download
    if ds.api:
        raise UsageError(f"{name!r} is an API dataset and is not downloaded: call "
                         f"cybershuttle.dataset.request({name!r}, ...) to query it")
    res = _resource(resource)
    ranked = locations.nearest([locations.parse(t, check=False) for t in ds.locations], res)
    errors: list[str] = []
    failures: list[BaseException] = []
    for tier, loc in ranked:
        try:
            if tier <= locations.SAME_RESOURCE:  # on the host or the cluster where the work runs
                path = _in_place(loc)
                if ds.after_download_command:
                    if res is not None and res.host:
                        raise CybershuttleError(f"its after-download command runs on this machine, not on {res.name}")
                    path = _prepare(ds, Path(path), cache.file_sha256(Path(path)) if os.path.isfile(path) else "")
            elif res is not None and res.host:
                raise CybershuttleError(f"not on {res.name}: copy it to a storage there (`cybershuttle storage cp`) "
                                        f"and `cybershuttle dataset add-location {name} STORAGE:PATH`")
            else:
                path = _fetch(ds, loc, progress)
        except cache.AfterDownloadError:
            raise  # the command failed, not the location: another copy would fail the same way
        except (CybershuttleError, OSError) as exc:
            errors.append(f"{loc.text}: {exc}")
            failures.append(exc)
            continue
        return _link(path, to, name) if to is not None else path
    if len(failures) == 1 and len(ranked) == 1:
        raise failures[0]
    raise CybershuttleError(f"dataset {name!r} could not be loaded from any of its locations:\n  "
                            + "\n  ".join(errors))


def api_url(name: str, **params: Any) -> str:
    """The API dataset's URL with `params` filled in (URL-quoted)."""
    spec = _api(name)
    wanted = spec["parameters"]
    missing = [p for p in wanted if p not in params]
    unknown = [p for p in params if p not in wanted]
    if missing or unknown:
        raise UsageError(f"API dataset {name!r} takes the parameters {', '.join(wanted) or '(none)'}"
                         + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return spec["url_template"].format(**{k: urllib.parse.quote(str(v), safe="") for k, v in params.items()})


def request(name: str, **params: Any) -> bytes:
    """Call an API dataset: the URL filled in, the credential your own setting names (see `credentials`),
    sent only to a host you approved (a redirect elsewhere is refused, not followed)."""
    ds = get(name)
    spec = _api(name)
    url = api_url(name, **params)
    needs = bool(spec.get("auth_env") or spec.get("auth_header"))
    auth = credentials.headers_for(name, ds.owner, url, needs, catalog().user)
    opener = urllib.request.build_opener(_SameHosts(ds, credentials.get(name) if auth else None))
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "cybershuttle", **auth}),
                         timeout=_REQUEST_TIMEOUT_S) as r:
            return r.read()
    except urllib.error.HTTPError as exc:
        raise CybershuttleError(f"API dataset {name!r}: HTTP {exc.code} {exc.reason} from "
                                f"{urllib.parse.urlsplit(url).hostname}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise CybershuttleError(f"API dataset {name!r}: {getattr(exc, 'reason', exc)}") from exc


class _SameHosts(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a host the credential may go to (urllib would carry the header along)."""

    def __init__(self, ds: Dataset, setting: credentials.Setting | None) -> None:
        self.ds, self.setting = ds, setting

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        host = credentials.host_of(newurl)
        if self.setting is not None and host not in self.setting.hosts:
            raise credentials.CredentialError(
                f"API dataset {self.ds.name!r} (of {self.ds.owner}) redirected to {host}, which you have not approved "
                f"for your credential: nothing was sent there; if you trust it, `cybershuttle dataset credential "
                f"{self.ds.name} --env {self.setting.env} --approve-host {host}`")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def parse_fields(fields: str | list[Any] | None) -> list[dict[str, str]]:
    """`"image:tensor,label:int"` (or pairs, or dicts) -> [{"name": ..., "type": ...}, ...]."""
    if fields is None or fields == "":
        return []
    if isinstance(fields, str):
        pairs = []
        for part in re.split(r",(?![^\[<]*[\]>])", fields):  # commas inside tensor[3,32,32] stay
            fname, sep, ftype = part.strip().partition(":")
            if not sep:
                raise UsageError(f"field {part.strip()!r} has no type: write --fields name:type,... "
                                 "(for example image:tensor,label:int)")
            pairs.append((fname.strip(), ftype.strip()))
    else:
        pairs = [(f["name"], f["type"]) if isinstance(f, dict) else tuple(f) for f in fields]
    out: list[dict[str, str]] = []
    for fname, ftype in pairs:
        if not _FIELD.fullmatch(fname or ""):
            raise UsageError(f"{fname!r} is not a valid field name: letters, digits, '_', '.', '-'")
        if not _TYPE.fullmatch(ftype or ""):
            raise UsageError(f"field {fname!r} has an invalid type {ftype!r}: use a type name such as int, "
                             "float, str, image, tensor[3,32,32]")
        if any(f["name"] == fname for f in out):
            raise UsageError(f"field {fname!r} is given twice")
        out.append({"name": fname, "type": ftype})
    return out


# -- internals -------------------------------------------------------------
def _api_spec(location: str, auth_header: str | None, auth_env: str | None) -> dict[str, Any]:
    loc = locations.parse(location.replace("{", "").replace("}", ""), check=False)
    if loc.kind != "url":
        raise LocationError(f"an API dataset needs an http(s) URL template, not {location!r}")
    params = locations.template_fields(location)
    if auth_header and not credentials.HEADER.fullmatch(auth_header):
        raise UsageError(f"{auth_header!r} is not a valid HTTP header name (for example Authorization, X-API-Key)")
    if auth_env and not credentials.ENV_VAR.fullmatch(auth_env):
        raise UsageError(f"{auth_env!r} is not a valid environment variable name (for example MY_API_TOKEN)")
    if auth_header and not auth_env:
        raise UsageError(f"name the environment variable holding the {auth_header} value with --auth-env VAR "
                         "(the credential itself is never stored)")
    secret = os.environ.get(auth_env) if auth_env else None
    if secret and secret in location:
        raise UsageError("the URL template contains the credential itself: put a {placeholder} or nothing there "
                         "and let --auth-env supply it")
    return {"url_template": location.strip(), "auth_header": (auth_header or "Authorization") if auth_env else None,
            "auth_env": auth_env, "parameters": params}


def _api(name: str) -> dict[str, Any]:
    ds = get(name)
    if not ds.api:
        raise UsageError(f"{name!r} is not an API dataset: use cybershuttle.dataset.load({name!r})")
    return ds.api


def _resource(name: str | None) -> Any:
    if name is None:
        return None
    from .. import compute

    return compute.get(name)


def _in_place(loc: Location) -> str:
    """The path where the work runs: on this machine, or on the remote host of a storage there."""
    if loc.kind == "path":
        if not os.path.exists(loc.path):
            raise NotFoundError(f"{loc.path} no longer exists")
        return loc.path
    from .. import storage

    name, path = storage.split(loc.text)
    info = storage.get(name)
    if info.local:
        return storage.path(loc.text)
    sub = posixpath.normpath(path.lstrip("/") or ".")
    if sub == ".." or sub.startswith("../"):
        raise LocationError(f"{loc.text} leaves the storage {loc.storage}: use a path inside it")
    # A root not starting with / is under the login's home, where jobs and kernels start.
    return posixpath.normpath(posixpath.join(info.root, sub))


def _fetch(ds: Dataset, loc: Location, progress: Progress | None) -> str:
    """Fetch a URL or storage location into the cache (once), then prepare it."""
    with cache.locked(loc.text):  # two loads of one source: the second waits, then finds it cached
        blob = _cached(ds, loc)
        if blob is not None:
            pass
        elif loc.kind == "url":
            partial = fetch.http_get(loc.text, cache.partial_path(loc.text), progress=progress)
            name = cache.safe_name(Path(urllib.parse.urlsplit(loc.text).path).name)
            blob = cache.add_file(partial, _verified(ds, loc, cache.file_sha256(partial), partial, name), name)
        elif _storage_isdir(loc):
            work = cache.workdir()
            try:
                fetch.storage_tree(loc.text, work, progress=progress)
                digest = _verified(ds, loc, cache.tree_sha256(work), work, None)
            except BaseException:
                cache.discard(work)
                raise
            blob = cache.commit(work, digest)
        else:
            partial = fetch.storage_file(loc.text, cache.partial_path(loc.text), progress=progress)
            name = cache.safe_name(Path(loc.path).name)
            blob = cache.add_file(partial, _verified(ds, loc, cache.file_sha256(partial), partial, name), name)
    entry = blob if blob.is_dir() else blob.parent
    cache.add_refs(ds.name, [entry.name])
    return _prepare(ds, blob, entry.name) if ds.after_download_command else str(blob)


def _cached(ds: Dataset, loc: Location) -> Path | None:
    """The cache entry this location was fetched into before (per the catalog, or this user's index)."""
    record = ds.checksums.get(loc.text) or cache.remembered(loc.text)
    entry = cache.lookup(record["sha256"]) if record else None
    if record is None or entry is None:
        return None
    return entry / record["file"] if record.get("file") else entry


def _prepare(ds: Dataset, blob: Path, digest: str) -> str:
    """Run the after-download command on a file whose content hash is `digest`; returns its output."""
    if not blob.is_file():
        raise CybershuttleError(f"{blob} is a directory: an after-download command gets a file on its standard input")
    assert ds.after_download_command is not None
    out = cache.run_after_download(ds.after_download_command, blob,
                                   cache.key_of(f"{digest}\n{ds.after_download_command}"))
    cache.add_refs(ds.name, [out.name])
    return str(out)


def _verified(ds: Dataset, loc: Location, digest: str, got: Path, file: str | None) -> str:
    """Check a fresh download against the recorded checksum, or record it (owner only)."""
    recorded = ds.checksums.get(loc.text, {}).get("sha256")
    if recorded and recorded != digest:
        cache.discard(got) if got.is_dir() else got.unlink(missing_ok=True)
        raise CybershuttleError(
            f"the data at {loc.text} does not match the checksum recorded for dataset {ds.name!r} "
            f"(sha256 {recorded}, now {digest}): it changed since; if that is expected, "
            f"`cybershuttle dataset rm {ds.name}` and register it again"
        )
    record = {"sha256": digest, "size": got.stat().st_size if got.is_file() else None, "file": file}
    cache.remember(loc.text, record)
    if not recorded:

        def change(data: dict[str, Any]) -> None:
            data["checksums"] = {**data.get("checksums", {}), loc.text: record}

        entry = catalog().find(KIND, ds.name)
        if entry is not None and entry.owner == catalog().user:
            catalog().update(KIND, ds.name, change)
        # a public dataset of another user: only its owner records the checksum
    return digest


def _storage_isdir(loc: Location) -> bool:
    from .. import storage

    name, path = storage.split(loc.text)
    return bool(storage.fs(name).isdir(path))


def _link(path: str, to: str | os.PathLike[str], name: str) -> str:
    directory = Path(to).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / name
    if link.exists() and not link.is_symlink():
        raise CybershuttleError(f"{link} already exists and is not a link made by `dataset load`: "
                                "choose another --to directory or move it away")
    # A random temporary name (a fixed one in a shared --to directory is anyone's to plant or swap).
    tmp = directory / f".{name}.link-{secrets.token_hex(6)}"
    tmp.symlink_to(path)
    os.replace(tmp, link)
    return str(link)


def _from_entry(entry: Entry) -> Dataset:
    d = entry.data
    return Dataset(name=entry.name, locations=list(d.get("locations", [])), description=d.get("description", ""),
                   fields=list(d.get("fields", [])), after_download_command=d.get("after_download_command"),
                   api=d.get("api"), checksums=dict(d.get("checksums", {})),
                   public=entry.scope == "public", owner=entry.owner, created=entry.created)
