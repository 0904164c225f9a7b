"""Make the test cluster's local conda channels from packages built here, then index them.

    python conda_channel.py CHANNELS_DIR

Writes `CHANNELS_DIR/conda-forge` and `CHANNELS_DIR/cstools`, two conda channels (`noarch/`
and `linux-64/` with `repodata.json`), standing in for a site's offline mirror. Every package
is a real conda package (`.tar.bz2`: `info/index.json`, `info/paths.json`, `info/files`,
`info/link.json` for noarch Python) made from things this machine has:

* conda-forge/python 3.X.Y: the cluster's own /usr/bin/python3 as a conda prefix. Debian's
  interpreter only searches `lib/pythonX.Y/site-packages` inside a virtual environment, so
  the package is venv-shaped: `pyvenv.cfg` plus `bin/pythonX.Y` linking to /usr/bin/pythonX.Y;
  conda and pip packages then install into the environment's own site-packages.
* conda-forge/pip: the pip wheel Debian ships (python3-pip-whl), as a noarch Python package
  with `pip`/`pip3` entry points.
* conda-forge/csmath 0.1.0 and 0.2.0: a pure-Python library (two versions, so a pin matters).
* conda-forge/csstats 1.0.0: a pure-Python library that depends on csmath >=0.1.
* cstools/cshello 1.0.0 and 2.0.0 (linux-64): a command-line tool whose script carries the
  build prefix placeholder, so an install must rewrite it to the environment's prefix.

Indexed with py-rattler's indexer (rattler-index, conda's repodata.json format): conda-index
imports the `conda` package, which cannot be installed from PyPI.

Idempotent: the channels are rebuilt only when this file or the Python changed (a stamp
records both), into a fresh directory renamed into place, so readers never see half a channel.
"""
from __future__ import annotations

import asyncio
import glob
import hashlib
import io
import json
import os
import shutil
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"  # conda-build's classic prefix placeholder
SYSTEM_PYTHON = "/usr/bin/python3"


class Package:
    """One conda package being assembled in memory."""

    def __init__(self, name: str, version: str, subdir: str, *, build: str = "0", depends=(), noarch: bool = False,
                 summary: str = "") -> None:
        self.name, self.version, self.subdir, self.noarch = name, version, subdir, noarch
        self.build = build
        self.depends = list(depends)
        self.summary = summary
        self.files: list[tuple[str, bytes | None, int, str | None]] = []  # path, data (None: symlink), mode, target
        self.placeholder_files: set[str] = set()
        self.entry_points: list[str] = []

    def add(self, path: str, data: bytes, mode: int = 0o644, prefix: bool = False) -> None:
        self.files.append((path, data, mode, None))
        if prefix:
            self.placeholder_files.add(path)

    def link(self, path: str, target: str) -> None:
        self.files.append((path, None, 0o777, target))

    def write(self, channel: Path) -> Path:
        out = channel / self.subdir / f"{self.name}-{self.version}-{self.build}.tar.bz2"
        out.parent.mkdir(parents=True, exist_ok=True)
        index = {"name": self.name, "version": self.version, "build": self.build, "build_number": 0,
                 "depends": self.depends, "license": "Apache-2.0", "subdir": self.subdir,
                 "timestamp": 1764547200000}  # fixed: the same input gives the same channel
        if self.noarch:
            index["noarch"] = "python"
        else:
            index.update({"arch": "x86_64", "platform": "linux"})
        paths = []
        for path, data, mode, target in self.files:
            if data is None:
                paths.append({"_path": path, "path_type": "softlink", "size_in_bytes": len(target or "")})
                continue
            entry = {"_path": path, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(),
                     "size_in_bytes": len(data)}
            if path in self.placeholder_files:
                entry.update({"prefix_placeholder": PLACEHOLDER, "file_mode": "text"})
            paths.append(entry)
        info = {
            "info/index.json": json.dumps(index, indent=2).encode(),
            "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2).encode(),
            "info/files": "".join(p[0] + "\n" for p in self.files).encode(),
            "info/about.json": json.dumps({"summary": self.summary or self.name,
                                           "home": "tests/cluster/conda_channel.py"}).encode(),
        }
        if self.placeholder_files:
            info["info/has_prefix"] = "".join(f"{PLACEHOLDER} text {p}\n" for p in sorted(self.placeholder_files)).encode()
        if self.noarch:
            info["info/link.json"] = json.dumps({"noarch": {"type": "python", "entry_points": self.entry_points},
                                                 "package_metadata_version": 1}).encode()
        with tarfile.open(out, "w:bz2") as tar:
            for name, data in sorted(info.items()):
                _add_member(tar, name, data, 0o644)
            for path, data, mode, target in self.files:
                if data is None:
                    member = tarfile.TarInfo(path)
                    member.type, member.linkname, member.mode, member.mtime = tarfile.SYMTYPE, target, 0o777, 0
                    tar.addfile(member)
                else:
                    _add_member(tar, path, data, mode)
        return out


