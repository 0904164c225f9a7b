"""Trust: nobody's code runs for somebody else unasked.

Public catalog entries carry code their owner wrote, and it would run as
whoever uses the entry:

    kind       the code
    dataset    its after-download command
    model      a computational model's command line; an AI model's entry point (pkg.module:factory)
    template   its notebook's code cells
    compute    a resource's interpreter, host and host key (and conda channels)

Before such code runs, the place that runs it calls `require(kind, entry)`.
One's own entries, and those of owners the site's administrator lists in the
site configuration (`siteconfig`, a file only root can write), pass. Anything
else needs a pin in the user's private catalog: kind, name, owner and the
sha256 of exactly that content, made by `add` (`cybershuttle trust add KIND
NAME`), by `--trust` on a verb, or by answering a prompt. When the owner
changes the content the pin no longer matches and the user is asked again.
Others' pickled models are never loaded, trusted or not (model.loaders).

How a front end asks is its own: `granting(trust=True)` trusts and shows what
a verb uses, `granting(ask=...)` asks a person. Without a grant — the REST
API, papermill's kernels, sweeps, the provisioner, a served model — an
untrusted use fails with one line naming the entry, its owner and what to run.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

from . import names, siteconfig
from .errors import CybershuttleError, NotFoundError, UsageError

_PIN_KIND = "trust-{}"


class UntrustedError(CybershuttleError):
    """Code of another person that the user has not trusted (or that changed since)."""

    http_status = 403


@dataclass(frozen=True)
class Review:
    """What a user is asked to trust: whose code, which code, and its hash."""

    kind: str
    name: str
    owner: str
    what: str  # "after-download command", "command", "entry point", "notebook", "interpreter, host and host key"
    code: str
    sha256: str

    def text(self) -> str:
        """Several lines for a person to read before trusting."""
        body = "\n".join("    " + line for line in self.code.splitlines() or [""])
        return (f"{self.kind} {self.name!r} of {self.owner} runs this {self.what} as you "
                f"(sha256 {self.sha256[:16]}):\n{body}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Pin(Review):
    """One trusted content (what was reviewed, and when it was trusted), kept in the user's private catalog."""

    trusted: float


@dataclass(frozen=True)
class Grant:
    """What the front end in use allows while a verb runs (see `granting`)."""

    trust: bool = False
    ask: Callable[[Review, "Pin | None"], bool] | None = None
    show: Callable[[Review], None] | None = None


_grant: contextvars.ContextVar[Grant | None] = contextvars.ContextVar("cybershuttle_trust_grant", default=None)


# -- public API ------------------------------------------------------------
def require(kind: str, entry: Any) -> None:
    """Return when the active user may run the code `entry` (a Dataset, Model, Template or Resource of
    catalog kind `kind`) carries; otherwise ask through the current grant, or raise UntrustedError."""
    state, found, pin = _judge(kind, entry)
    if found is None or state == "trusted":
        return
    grant = _grant.get()
    if grant is not None and grant.trust:
        _save(found)
        if grant.show is not None:
            grant.show(found)
        return
    if grant is not None and grant.ask is not None:
        if grant.ask(found, pin):
            _save(found)
            return
        raise UntrustedError(f"you did not trust the {found.what} of {kind} {found.name!r} of {found.owner}: "
                             f"nothing of it was run (`cybershuttle trust add {kind} {found.name}` trusts it)")
    raise UntrustedError(_refusal(found, pin))


def review(kind: str, name: str) -> Review:
    """What trusting `kind` `name` means: its owner and code (`cybershuttle trust show`)."""
    entry = _lookup(kind, name)
    owner = getattr(entry, "owner", "") or (_owner(kind, name) if _is_public(entry) else _me())
    found = _review(kind, entry, owner)
    if found is None:
        raise UsageError(f"{kind} {name!r} carries no code of its own: there is nothing to trust")
    return found


def add(kind: str, name: str) -> Review:
    """Trust the code `kind` `name` carries as it is now; returns what was trusted."""
    found = review(kind, name)
    _save(found)
    return found


def list_all() -> list[Pin]:
    """Every pin of the active user, by kind and name."""
    from .registry import catalog

    pins = []
    for kind in KINDS:
        pins += [_pin_of(e.data) for e in catalog().private.list(_PIN_KIND.format(kind))]
    return pins


def remove(kind: str, name: str) -> Pin:
    """Stop trusting `kind` `name` (its next use asks again)."""
    from .registry import catalog

    _check_kind(kind)
    pin = _pin(kind, names.validate(name, f"{kind} name"))
    if pin is None:
        raise NotFoundError(f"you have not trusted {kind} {name!r}: nothing to remove (see `cybershuttle trust list`)")
    catalog().private.remove(_PIN_KIND.format(kind), name)
    return pin


def status(kind: str, name: str) -> str:
    """'own', 'no code', 'site' (an owner the site trusts), 'trusted', 'changed' or 'untrusted'."""
    return _judge(kind, _lookup(kind, name))[0]


@contextlib.contextmanager
def granting(trust: bool = False, ask: Callable[[Review, Pin | None], bool] | None = None,
             show: Callable[[Review], None] | None = None) -> Iterator[None]:
    """While the block runs, trust what it uses (`trust=True`, each shown through `show`) or ask
    `ask(review, old_pin)` about it. Front ends wrap a user's command in this; nothing else does."""
    token = _grant.set(Grant(trust=trust, ask=ask, show=show))
    try:
        yield
    finally:
        _grant.reset(token)


# -- what each kind carries ------------------------------------------------
def _dataset_code(ds: Any) -> tuple[str, str] | None:
    return ("after-download command", ds.after_download_command) if ds.after_download_command else None


