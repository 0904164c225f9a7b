"""Models: the catalog, and running a model over inputs the browser names."""
from __future__ import annotations

import os
from typing import Any

import tornado.web

from cybershuttle import model
from cybershuttle.errors import UsageError

from .base import CybershuttleHandler, Route, in_own_thread

_PATHS = ("input_folder", "input", "input_sequence", "output")
_OTHERS = {"batch_size": int, "resource": str, "serve": bool, "walltime": (str, int)}


class ModelsHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        """Models you can see (public and your own); ?q= searches."""
        query = self.get_query_argument("q", None) or None
        self.write_page(await self.call(model.list_all, query))


class ModelHandler(CybershuttleHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        """One model, and its server's report when it is being served."""

        def read() -> dict[str, Any]:
            return {**model.get(name).to_dict(), "serving": model.serving(name)}

        self.write_json(await self.call(read))


class ModelRunHandler(CybershuttleHandler):
    post_action = "execute"

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Body: one of input_folder / input / input_sequence, and output (paths relative to
        the Jupyter root; an `input` that is a folder is read as input_folder), batch_size,
        resource, serve, walltime. Returns the run's result
        (outputs inline when no output folder was given)."""
        # In a thread of its own: a model run (a batch job, a template) can take hours.
        self.write_json((await in_own_thread(model.run, name, **self.run_options(self.body()))).to_dict())

    def run_options(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - set(_PATHS) - set(_OTHERS))
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(unknown)}: use {', '.join([*_PATHS, *_OTHERS])}")
        options: dict[str, Any] = {}
        for key in _PATHS:
            if body.get(key):
                options[key] = self.server_path(body[key], key)
        if "input" in options and os.path.isdir(options["input"]):
            options["input_folder"] = options.pop("input")  # the sidebar has one "input" box for both
        for key, wanted in _OTHERS.items():
            value = body.get(key)
            if value is None or value == "":
                continue
            if wanted is int and isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if wanted is bool and isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
                raise UsageError(f"{key} has the wrong type ({value!r})")
            options[key] = value
        return options


def search(query: str) -> list[dict[str, Any]]:
    return [{"kind": "model", "name": m.name, "detail": m.description or f"{m.kind} model"}
            for m in model.list_all(query)]


ROUTES = [
    Route("models", ModelsHandler, ("GET",), "models"),
    Route("models/{name}", ModelHandler, ("GET",), "one model and whether it is being served"),
    Route("models/{name}/run", ModelRunHandler, ("POST",),
          "run a model ({input_folder | input | input_sequence, output?, batch_size?, resource?, serve?})"),
]
