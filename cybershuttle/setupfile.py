"""Read ``cybershuttle.yml`` setup files as Cybershuttle projects already write them.

A setup file says what a notebook needs from a machine: minimum resources, data and models to
mount, and software (Lmod modules, conda packages, pip packages). Scientists wrote these files
for the earlier platform and will not rewrite them for us, so two layouts are accepted unchanged:

* ``current``: ``project``, ``workspace.resources``,
  ``workspace.{data,model,input}_collection`` items ``{source, identifier, mount_point}`` and
  ``additional_dependencies.{modules, conda, pip}``;
* ``legacy``: ``environment.dependencies`` (a conda environment list holding a nested
  ``- pip: [...]`` list) and ``workspace.data_sources`` (items naming ``type:`` rather than
  ``source:``). Legacy files also write sizes as strings (``min_mem: 16G``).

:func:`load` and :func:`parse` turn either layout into one :class:`SetupFile`. Unknown keys are
kept in ``SetupFile.unknown`` and reported as warnings, because people add keys that other tools
read; a wrong type is a :class:`~cybershuttle.errors.SetupFileError` naming the file, the key
path and the expected type. Every problem in a file is reported at once, so one run of
``cybershuttle setup validate`` shows everything to fix.

Sizes are megabytes (1 MB = 1024 KB, 1 G = 1024 MB): an integer is MB, a string may carry a
unit (``512M``, ``16G``, ``16GB``, ``16 GiB``, ``1T``) and a bare numeric string is MB.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from cybershuttle import names, units
from cybershuttle.errors import ScriptValueError, SetupFileError

__all__ = ["Mount", "Resources", "SetupFile", "load", "parse"]

MountKind = Literal["data", "model", "input"]
Layout = Literal["current", "legacy"]


@dataclass(frozen=True)
class Resources:
    """Minimum resources a setup asks for, plus optional scheduler hints.

    The counts are minimums of a job request, not exact values; the compute module may give
    more. Absent keys mean "no minimum" (one CPU, since no job runs on none).
    """

    min_cpu: int = 1
    min_mem_mb: int = 0
    min_gpu: int = 0
    gpu_mem_mb: int = 0
    min_disk_mb: int | None = None
    gpu_class: list[str] = field(default_factory=list)
    walltime_min: int | None = None
    cluster: str | None = None
    group: str | None = None
    queue: str | None = None


@dataclass(frozen=True)
class Mount:
    """One data, model or input collection to make visible at ``mount_point``."""

    kind: MountKind
    source: str
    identifier: str
    mount_point: str


@dataclass(frozen=True)
class SetupFile:
    """A parsed setup file, normalised to one shape whichever layout it was written in."""

    path: str
    project: dict[str, Any]
    resources: Resources
    mounts: list[Mount]
    modules: list[str]
    conda: list[str]
    pip: list[str]
    location: str | None
    layout: Layout
    unknown: dict[str, Any]
    warnings: list[str]
    # Conda channels the file names (`environment.channels` as in a conda environment.yml, or
    # `additional_dependencies.channels`), in priority order; empty: the resource's default.
    channels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (``setup validate --json``, REST payloads)."""
        return {
            "file": self.path,
            "layout": self.layout,
            "project": _jsonable(self.project),
            "resources": dataclasses.asdict(self.resources),
            "mounts": [dataclasses.asdict(mount) for mount in self.mounts],
            "modules": list(self.modules),
            "conda": list(self.conda),
            "pip": list(self.pip),
            "channels": list(self.channels),
            "location": self.location,
            # Unknown values are raw YAML and may hold dates or odd keys; make them JSON-safe.
            "unknown": {path: _jsonable(value) for path, value in self.unknown.items()},
            "warnings": list(self.warnings),
        }

    def summary_lines(self) -> list[str]:
        """Return the human-readable summary that ``cybershuttle setup validate`` prints."""
        name = self.project.get("name") or "(no project name)"
        lines = [f"{self.path}: {name} ({self.layout} layout)"]
        lines.append("resources (minimum): " + _describe_resources(self.resources))
        scheduler = _describe_scheduler(self.resources)
        if scheduler:
            lines.append("scheduler: " + scheduler)
        if self.location:
            lines.append(f"location: {self.location}")
        lines.extend(_list_block(
            "mounts",
            [f"{m.kind}: {m.identifier} -> {m.mount_point} (from {m.source})"
             for m in self.mounts],
        ))
        lines.extend(_list_block("modules", self.modules))
        lines.extend(_list_block("conda", self.conda))
        if self.channels:
            lines.append("channels: " + ", ".join(self.channels))
        lines.extend(_list_block("pip", self.pip))
        lines.extend(_list_block("warnings", self.warnings))
        return lines


