"""The recommendation app on a real Serve instance with models the pipeline registered, over HTTP."""

from __future__ import annotations

import httpx
import pytest
from ray import serve

from modelstore import registry
from pipelines.recommendation import registered_name
from services.recommendation.app import build_app

from .fuzzing import fuzz

ROUTE = "/recommend-test"
FEATURES = {f"f{i}": "1" for i in range(8)}


@pytest.fixture(scope="module")
def client(ray_cluster, trained_recommenders):
    models = {
        "next": registered_name("next", "markov", "mqsa-ted"),
        "rank": registered_name("ctr", "synthetic", "hiformer"),
    }
    serve.run(build_app({"models": models}), name="recommend-test", route_prefix=ROUTE)
    with httpx.Client(base_url=ray_cluster["http"] + ROUTE, timeout=60) as c:
        yield c
    serve.delete("recommend-test")


def test_next_returns_k_ranked_unseen_items(client):
    body = client.post("/next", json={"history": ["1", "2", "3"], "k": 5}).json()
    assert len(body["items"]) == 5 and body["fallback"] is None and body["unknown_items"] == []
    items = [i["item"] for i in body["items"]]
    assert not {"1", "2", "3"} & set(items)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    name = registered_name("next", "markov", "mqsa-ted")
    assert body["model"] == {"name": name, "version": registry.resolve_version(name).version}


def test_unknown_ids_are_listed_and_empty_history_falls_back_to_popularity(client):
    body = client.post("/next", json={"history": ["1", "no-such-item", 99999], "k": 3}).json()
    assert body["unknown_items"] == ["no-such-item", "99999"] and body["fallback"] is None
    body = client.post("/next", json={"history": ["nope"], "k": 3}).json()
    assert body["fallback"] == "popularity" and len(body["items"]) == 3
    assert client.post("/next", json={"history": [], "k": 2}).json()["fallback"] == "popularity"


def test_rank_scores_candidates_and_uses_the_oov_bucket(client):
    candidates = [
        {"d0": 0.5, "d1": -1.0},
        {"d0": -2.0, "d1": 0.0, "f7": "59"},
        {"d0": 0.0, "d1": 0.0, "f0": "never-seen"},
    ]
    body = client.post("/rank", json={"features": FEATURES, "candidates": candidates}).json()
    assert len(body["scores"]) == 3 and all(0 < s < 1 for s in body["scores"])


def test_similar_items(client):
    body = client.get("/items/1/similar", params={"k": 4}).json()
    assert len(body["similar"]) == 4 and "1" not in [s["item"] for s in body["similar"]]
    r = client.get("/items/does-not-exist/similar")
    assert r.status_code == 404 and r.json()["error"]["field"] == "id"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("post", "/next", {"history": ["1"], "k": 0}, 422, "k"),
        ("post", "/next", {"history": ["1"], "k": 101}, 422, "k"),
        ("post", "/next", {"history": "1"}, 422, "history"),
        ("post", "/next", {"k": 3}, 422, "history"),
        ("post", "/next", {"history": [["nested"]]}, 422, "history.0.str"),
        ("post", "/rank", {"features": FEATURES, "candidates": []}, 422, "candidates"),
        ("post", "/rank", {"features": {"f0": "1"}, "candidates": [{"d0": 1}]}, 422, "candidates.0"),
        (
            "post",
            "/rank",
            {"features": {**FEATURES, "typo": 1}, "candidates": [{"d0": 1, "d1": 2}]},
            422,
            "candidates.0",
        ),
        ("post", "/rank", {"features": FEATURES, "candidates": [{"d0": "abc", "d1": 0}]}, 422, "candidates"),
        ("get", "/items/1/similar?k=0", None, 422, "k"),
    ],
)
def test_bad_input_gets_the_error_shape(client, method, path, body, status, field):
    r = client.request(method, path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["field"] == field and error["message"]


def test_missing_fields_are_named(client):
    r = client.post("/rank", json={"features": {"f0": "1"}, "candidates": [{"d0": 1}]})
    message = r.json()["error"]["message"]
    assert "missing required fields" in message and "'f1'" in message and "'d1'" in message


def test_health_and_version(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert set(client.get("/version").json()) == {"next", "rank"}


def test_fuzzing_the_openapi_finds_nothing(client):
    fuzz(client)
