"""REST routes for models: list, show, run over files the browser names (relative to the Jupyter root)."""
from __future__ import annotations

import json

import pytest
from rest_api import SERVER_CONFIG, blocking, call

from cybershuttle import model

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


async def test_a_command_model_runs_over_a_file_in_the_jupyter_root(jp_fetch, jp_root_dir):
    await blocking(model.register, "upper", "computational", "tr a-z A-Z", description="shouts")
    (jp_root_dir / "data").mkdir()
    (jp_root_dir / "data" / "words.txt").write_text("alpha\nbeta\n")

    code, body = await call(jp_fetch, "models")
    assert code == 200 and body["total"] == 1 and body["items"][0]["loader"] == "command"
    code, body = await call(jp_fetch, "models/upper")
    assert code == 200 and body["description"] == "shouts" and body["serving"] is None

    code, body = await call(jp_fetch, "models/upper/run", "POST", json_body={"input": "data/words.txt", "batch_size": 1})
    assert code == 200 and body["outputs"] == ["ALPHA", "BETA"] and body["batches"] == 2

    code, body = await call(jp_fetch, "models/upper/run", "POST",
                            json_body={"input": "data/words.txt", "output": "out"})
    rows = [json.loads(line) for line in (jp_root_dir / "out" / "outputs.jsonl").read_text().splitlines()]
    assert code == 200 and [r["output"] for r in rows] == ["ALPHA", "BETA"]

    code, body = await call(jp_fetch, "models/upper/run", "POST", json_body={"input": "data"})  # a folder
    assert code == 200 and body["count"] == 1 and body["ids"] == ["words.txt"], body

    code, body = await call(jp_fetch, "models/upper/run", "POST", json_body={"input": "../../etc/passwd"})
    assert code == 400 and "leaves" in body["error"]
    code, body = await call(jp_fetch, "models/upper/run", "POST", json_body={"inputs": "data/words.txt"})
    assert code == 400 and "unknown field(s) inputs" in body["error"]
    code, body = await call(jp_fetch, "models/upper/run", "POST", json_body={"input": "data/words.txt", "serve": True})
    assert code == 400 and "nothing to keep loaded" in body["error"]
    code, body = await call(jp_fetch, "models/nosuch/run", "POST", json_body={"input": "data/words.txt"})
    assert code == 404 and "upper" in body["error"]