def load(path: str | os.PathLike[str]) -> SetupFile:
    """Read and parse the setup file at ``path``.

    Raises SetupFileError when the file is missing or unreadable, is not valid YAML, or holds
    values of the wrong type; the message names the file as the caller gave it.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise SetupFileError(
            f"{name}: no such file; check the path (projects keep it as cybershuttle.yml "
            "at the top of the repository)"
        ) from None
    except IsADirectoryError:
        raise SetupFileError(
            f"{name}: is a directory; give the path of the cybershuttle.yml file inside it"
        ) from None
    except PermissionError:
        raise SetupFileError(
            f"{name}: permission denied; make the file readable (chmod u+r {name})"
        ) from None
    except OSError as exc:
        raise SetupFileError(
            f"{name}: cannot be read ({exc.strerror or exc}); check the path and permissions"
        ) from None
    try:
        # utf-8-sig: some editors on Windows start the file with a byte-order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SetupFileError(
            f"{name}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None
    return parse(text, name)


def parse(text: str, path: str = "<string>") -> SetupFile:
    """Parse setup-file ``text``; ``path`` is only used to name the file in messages."""
    loader = _Loader(text)
    try:
        document = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise SetupFileError(_yaml_error_message(path, text, exc)) from None
    finally:
        loader.dispose()
    if document is None:
        raise SetupFileError(
            f"{path}: the file is empty; add at least a project: and a workspace: section"
        )
    if not isinstance(document, dict):
        raise SetupFileError(
            f"{path}: the top level must be a mapping with sections such as project: and "
            f"workspace:, got {_describe(document)}"
        )
    return _Reader(path, loader.duplicate_warnings).read(document)


# --------------------------------------------------------------------------------------------
# Helpers

_TOP_KEYS = frozenset({"project", "workspace", "additional_dependencies", "environment"})
# version and privacy describe the project (real files carry them); nothing here acts on them,
# but they are known keys so they do not warn.
_PROJECT_KEYS = frozenset({
    "name", "description", "homepage", "authors", "tags", "version", "privacy",
})
_COLLECTION_KINDS: dict[str, MountKind] = {
    "data_collection": "data",
    "model_collection": "model",
    "input_collection": "input",
    "data_sources": "data",  # legacy name
}
_RESOURCE_KEYS = frozenset({
    "min_cpu", "min_mem", "min_gpu", "gpu_mem", "min_disk", "gpu_class", "walltime",
    "cluster", "group", "queue",
})
# "type" is how legacy data_sources items spell "source".
_MOUNT_KEYS = frozenset({"source", "type", "identifier", "mount_point"})
_DEPENDENCY_KEYS = frozenset({"modules", "conda", "pip", "channels"})
_ENVIRONMENT_KEYS = frozenset({"dependencies", "channels"})
# Every collection in the files seen in the wild names this source, so it is the default.
_DEFAULT_SOURCE = "cybershuttle"

_SIZE_FORM = "a size such as 4096 (MB), '512M', '16G' or '1T'"
# Templates ship identifiers like <SUBSTITUTE_CORRECT_ID> that users forget to replace.
_PLACEHOLDER_RE = re.compile(r"^<.*>$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that notes keys given twice in one mapping.

    PyYAML silently keeps the last value, so a second ``pip:`` would drop the first list
    without a word; we keep PyYAML's behaviour but tell the user.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_warnings: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                if key in seen:
                    self.duplicate_warnings.append(
                        f"line {key_node.start_mark.line + 1}: key '{key_node.value}' is given "
                        "twice in the same mapping; only the later value is used"
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Reader:
    """Walks one parsed document, collecting values, unknown keys, warnings and errors."""

    def __init__(self, path: str, warnings: list[str]) -> None:
        self.path = path
        self.errors: list[str] = []
        self.warnings: list[str] = list(warnings)
        self.unknown: dict[str, Any] = {}

    def read(self, document: dict[Any, Any]) -> SetupFile:
        if not any(key in _TOP_KEYS for key in document if isinstance(key, str)):
            # Probably a conda environment.yml or another tool's file passed by mistake;
            # warnings alone would make it look like an (empty) valid setup.
            raise SetupFileError(
                f"{self.path}: none of the sections project:, workspace:, "
                "additional_dependencies: or environment: is present; is this a "
                "cybershuttle.yml?"
            )
        # Walk the sections in file order so problems and warnings are listed that way too.
        project = workspace = dependencies = environment = None
        for key, value in document.items():
            if key == "project":
                project = self._project(value)
            elif key == "workspace":
                workspace = self._workspace(value)
            elif key == "additional_dependencies":
                dependencies = self._dependencies(value)
            elif key == "environment":
                environment = self._environment(value)
            else:
                self._keep(str(key), value)
        if environment is not None and dependencies is not None:
            self.errors.append(
                "additional_dependencies and environment are both given; keep one "
                "(additional_dependencies: {modules, conda, pip} is the current form)"
            )
        # A missing section reads like an empty one.
        project = project if project is not None else self._project(None)
        resources, mounts, location, data_sources = workspace or self._workspace(None)
        if environment is not None:
            modules: list[str] = []
            conda, pip, channels = environment
        else:
            modules, conda, pip, channels = dependencies or self._dependencies(None)
        legacy = environment is not None or data_sources

        self._warn_duplicate_mount_points(mounts)
        if self.errors:
            if len(self.errors) == 1:
                raise SetupFileError(f"{self.path}: {self.errors[0]}")
            raise SetupFileError(
                f"{self.path}: {len(self.errors)} problems: " + "; ".join(self.errors)
            )
        return SetupFile(
            path=self.path,
            project=project,
            resources=resources,
            mounts=mounts,
            modules=modules,
            conda=conda,
            pip=pip,
            location=location,
            layout="legacy" if legacy else "current",
            unknown=self.unknown,
            warnings=self.warnings,
            channels=channels,
        )

    # -- sections ----------------------------------------------------------------------------

    def _project(self, value: Any) -> dict[str, Any]:
        known = self._known(self._mapping(value, "project"), "project", _PROJECT_KEYS)
        project: dict[str, Any] = {
            "name": self._string(known.get("name"), "project.name"),
            "description": self._string(known.get("description"), "project.description"),
            "homepage": self._string(known.get("homepage"), "project.homepage"),
            "authors": self._string_list(known.get("authors"), "project.authors"),
            "tags": self._string_list(known.get("tags"), "project.tags"),
            "version": self._string(known.get("version"), "project.version"),
            "privacy": self._string(known.get("privacy"), "project.privacy"),
        }
        homepage = project["homepage"]
        if homepage and not re.match(r"https?://", homepage):
            self.warnings.append(
                f"project.homepage '{homepage}' does not start with http:// or https://"
            )
        return project

    def _workspace(self, value: Any) -> tuple[Resources, list[Mount], str | None, bool]:
        resources = Resources()
        location = None
        mounts: list[Mount] = []
        data_sources = False
        # File order, so mounts and warnings are listed the way the user wrote them.
        for key, item in self._mapping(value, "workspace").items():
            if key == "resources":
                resources = self._resources(item)
            elif key == "location":
                location = self._string(item, "workspace.location")
            elif key in _COLLECTION_KINDS:
                mounts.extend(self._mounts(item, f"workspace.{key}", _COLLECTION_KINDS[key]))
                data_sources = data_sources or key == "data_sources"
            else:
                self._keep(f"workspace.{key}", item)
        return resources, mounts, location, data_sources

    def _resources(self, value: Any) -> Resources:
        path = "workspace.resources"
        known = self._known(self._mapping(value, path), path, _RESOURCE_KEYS)
        return Resources(
            # A job cannot run on zero CPUs, so 1 is both the default and the floor.
            min_cpu=self._count(known.get("min_cpu"), f"{path}.min_cpu", default=1, minimum=1),
            min_mem_mb=self._size(known.get("min_mem"), f"{path}.min_mem") or 0,
            min_gpu=self._count(known.get("min_gpu"), f"{path}.min_gpu", default=0),
            gpu_mem_mb=self._size(known.get("gpu_mem"), f"{path}.gpu_mem") or 0,
            min_disk_mb=self._size(known.get("min_disk"), f"{path}.min_disk"),
            gpu_class=self._string_list(known.get("gpu_class"), f"{path}.gpu_class"),
            walltime_min=self._walltime(known.get("walltime"), f"{path}.walltime"),
            cluster=self._string(known.get("cluster"), f"{path}.cluster"),
            group=self._string(known.get("group"), f"{path}.group"),
            queue=self._string(known.get("queue"), f"{path}.queue"),
        )

    def _mounts(self, value: Any, path: str, kind: MountKind) -> list[Mount]:
        if value is None:  # "model_collection:" with nothing after it means none
            return []
        if not isinstance(value, list):
            self.errors.append(
                f"{path} must be a list of {{source, identifier, mount_point}} items, "
                f"got {_describe(value)}"
            )
            return []
        mounts = []
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if not isinstance(item, dict):
                self.errors.append(
                    f"{item_path} must be a mapping with identifier: and mount_point:, "
                    f"got {_describe(item)}"
                )
                continue
            mount = self._mount(item, item_path, kind)
            if mount is not None:
                mounts.append(mount)
        return mounts

    def _mount(self, item: dict[Any, Any], path: str, kind: MountKind) -> Mount | None:
        known = self._known(item, path, _MOUNT_KEYS)
        source = self._string(known.get("source"), f"{path}.source")
        legacy_type = self._string(known.get("type"), f"{path}.type")
        if source and legacy_type and source != legacy_type:
            self.errors.append(
                f"{path} gives source '{source}' and type '{legacy_type}'; keep only source"
            )
        identifier = self._string(known.get("identifier"), f"{path}.identifier")
        mount_point = self._string(known.get("mount_point"), f"{path}.mount_point")
        for key in ("identifier", "mount_point"):
            raw = known.get(key)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                self.errors.append(f"{path}.{key} is required (a non-empty string)")
        if not identifier or not identifier.strip() or not mount_point or not mount_point.strip():
            return None
        if _PLACEHOLDER_RE.match(identifier):
            self.warnings.append(
                f"{path}.identifier '{identifier}' looks like a template placeholder; "
                "replace it with the collection's real identifier"
            )
        # "/data/" and "/data" are the same directory; compare and show them one way.
        mount_point = mount_point.rstrip("/") or "/"
        return Mount(kind=kind, source=source or legacy_type or _DEFAULT_SOURCE,
                     identifier=identifier, mount_point=mount_point)

    def _dependencies(self, value: Any) -> tuple[list[str], list[str], list[str], list[str]]:
        path = "additional_dependencies"
        known = self._known(self._mapping(value, path), path, _DEPENDENCY_KEYS)
        return (
            self._string_list(known.get("modules"), f"{path}.modules"),
            self._string_list(known.get("conda"), f"{path}.conda"),
            self._pip_list(known.get("pip"), f"{path}.pip"),
            self._string_list(known.get("channels"), f"{path}.channels"),
        )

    def _environment(self, value: Any) -> tuple[list[str], list[str], list[str]]:
        """Split a conda-environment style list: strings are conda, ``- pip: [...]`` is pip."""
        known = self._known(self._mapping(value, "environment"), "environment",
                            _ENVIRONMENT_KEYS)
        path = "environment.dependencies"
        dependencies = known.get("dependencies")
        channels = self._string_list(known.get("channels"), "environment.channels")
        conda: list[str] = []
        pip: list[str] = []
        if dependencies is None:
            return conda, pip, channels
        if not isinstance(dependencies, list):
            self.errors.append(
                f"{path} must be a list of conda packages (with an optional '- pip:' list), "
                f"got {_describe(dependencies)}"
            )
            return conda, pip, channels
        for index, item in enumerate(dependencies):
            item_path = f"{path}[{index}]"
            if isinstance(item, dict):
                nested = self._known(item, item_path, frozenset({"pip"}))
                pip.extend(self._pip_list(nested.get("pip"), f"{item_path}.pip"))
            else:
                conda.extend(self._string_list([item], item_path, indexed=False))
        return conda, pip, channels

    def _warn_duplicate_mount_points(self, mounts: list[Mount]) -> None:
        seen: set[str] = set()
        for mount in mounts:
            if mount.mount_point in seen:
                self.warnings.append(
                    f"mount point {mount.mount_point} is used by more than one collection"
                )
            seen.add(mount.mount_point)

    # -- typed values: each returns a usable default after recording an error ------------------

    def _known(self, mapping: dict[Any, Any], path: str, known: frozenset[str]) -> dict[str, Any]:
        """Return the known keys of ``mapping`` in file order; keep and warn about the rest."""
        result: dict[str, Any] = {}
        for key, value in mapping.items():
            if isinstance(key, str) and key in known:
                result[key] = value
                continue
            self._keep(f"{path}.{key}", value)
        return result

    def _keep(self, dotted: str, value: Any) -> None:
        self.unknown[dotted] = value
        self.warnings.append(f"{dotted}: unknown key, kept but not used")

    def _mapping(self, value: Any, path: str) -> dict[Any, Any]:
        if value is None:  # a section header with nothing under it
            return {}
        if isinstance(value, dict):
            return value
        self.errors.append(f"{path} must be a mapping (key: value lines), got {_describe(value)}")
        return {}

    def _string(self, value: Any, path: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        # Integers convert without loss (a tag "2025", a group "42"); floats and booleans do
        # not ("1.10" reads as 1.1, "no" as false), so those must be quoted.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        hint = " (put it in quotes)" if isinstance(value, (bool, float)) else ""
        self.errors.append(f"{path} must be a string, got {_describe(value)}{hint}")
        return None

    def _pip_list(self, value: Any, path: str) -> list[str]:
        """Pip requirements: strings that pip reads as requirements, never as options."""
        result = []
        for index, text in enumerate(self._string_list(value, path)):
            try:
                result.append(names.pip_requirement(text, f"{path}[{index}]"))
            except ScriptValueError as exc:
                self.errors.append(str(exc))
        return result

    def _string_list(self, value: Any, path: str, indexed: bool = True) -> list[str]:
        if value is None:  # "pip:" with nothing after it means none
            return []
        if not isinstance(value, list):
            # A lone string is refused rather than wrapped: "pip: numpy scipy" would otherwise
            # become one bogus package, and the fix is a one-character edit.
            hint = f" (write [{value}] or one '- {value}' line per entry)" \
                if isinstance(value, str) else ""
            self.errors.append(
                f"{path} must be a list of strings, got {_describe(value)}{hint}"
            )
            return []
        result = []
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]" if indexed else path
            text = self._string(item, item_path)
            if text is None:
                if item is None:
                    self.errors.append(f"{item_path} must be a string, got nothing")
                continue
            if not text.strip():
                self.errors.append(f"{item_path} must not be empty")
                continue
            result.append(text)
        return result

    def _count(self, value: Any, path: str, default: int, minimum: int = 0) -> int:
        if value is None:
            return default
        number = _as_int(value)
        if number is None:
            self.errors.append(f"{path} must be an integer, got {_describe(value)}")
            return default
        if number < minimum:
            self.errors.append(f"{path} must be {minimum} or more, got {number}")
            return default
        return number

    def _walltime(self, value: Any, path: str) -> int | None:
        if value is None:
            return None
        minutes = _as_int(value)
        if minutes is None or minutes < 1:
            self.errors.append(
                f"{path} must be a whole number of minutes (1 or more), got {_describe(value)}"
            )
            return None
        return minutes

    def _size(self, value: Any, path: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if value >= 0:
                return value
        elif isinstance(value, str):
            try:
                # Round up: these are minimums, so 0.5K must still ask for 1 MB.
                return math.ceil(units.size_mb(value))
            except ValueError:
                pass
        self.errors.append(f"{path} must be {_SIZE_FORM}, got {_describe(value)}")
        return None


def _as_int(value: Any) -> int | None:
    """An int from a YAML integer or a string of digits ("4"); None for anything else."""
    if isinstance(value, bool):  # bool is an int subclass; "min_gpu: yes" is a mistake
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _describe(value: Any) -> str:
    """How a YAML value is shown in an error: the value itself when short, else its kind."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"a date ({value.isoformat()})"
    return f"a {type(value).__name__}"


