"""Builds one conda environment on a resource (copied there and run by a job's preamble).

    python envbuilder.py build SPEC_JSON

SPEC_JSON (made by `cybershuttle.compute.condaenv`): hash, envs_dir, specs (match specs, a
channel prefix already turned into its URL), channels ([{name, url}], in priority order),
platform, pip (requirements), tool (auto | rattler | micromamba | mamba | conda),
rattler (the py-rattler version), python (the resource's Python).

Standalone on purpose: it runs with the resource's own Python, which has no Cybershuttle.
It prints progress as `cybershuttle: ...` lines (the runtime relays those to the notebook)
and, on failure, one `cybershuttle: error: ...` line naming the packages and channels, then
exits 98 having removed everything it made.

* Once per resource: a lock file per environment serialises builders (two jobs asking for
  the same environment at once build it once; the second reuses the first's result).
* Nothing half-made: py-rattler installs into a temporary directory with the final prefix
  written into the files, pip runs there, and the directory is renamed into place with its
  `cybershuttle-env.json` already inside. A resource's own conda/mamba/micromamba cannot
  relocate an environment, so it builds in place and the marker file, written last, is what
  makes the environment exist; a failed or killed build is removed (or by the next builder).
* Without conda on the resource, py-rattler (the conda library behind pixi) is installed
  with pip into a small venv, ~/.cybershuttle/tools/py-rattler-VERSION, once.
"""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

MARKER = "cybershuttle-env.json"
ERROR_EXIT = 98


class BuildError(Exception):
    """A failure to report as the one error line."""


def say(text):
    sys.stderr.write("cybershuttle: " + text + "\n")
    sys.stderr.flush()


def main(argv):
    if len(argv) != 3 or argv[1] not in ("build", "solve-install"):
        sys.stderr.write("usage: envbuilder.py build|solve-install SPEC_JSON\n")
        return 2
    spec = json.loads(argv[2])
    signal.signal(signal.SIGTERM, _terminated)  # a cancelled job: clean up before going
    try:
        if argv[1] == "build":
            return build(spec)
        code = solve_install(spec)
    except BuildError as exc:
        say("error: " + " ".join(str(exc).split()))
        code = ERROR_EXIT
    # py-rattler's runtime threads can abort the interpreter's shutdown (a fatal
    # PyGILState error after an exception): leave without it, the work is on disk.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _terminated(signum, frame):
    raise BuildError("the build was cancelled (the job was stopped); nothing was kept")