def _model_code(model: Any) -> tuple[str, str] | None:
    # A saved torch file is TorchScript (no code) or a pickle (refused for others by model.loaders);
    # an ai4science model runs a template, which is trusted as that template.
    return {"command": ("command", model.location),
            "entry-point": ("entry point", model.location)}.get(model.loader)


def _template_code(tmpl: Any) -> tuple[str, str] | None:
    cells = json.loads(tmpl.notebook).get("cells", [])
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
               for c in cells if c.get("cell_type") == "code"]
    return "notebook", "\n".join(f"# cell {i}\n{src}" for i, src in enumerate(sources, 1))


def _resource_code(res: Any) -> tuple[str, str] | None:
    lines = [f"python: {res.python or 'python3 on the PATH'}"]
    if res.host:
        lines.append(f"host: {res.host} port {res.port}")
        lines.append(f"host key: {_host_keys(res)}")
    if res.conda:
        lines.append(f"conda: {json.dumps(res.conda, sort_keys=True)}")
    return "interpreter, host and host key", "\n".join(lines)


@dataclass(frozen=True)
class _Carrier:
    get: str  # "module:function" that returns the entry by name, as the kind's own verbs see it
    code: Callable[[Any], "tuple[str, str] | None"]


#: catalog kind -> how to find its entries and the code they carry
KINDS: dict[str, _Carrier] = {
    "dataset": _Carrier("cybershuttle.dataset:get", _dataset_code),
    "model": _Carrier("cybershuttle.model.catalog:get", _model_code),
    "template": _Carrier("cybershuttle.template.catalog:get", _template_code),
    "compute": _Carrier("cybershuttle.compute.resources:get", _resource_code),
}


# -- helpers ---------------------------------------------------------------
def _judge(kind: str, entry: Any) -> tuple[str, Review | None, Pin | None]:
    """The entry's trust state, and (when it needs a pin) what to trust and the pin there is."""
    if not _is_public(entry):
        return "own", None, None  # a private entry is one's own
    owner = getattr(entry, "owner", "") or _owner(kind, entry.name)
    if owner == _me():
        return "own", None, None
    review = _review(kind, entry, owner)
    if review is None:
        return "no code", None, None
    if owner in siteconfig.trusted_owners():
        return "site", None, None
    pin = _pin(kind, review.name)
    state = "untrusted" if pin is None else "trusted" if pin.sha256 == review.sha256 else "changed"
    return state, review, pin


def _review(kind: str, entry: Any, owner: str) -> Review | None:
    carried = KINDS[_check_kind(kind)].code(entry)
    if carried is None:
        return None
    what, code = carried
    digest = hashlib.sha256(json.dumps({"kind": kind, "name": entry.name, "owner": owner, "code": code},
                                       sort_keys=True).encode()).hexdigest()
    return Review(kind, entry.name, owner, what, code, digest)


def _refusal(review: Review, pin: Pin | None) -> str:
    subject = f"{review.kind} {review.name!r} of {review.owner}"
    show = f"`cybershuttle trust show {review.kind} {review.name}`"
    add = f"`cybershuttle trust add {review.kind} {review.name}`"
    one_line = review.code if "\n" not in review.code and len(review.code) <= 200 else None
    if pin is not None and pin.owner != review.owner:
        return (f"{subject}: you trusted it when it was {pin.owner}'s, not its {review.what} now; review it "
                f"with {show} and trust it with {add} (or --trust)")
    if pin is not None:
        return (f"{subject}: its {review.what} changed since you trusted it"
                + (f" (now {one_line})" if one_line else "")
                + f"; review it with {show} and trust it again with {add} (or --trust)")
    return (f"{subject}: you have not trusted its {review.what}" + (f" ({one_line})" if one_line else "")
            + f"; review it with {show} and trust it with {add} (or --trust)")


def _host_keys(res: Any) -> str:
    """The host keys a resource's known_hosts file holds for it: the keys SSH will accept."""
    from . import ssh

    if not res.known_hosts:
        return "checked against your own ~/.ssh/known_hosts"
    endpoint = ssh.Endpoint(res.host, res.port, "-", None, res.known_hosts)
    try:
        keys = ssh._known_keys(endpoint)
    except CybershuttleError as exc:
        return f"unreadable ({exc})"
    found = ", ".join(f"{k.get_name()} {ssh.fingerprint(k)}" for _, k in sorted(keys.items()))
    return f"{found or 'none'} (from {res.known_hosts})"


def _is_public(entry: Any) -> bool:
    return getattr(entry, "scope", None) == "public" or getattr(entry, "public", False) is True


def _me() -> str:
    from .registry import catalog

    cat = catalog()
    return cat.public.identity(cat.user)


def _owner(kind: str, name: str) -> str:
    from .registry import catalog

    found = catalog().public.find(kind, name)
    if found is None:
        raise NotFoundError(f"no public {kind} named {name!r}")
    return found.owner


def _lookup(kind: str, name: str) -> Any:
    module, _, function = KINDS[_check_kind(kind)].get.partition(":")
    return getattr(importlib.import_module(module), function)(names.validate(name, f"{kind} name"))


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"{kind!r} carries no code to trust: the kinds are {', '.join(KINDS)}")
    return kind


def _pin(kind: str, name: str) -> Pin | None:
    from .registry import catalog

    found = catalog().private.find(_PIN_KIND.format(kind), name)
    return _pin_of(found.data) if found is not None else None


def _pin_of(data: dict[str, Any]) -> Pin:
    return Pin(**{k: data[k] for k in Pin.__dataclass_fields__})


def _save(review: Review) -> None:
    from .registry import catalog

    cat = catalog()
    pin = Pin(**asdict(review), trusted=time.time())
    cat.private.add(_PIN_KIND.format(review.kind), review.name, pin.to_dict(), cat.user, replace=True)