def _jsonable(value: Any) -> Any:
    """Turn a raw YAML value into something json.dumps accepts."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):  # !!binary
        return value.decode("utf-8", errors="replace")
    return str(value)


def _yaml_error_message(path: str, text: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(exc, yaml.reader.ReaderError):
        where = f"line {text.count(chr(10), 0, exc.position) + 1}"
    else:
        where = "somewhere"
    if isinstance(exc, yaml.MarkedYAMLError):
        context = exc.context
        if context and exc.context_mark is not None and mark is not exc.context_mark:
            # The problem is often noticed lines after its cause (an unclosed "["), so say
            # where the construct began as well.
            start = exc.context_mark
            context += f" that starts at line {start.line + 1}, column {start.column + 1}"
        detail = ", ".join(part for part in (context, exc.problem) if part)
    elif isinstance(exc, yaml.reader.ReaderError):
        detail = f"character {exc.character!r} is not allowed"
    else:
        detail = str(exc)
    detail = " ".join(detail.split())  # one line: the CLI prints errors on one line
    return (
        f"{path}: {where}: not valid YAML ({detail}); fix the file near that line "
        "(check the indentation and that each ':' is followed by a space)"
    )


def _describe_resources(resources: Resources) -> str:
    # Same order and units as the old platform's request summary, minus what the setup file
    # does not decide (cluster/queue, nodes, walltime come from the request or scheduler line).
    parts = [
        f"{resources.min_cpu} CPU(s)",
        f"{resources.min_gpu} GPU(s)",
        f"{resources.min_mem_mb} MB RAM",
        f"{resources.gpu_mem_mb} MB VRAM",
    ]
    if resources.min_disk_mb is not None:
        parts.append(f"{resources.min_disk_mb} MB disk")
    if resources.gpu_class:
        parts.append("GPU class " + "/".join(resources.gpu_class))
    return ", ".join(parts)


def _describe_scheduler(resources: Resources) -> str:
    parts = []
    if resources.cluster:
        parts.append(f"cluster {resources.cluster}")
    if resources.queue:
        parts.append(f"queue {resources.queue}")
    if resources.group:
        parts.append(f"group {resources.group}")
    if resources.walltime_min is not None:
        parts.append(f"{resources.walltime_min} minutes")
    return ", ".join(parts)


def _list_block(label: str, items: list[str]) -> list[str]:
    if not items:
        return [f"{label}: none"]
    return [f"{label} ({len(items)}):"] + [f"  - {item}" for item in items]
