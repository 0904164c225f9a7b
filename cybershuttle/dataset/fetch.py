"""Resumable downloads into a `.partial` file.

Over HTTP the next attempt asks for `Range: bytes=N-` (with `If-Range` on the
first response's ETag, so a changed file restarts instead of being spliced);
a server that ignores ranges sends it all again and the file restarts. From a
storage the open file is seeked to N. A dropped connection is retried while
each attempt makes progress; what arrived stays in the `.partial` file, so a
later `load` resumes where this one stopped.
"""
from __future__ import annotations

import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ..errors import CybershuttleError

Progress = Callable[[int, "int | None"], None]
_CHUNK = 1 << 20
_STALLED_TRIES = 3  # attempts in a row that bring no new byte before giving up
_TIMEOUT_S = 60.0


class DownloadError(CybershuttleError):
    """A download that failed; what arrived is kept for the next try."""

    http_status = 502


def http_get(url: str, partial: Path, *, progress: Progress | None = None,
         headers: dict[str, str] | None = None) -> Path:
    """Download `url` into `partial`, resuming what is there; returns `partial` complete."""
    etag_file = partial.with_name(partial.name + ".etag")
    stalled = 0
    while True:
        have = partial.stat().st_size if partial.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "cybershuttle", **(headers or {})})
        if have:
            request.add_header("Range", f"bytes={have}-")
            if etag_file.exists():
                request.add_header("If-Range", etag_file.read_text())
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:
                if have and resp.status != 206:
                    have = 0  # the server ignored the range (or the file changed): start over
                if resp.headers.get("ETag"):
                    etag_file.write_text(resp.headers["ETag"])
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length and length.isdigit() else None
                got = _copy(resp.read, partial, have, total, progress)
            if total is None or got == total:
                etag_file.unlink(missing_ok=True)
                return partial
            raise http.client.IncompleteRead(b"", total - got)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                size = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
                if size.isdigit() and int(size) == have:
                    return partial  # it was complete already
                partial.unlink()
                continue
            raise DownloadError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            now = partial.stat().st_size if partial.exists() else 0
            stalled = 0 if now > have else stalled + 1
            if stalled >= _STALLED_TRIES or (now == 0 and isinstance(exc, urllib.error.URLError)):
                reason = getattr(exc, "reason", None) or exc
                kept = f"; the {now} bytes that arrived are kept and the next load resumes" if now else ""
                raise DownloadError(f"downloading {url} failed: {reason}{kept}") from exc
            time.sleep(0.2 * stalled)


def storage_file(spec: str, partial: Path, *, progress: Progress | None = None) -> Path:
    """Copy the file `STORAGE:PATH` into `partial`, resuming what is there."""
    from .. import storage

    stalled = 0
    while True:
        have = partial.stat().st_size if partial.exists() else 0
        try:
            with storage.open(spec, "rb") as src:
                total = getattr(src, "size", None)
                if callable(total):
                    total = total()
                if have and total is not None and have > total:
                    partial.unlink()
                    continue
                if have:
                    src.seek(have)
                _copy(src.read, partial, have, total, progress)
            return partial
        except CybershuttleError:
            raise
        except (OSError, EOFError) as exc:
            now = partial.stat().st_size if partial.exists() else 0
            stalled = 0 if now > have else stalled + 1
            if stalled >= _STALLED_TRIES:
                raise DownloadError(f"copying {spec} failed: {exc}; the {now} bytes that arrived are kept "
                                    "and the next load resumes") from exc
            time.sleep(0.2 * stalled)


def storage_tree(spec: str, target: Path, *, progress: Progress | None = None) -> Path:
    """Copy the directory `STORAGE:PATH` into `target`; files already there at full size are skipped."""
    from .. import storage

    name, base = storage.split(spec)
    fs = storage.fs(name)
    base = base.strip("/")
    done = 0
    for path, info in sorted(fs.find(base, detail=True).items()):
        path = path.strip("/")
        rel = path[len(base):].lstrip("/") if base and path.startswith(base + "/") else path if not base else ""
        if not rel or rel.startswith("..") or "/../" in f"/{rel}/":
            raise DownloadError(f"copying {spec}: unexpected entry {path!r} outside the folder")
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        size = info.get("size")
        if not (dest.exists() and size is not None and dest.stat().st_size == size):
            with fs.open(path, "rb") as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
        done += dest.stat().st_size
        if progress:
            progress(done, None)
    return target


def _copy(read: Callable[[int], bytes], partial: Path, have: int, total: int | None,
          progress: Progress | None) -> int:
    """Append what `read` yields to `partial` (truncated to `have` first); returns the size."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    # The downloads directory is the user's private one; still, a link there is never written through.
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "r+b") as out:
        out.truncate(have)
        out.seek(have)
        done = have
        while True:
            block = read(_CHUNK)
            if not block:
                return done
            out.write(block)
            done += len(block)
            if progress:
                progress(done, total)