def _add_member(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    member = tarfile.TarInfo(name)
    member.size, member.mode, member.mtime = len(data), mode, 0
    tar.addfile(member, io.BytesIO(data))


def python_package() -> Package:
    version = ".".join(str(v) for v in sys.version_info[:3])
    short = f"{sys.version_info[0]}.{sys.version_info[1]}"
    real = os.path.realpath(SYSTEM_PYTHON)
    pkg = Package("python", version, "linux-64", build="0_system", summary=f"The cluster's own Python {version} ({real})")
    pkg.add("pyvenv.cfg", f"home = {os.path.dirname(real)}\ninclude-system-site-packages = false\n"
                          f"version = {version}\n".encode())
    pkg.link(f"bin/python{short}", real)
    pkg.link("bin/python3", f"python{short}")
    pkg.link("bin/python", f"python{short}")
    # A conda package cannot hold an empty directory: a marker makes site-packages exist.
    pkg.add(f"lib/python{short}/site-packages/README.cybershuttle",
            b"site-packages of this conda environment (the interpreter is the cluster's own Python)\n")
    return pkg


def pip_package() -> Package | None:
    wheels = sorted(glob.glob("/usr/share/python-wheels/pip-*-py3-none-any.whl"))
    if not wheels:
        return None
    wheel = wheels[-1]
    version = Path(wheel).name.split("-")[1]
    pkg = Package("pip", version, "noarch", build="py_0", depends=["python >=3.7"], noarch=True,
                  summary="pip, from the wheel Debian ships")
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if name.endswith("/"):
                continue
            pkg.add(f"site-packages/{name}", zf.read(name))
    pkg.entry_points = ["pip = pip._internal.cli.main:main", "pip3 = pip._internal.cli.main:main"]
    return pkg


def csmath(version: str) -> Package:
    pkg = Package("csmath", version, "noarch", build="py_0", depends=["python >=3.8"], noarch=True,
                  summary="A small pure-Python library (Cybershuttle test channel)")
    pkg.add("site-packages/csmath/__init__.py",
            f'"""csmath {version}: arithmetic for the Cybershuttle conda tests."""\n'
            f'__version__ = "{version}"\n\n\ndef mean(values):\n    values = list(values)\n'
            f'    return sum(values) / len(values)\n'.encode())
    return pkg


def csstats() -> Package:
    pkg = Package("csstats", "1.0.0", "noarch", build="py_0", depends=["python >=3.8", "csmath >=0.1"], noarch=True,
                  summary="A pure-Python library that depends on csmath (Cybershuttle test channel)")
    pkg.add("site-packages/csstats/__init__.py",
            b'"""csstats: uses csmath, so installing it must bring csmath along."""\n'
            b'import csmath\n\n__version__ = "1.0.0"\n\n\ndef variance(values):\n    values = list(values)\n'
            b'    m = csmath.mean(values)\n    return csmath.mean((v - m) ** 2 for v in values)\n')
    return pkg


def cshello(version: str) -> Package:
    pkg = Package("cshello", version, "linux-64", build="h0_0", summary="A command-line tool (Cybershuttle test channel)")
    pkg.add("bin/cshello", (f'#!/bin/sh\n# Installed into {PLACEHOLDER}; conda rewrites the prefix at install time.\n'
                            f'echo "cshello {version} from {PLACEHOLDER}"\n').encode(), mode=0o755, prefix=True)
    return pkg


def build(target: Path) -> None:
    forge, tools = target / "conda-forge", target / "cstools"
    for channel in (forge, tools):
        for subdir in ("noarch", "linux-64"):
            (channel / subdir).mkdir(parents=True, exist_ok=True)
    packages = [python_package(), csmath("0.1.0"), csmath("0.2.0"), csstats()]
    pip = pip_package()
    if pip is not None:
        packages.append(pip)
    for pkg in packages:
        pkg.write(forge)
    for version in ("1.0.0", "2.0.0"):
        cshello(version).write(tools)
    from rattler.index import index_fs

    for channel in (forge, tools):
        # Plain repodata.json only: what every conda client reads.
        asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))
        shutil.rmtree(channel / ".tmp", ignore_errors=True)  # the indexer's scratch space


def main() -> int:
    target = Path(sys.argv[1]).resolve()
    stamp_text = hashlib.sha256(Path(__file__).read_bytes() + os.path.realpath(SYSTEM_PYTHON).encode()
                                + sys.version.encode() + sysconfig.get_platform().encode()).hexdigest()
    stamp = target / ".built"
    if stamp.is_file() and stamp.read_text().strip() == stamp_text:
        return 0
    fresh = target.with_name(target.name + f".new-{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    t0 = time.monotonic()
    build(fresh)
    (fresh / ".built").write_text(stamp_text + "\n")
    for root, dirs, files in os.walk(fresh):  # world-readable: every cluster user reads the channel
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    os.chmod(fresh, 0o755)
    old = target.with_name(target.name + f".old-{os.getpid()}")
    if target.exists():
        os.rename(target, old)
    os.rename(fresh, target)
    shutil.rmtree(old, ignore_errors=True)
    print(f"conda channels conda-forge and cstools built in {target} ({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