def build(spec):
    envs = os.path.expanduser(spec["envs_dir"])
    final = os.path.join(envs, spec["hash"])
    if os.path.exists(os.path.join(final, MARKER)):
        say("conda environment %s is ready (cached)" % spec["hash"])
        return 0
    locks = os.path.join(envs, ".locks")  # kept apart: a lock file must outlive its build, the envs dir lists envs
    os.makedirs(locks, mode=0o700, exist_ok=True)
    with open(os.path.join(locks, spec["hash"] + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            say("waiting for another job that is building conda environment %s" % spec["hash"])
            fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(final, MARKER)):
            say("conda environment %s was built by another job; using it" % spec["hash"])
            return 0
        _remove_leftovers(envs, spec["hash"], final)
        t0 = time.time()
        tool = _pick_tool(spec.get("tool") or "auto")
        partial = os.path.join(envs, ".%s.partial-%d" % (spec["hash"], os.getpid()))
        target = final if tool != "rattler" else partial
        try:
            if tool == "rattler":
                python = _rattler_python(spec)
                say("solving %d conda package(s) with py-rattler from %s" % (len(spec["specs"]), _channel_list(spec)))
                code = subprocess.call([python, os.path.abspath(__file__), "solve-install",
                                        json.dumps(dict(spec, target=partial, final=final))])
                if code == ERROR_EXIT:
                    raise _Reported()
                if code != 0:
                    raise BuildError("py-rattler stopped with exit code %d while solving or installing; the lines "
                                     "above in the job's log say why" % code)
            else:
                _external_create(tool, spec, final)
            records = _installed(target)
            if spec.get("pip"):
                _pip_install(spec, target)
            if target != final:
                _fix_shebangs(target, final)
            meta = {"hash": spec["hash"], "specs": spec["specs"], "requested": spec.get("requested", spec["specs"]),
                    "channels": spec["channels"],
                    "platform": spec["platform"], "pip": spec.get("pip", []), "tool": tool,
                    "created": time.time(), "build_s": round(time.time() - t0, 2), "packages": records}
            with open(os.path.join(target, MARKER), "w") as fh:
                json.dump(meta, fh, indent=1)
            if target != final:
                os.rename(partial, final)
        except _Reported:
            shutil.rmtree(target, ignore_errors=True)
            return ERROR_EXIT
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        say("conda environment %s ready in %.1f s (%d conda packages%s)" % (
            spec["hash"], time.time() - t0, len(records),
            ", %d pip requirement(s)" % len(spec["pip"]) if spec.get("pip") else ""))
    return 0


class _Reported(Exception):
    """The child already printed the error line."""


def _remove_leftovers(envs, env_hash, final):
    # Under the lock nobody else builds this hash: what is here is from a killed builder.
    prefix = ".%s.partial-" % env_hash
    for name in os.listdir(envs):
        if name.startswith(prefix):
            shutil.rmtree(os.path.join(envs, name), ignore_errors=True)
    if os.path.isdir(final) and not os.path.exists(os.path.join(final, MARKER)):
        shutil.rmtree(final, ignore_errors=True)


def _channel_list(spec):
    return ", ".join(_channel_label(c) for c in spec["channels"])


def _channel_label(channel):
    return channel["name"] if channel["url"] == channel["name"] else "%s (%s)" % (channel["name"], channel["url"])


def _pick_tool(wanted):
    if wanted == "rattler":
        return "rattler"
    for tool in (("micromamba", "mamba", "conda") if wanted == "auto" else (wanted,)):
        if shutil.which(tool):
            return tool
    if wanted != "auto":
        raise BuildError("the resource's conda settings ask for %s, which is not on PATH here" % wanted)
    return "rattler"


# -- py-rattler -------------------------------------------------------------------------
def _rattler_python(spec):
    version = spec["rattler"]
    tools = os.path.expanduser("~/.cybershuttle/tools")
    venv = os.path.join(tools, "py-rattler-" + version)
    python = os.path.join(venv, "bin", "python")
    if os.path.exists(os.path.join(venv, ".ready")):
        return python
    if sys.version_info < (3, 10):
        raise BuildError("building conda environments without conda needs py-rattler, which needs Python 3.10 or "
                         "newer; %s is %d.%d: set the resource's python to a newer one, or install micromamba"
                         % (sys.executable, sys.version_info[0], sys.version_info[1]))
    os.makedirs(tools, mode=0o700, exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(venv, ".ready")):
            return python
        say("installing py-rattler %s (the conda solver and installer) into %s, once" % (version, venv))
        partial = "%s.partial-%d" % (venv, os.getpid())
        shutil.rmtree(partial, ignore_errors=True)
        try:
            _run([sys.executable, "-m", "venv", partial], "making the py-rattler venv")
            _run([os.path.join(partial, "bin", "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  "py-rattler==" + version], "pip install py-rattler==" + version)
            open(os.path.join(partial, ".ready"), "w").close()
            shutil.rmtree(venv, ignore_errors=True)
            os.rename(partial, venv)  # only `bin/python -m` is used, so the move breaks no script
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return python


def _run(cmd, what):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        last = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] or ["no output"]
        raise BuildError("%s failed: %s" % (what, last[0].strip()))
    return proc.stdout


def solve_install(spec):
    """Runs under the py-rattler venv's Python."""
    import asyncio

    return asyncio.run(_solve_install(spec))


async def _solve_install(spec):
    import rattler
    from rattler import Channel, Gateway, MatchSpec

    cache = os.path.expanduser("~/.cybershuttle/conda")
    gateway = Gateway(cache_dir=os.path.join(cache, "repodata"))
    platforms = [spec["platform"], "noarch"]
    channels = {c["url"]: Channel(c["url"]) for c in spec["channels"]}
    labels = {c["url"]: _channel_label(c) for c in spec["channels"]}
    matchspecs = [MatchSpec(s) for s in spec["specs"]]
    names = sorted({m.name.normalized for m in matchspecs})
    # Ask each channel on its own first: one unreachable channel must not hide what the
    # others lack, and the error can then name every missing package and channel at once.
    found = {}  # channel url -> name -> records
    unreachable = []
    for url, channel in channels.items():
        try:
            result = await gateway.query([channel], platforms, names, recursive=False)
        except Exception as exc:  # GatewayError and friends: the message says what failed
            unreachable.append("%s cannot be reached (%s)" % (labels[url], _first_line(exc)))
            continue
        by_name = {}
        for records in result:
            for record in records:
                by_name.setdefault(record.name.normalized, []).append(record)
        found[url] = by_name
    missing, mismatched = [], []
    for text, match in zip(spec["specs"], matchspecs):
        name = match.name.normalized
        wanted = [_spec_channel_url(text)] if _spec_channel_url(text) else list(channels)
        records = [r for url in wanted for r in found.get(url, {}).get(name, [])]
        if not records:
            if any(url in found for url in wanted):
                missing.append(name)
            continue
        if not any(match.matches(r) for r in records):
            have = sorted({str(r.version) for r in records})
            mismatched.append("%s (has %s)" % (_plain_spec(text), ", ".join(have[-5:])))
    problems = []
    if missing:
        problems.append("no channel has %s" % ", ".join(missing))
    if mismatched:
        problems.append("no version matches %s" % "; ".join(mismatched))
    problems += unreachable
    if problems:
        raise BuildError("cannot build the conda environment: %s (channels searched: %s); add a channel that has "
                         "them to the setup file, or ask the site to mirror them in the resource's conda channels"
                         % ("; ".join(problems), _channel_list(spec)))
    virtual = rattler.VirtualPackage.detect()
    try:
        records = await rattler.solve(list(channels.values()), matchspecs, gateway=gateway, platforms=platforms,
                                      virtual_packages=virtual)
    except Exception as exc:
        raise BuildError("the conda packages cannot be installed together (%s): %s" % (
            _channel_list(spec), _flatten(exc)))
    say("installing %d conda package(s) into the environment" % len(records))
    os.makedirs(spec["target"], exist_ok=True)
    try:
        await rattler.install(records, target_prefix=spec["target"], alternative_target_prefix=spec["final"],
                              cache_dir=os.path.join(cache, "pkgs"), platform=rattler.Platform(spec["platform"]),
                              show_progress=False, reporter=_Progress(len(records)))
    except Exception as exc:
        raise BuildError("installing the conda packages failed: %s" % _flatten(exc))
    return 0


class _Progress:
    """Every 25% of the packages linked, one progress line."""

    def __init__(self, total):
        self.total, self.done, self.shown = max(total, 1), 0, 0

    def __getattr__(self, name):  # the reporter protocol has many callbacks; the others are ignored
        if name.startswith("on_"):
            return lambda *args, **kwargs: 0
        raise AttributeError(name)

    def on_link_complete(self, *args, **kwargs):
        self.done += 1
        step = self.done * 4 // self.total
        if step > self.shown:
            self.shown = step
            say("linked %d of %d conda packages" % (self.done, self.total))


def _spec_channel_url(text):
    return text.rsplit("::", 1)[0] if "::" in text else None


def _plain_spec(text):
    return text.rsplit("::", 1)[-1]


def _first_line(exc):
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    cause = [ln for ln in lines if ln.startswith("Caused by:")]
    return (cause[-1] if cause else lines[0] if lines else type(exc).__name__)[:300]


def _flatten(exc):
    text = " ".join(ln.strip(" \u2502\u251c\u2514\u2500") for ln in str(exc).splitlines() if ln.strip())
    return text[:800]


# -- the resource's own conda ------------------------------------------------------------
def _external_create(tool, spec, final):
    """conda/mamba/micromamba create -p FINAL with only the given channels."""
    cmd = [tool, "create", "--yes", "--prefix", final, "--override-channels"]
    for channel in spec["channels"]:
        cmd += ["--channel", channel["url"]]
    if tool == "micromamba":
        cmd += ["--root-prefix", os.path.expanduser("~/.cybershuttle/conda/micromamba")]
    cmd += ["--json"] + list(spec["specs"])
    say("creating the conda environment with %s from %s" % (tool, _channel_list(spec)))
    env = dict(os.environ, CONDA_PKGS_DIRS=os.path.expanduser("~/.cybershuttle/conda/pkgs"))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env)
    if proc.returncode != 0:
        shutil.rmtree(final, ignore_errors=True)
        raise BuildError("%s could not create the conda environment (channels: %s): %s" % (
            tool, _channel_list(spec), _conda_error(proc.stdout, proc.stderr)))


def _conda_error(stdout, stderr):
    """The one line worth showing from conda's --json error (or its last stderr line)."""
    try:
        doc = json.loads(stdout[stdout.index("{"):])
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        packages = doc.get("packages") or []
        if packages:  # PackagesNotFoundError
            return "no channel has %s" % ", ".join(str(p) for p in packages)
        message = doc.get("message") or doc.get("error") or ""
        if message:
            return " ".join(str(message).split())[:800]
    lines = [ln.strip() for ln in (stderr or stdout).splitlines() if ln.strip()]
    return lines[-1][:800] if lines else "no output"


# -- pip, after conda ----------------------------------------------------------------------
def _pip_install(spec, prefix):
    python = os.path.join(prefix, "bin", "python")
    if not os.path.exists(python):
        raise BuildError("the setup file lists pip packages (%s) but its conda packages bring no python: add python "
                         "to its conda packages" % ", ".join(spec["pip"]))
    reqs = list(spec["pip"])
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    if subprocess.call([python, "-m", "pip", "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
        cmd = [python, "-m", "pip", "install", "--no-input", "--progress-bar", "off"] + reqs
    elif shutil.which("uv"):
        cmd = ["uv", "pip", "install", "--python", python] + reqs
    else:
        _run([python, "-m", "ensurepip", "--default-pip"], "bootstrapping pip into the environment (ensurepip)")
        cmd = [python, "-m", "pip", "install", "--no-input", "--progress-bar", "off"] + reqs
    say("installing %d pip requirement(s) into the environment: %s" % (len(reqs), " ".join(reqs)))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env)
    tail = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        if line.startswith(("Collecting ", "Successfully installed", "Installing collected")):
            say("pip: " + line[:200])
    if proc.wait() != 0:
        errors = [ln for ln in tail if "ERROR" in ln] or [ln for ln in tail if ln.strip()] or ["no output"]
        raise BuildError("pip could not install %s: %s" % (" ".join(reqs), errors[0].strip()[:400]))


def _fix_shebangs(partial, final):
    """pip wrote the temporary directory into its scripts' first lines: point them at the final place."""
    bindir = os.path.join(partial, "bin")
    old, new = ("#!" + partial + "/").encode(), ("#!" + final + "/").encode()
    for name in os.listdir(bindir) if os.path.isdir(bindir) else ():
        path = os.path.join(bindir, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            head = fh.read(len(old))
            if head != old:
                continue
            data = head + fh.read()
        mode = os.stat(path).st_mode
        tmp = path + ".cs-tmp"
        with open(tmp, "wb") as fh:  # a new file: the old one may be a hard link into a cache
            fh.write(new + data[len(old):])
        os.chmod(tmp, mode)
        os.rename(tmp, path)


def _installed(prefix):
    meta = os.path.join(prefix, "conda-meta")
    out = []
    for name in sorted(os.listdir(meta)) if os.path.isdir(meta) else ():
        if name.endswith(".json"):
            try:
                with open(os.path.join(meta, name)) as fh:
                    rec = json.load(fh)
                out.append("%s=%s=%s" % (rec.get("name"), rec.get("version"), rec.get("build")))
            except (OSError, ValueError):
                continue
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv))
