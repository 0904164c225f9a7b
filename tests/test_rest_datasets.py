"""REST routes for datasets, and /search across kinds, through a real jupyter_server."""
from __future__ import annotations

import pytest
from rest_api import SERVER_CONFIG, blocking, call

from cybershuttle import dataset

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return SERVER_CONFIG


@pytest.fixture
def three(tmp_path):
    for name, text in (("cifar10", "images of ten classes"), ("genomes", "bacterial genomes"),
                       ("mnist", "handwritten digits")):
        data = tmp_path / name
        data.write_text(text)
        dataset.register(name, str(data), description=text)
    return tmp_path


async def test_datasets_are_paged_searched_and_shown(jp_fetch, three):
    code, body = await call(jp_fetch, "datasets")
    assert code == 200 and body["total"] == 3 and [d["name"] for d in body["items"]] == ["cifar10", "genomes", "mnist"]
    assert body["items"][0]["description"] == "images of ten classes"
    code, body = await call(jp_fetch, "datasets", params={"limit": "1", "offset": "1"})
    assert body["total"] == 3 and [d["name"] for d in body["items"]] == ["genomes"]
    code, body = await call(jp_fetch, "datasets", params={"q": "digits"})
    # `mine`: the sidebar offers Remove on the caller's own entries only.
    assert body == {"items": [{**await blocking(lambda: dataset.get("mnist").to_dict()), "mine": True}], "total": 1}

    code, body = await call(jp_fetch, "datasets/genomes")
    assert code == 200 and body["locations"] == [str(three / "genomes")]
    assert body["where"][0]["location"] == str(three / "genomes") and body["where"][0]["where"]

    code, body = await call(jp_fetch, "datasets/nosuch")
    assert code == 404 and "nosuch" in body["error"] and "cifar10" in body["error"]
    code, body = await call(jp_fetch, "datasets", params={"offset": "-1"})
    assert code == 400 and "offset" in body["error"]


async def test_a_dataset_is_published_and_removed(jp_fetch, tmp_path):
    code, body = await call(jp_fetch, "datasets", method="POST",
                            json_body={"name": "shared1", "location": str(tmp_path), "description": "for all", "public": True})
    assert code == 201 and body["public"] is True and body["mine"] is True and body["owner"]
    assert (await blocking(dataset.get, "shared1")).public
    code, body = await call(jp_fetch, "datasets", params={"q": "for all"})
    assert [(d["name"], d["public"], d["mine"]) for d in body["items"]] == [("shared1", True, True)]

    code, body = await call(jp_fetch, "datasets", method="POST", json_body={"name": "nolocation"})
    assert code == 400 and "location" in body["error"]
    code, body = await call(jp_fetch, "datasets", method="POST", json_body={"name": "shared1", "location": str(tmp_path)})
    assert code == 409 and "shared1" in body["error"]

    code, body = await call(jp_fetch, "datasets/shared1/remove", method="POST")
    assert code == 200 and body["name"] == "shared1"
    code, body = await call(jp_fetch, "datasets/shared1")
    assert code == 404


async def test_search_spans_every_kind(jp_fetch, three):
    from cybershuttle import model

    await blocking(model.register, "genome-counter", "computational", "wc -l", description="counts genome lines")
    code, body = await call(jp_fetch, "search", params={"q": "genome"})
    assert code == 200 and body["errors"] == []
    assert {(i["kind"], i["name"]) for i in body["items"]} == {("dataset", "genomes"), ("model", "genome-counter")}
    code, body = await call(jp_fetch, "search", params={"q": "genome", "limit": "1"})
    assert body["total"] == 2 and len(body["items"]) == 1
