"""The pointer app on a real Serve instance, loading the models the pipeline registered in MLflow,
answered over real HTTP: valid answers, the error shape for every bad input, health, version,
OpenAPI, batching and hot reload of a pinned version."""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx
import numpy as np
import pytest
from ray import serve

from modelstore import registry
from pipelines.pointer import registered_name
from services.pointer import problems
from services.pointer.app import build_app

from .fuzzing import fuzz
from .promotion import register_copy

ROUTE = "/pointer-test"


@pytest.fixture(scope="module")
def client(ray_cluster, trained_tsp, trained_hull):
    app = build_app({"models": {"delaunay": None}, "max_points": 60, "request_timeout_s": 20})
    serve.run(app, name="pointer-test", route_prefix=ROUTE)
    with httpx.Client(base_url=ray_cluster["http"] + ROUTE, timeout=60) as c:
        yield c
    serve.delete("pointer-test")


def _champion(task: str, kind: str) -> str:
    return registry.resolve_version(registered_name(task, kind)).version


def _points(n: int, seed: int = 0) -> list[list[float]]:
    return (np.random.default_rng(seed).random((n, 2)) * 100).tolist()


@pytest.mark.parametrize("decode", ["greedy", "beam", "sample"])
def test_tsp_returns_a_valid_tour(client, decode):
    pts = _points(12)
    r = client.post("/tsp", json={"points": pts, "decode": decode, "beam_width": 3, "samples": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert problems.is_permutation(body["tour"], 12)
    assert body["length"] == pytest.approx(problems.tour_length(np.asarray(pts), body["tour"]))
    assert body["model"] == {
        "name": registered_name("tsp", "attention"),
        "version": _champion("tsp", "attention"),
    }
    assert body["solve_ms"] > 0 and body["batch_size"] >= 1


def test_polish_never_lengthens_the_model_tour(client):
    body = client.post("/tsp", json={"points": _points(20, 3), "polish": True}).json()
    assert body["length"] <= body["model_length"] + 1e-9
    assert problems.is_permutation(body["model_tour"], 20)


def test_convex_hull_is_a_counter_clockwise_convex_polygon(client):
    pts = _points(15, 5)
    body = client.post("/convex-hull", json={"points": pts}).json()
    assert problems.is_convex_ccw_polygon(np.asarray(pts), body["hull"])
    assert body["area"] == pytest.approx(problems.polygon_area(np.asarray(pts), body["hull"]))
    assert body["model"]["version"] == _champion("convex_hull", "ptrnet")


def test_tsplib_upload(client):
    text = (pytest.importorskip("pathlib").Path(__file__).parent.parent / "data" / "burma14.tsp").read_bytes()
    r = client.post("/tsplib", files={"file": ("burma14.tsp", text)}, data={"polish": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["tour"]) == list(range(1, 15))
    assert body["length"] >= 3323 and body["length"] <= body["model_length"]


BAD = [
    ("/tsp", {"points": [[0, 0], [1, 1]]}, 422, "points"),
    ("/tsp", {"points": [[0, 0], [1, "a"], [2, 2]]}, 422, "points.1.1"),
    ("/tsp", {"points": [[0, 0], [1, True], [2, 2]]}, 422, "points.1.1"),
    ("/tsp", {"points": [[0, 0], [1], [2, 2]]}, 422, "points.1"),
    ("/tsp", {"points": [[0, 0], [1, 1], [0, 0]]}, 422, "points"),
    ("/tsp", {"points": "many"}, 422, "points"),
    ("/tsp", {"points": [[i, i * i] for i in range(61)]}, 422, "points"),
    ("/tsp", {"points": [[0, 0], [1, 2], [3, 1]], "decode": "nope"}, 422, "decode"),
    ("/tsp", {"points": [[0, 0], [1, 2], [3, 1]], "beam_width": 0}, 422, "beam_width"),
    ("/tsp", {"points": [[0, 0], [1, 2], [3, 1]], "unknown": 1}, 422, "unknown"),
    ("/tsp", {}, 422, "points"),
    ("/convex-hull", {"points": [[0, 0], [1, 1], [2, 2]]}, 422, "points"),
    ("/delaunay", {"points": [[0, 0], [1, 2], [3, 1]]}, 503, None),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), BAD)
def test_bad_input_gets_the_error_shape(client, path, body, status, field):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["field"] == field and error["message"] and error["code"]


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b'{"points": [[0, 0], [1, NaN], [2, 2]]}', 422),
        (b'{"points": [[0, 0], [1, Infinity], [2, 2]]}', 422),
        (b'{"points": [[0, 0], ', 400),
        (b"\xff\xfe garbage", 400),
        (b"[1, 2, 3]", 422),
        (b"x" * (2 << 20), 413),
    ],
)
def test_malformed_bodies_never_get_a_500(client, content, status):
    r = client.post("/tsp", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"code", "message", "field"}


HUGE = 1.7976931348623157e308
EXTREME = [  # what a fuzzer sent: finite, but spreads that overflow or that float32 cannot separate
    [[-HUGE, -1.0866e16], [HUGE, -2.2e-311], [-HUGE, 7.9e220]],
    [[0, 0], [1e-300, 0], [1e16, 1]],
    [[1e200, 0], [0, 1e200], [1e200, 1e200]],
    [[1e16, 1e-300], [0, 0], [1e-300, 1e16], [5e15, 5e15 + 1]],  # representable: answered
    [[2e-311, 0], [0, 2e-311], [1e-311, 3e-311], [0, 0]],  # subnormal spread: answered
]


@pytest.mark.parametrize("path", ["/tsp", "/convex-hull"])
@pytest.mark.parametrize("points", EXTREME)
def test_extreme_coordinates_are_answered_or_refused_quickly(client, path, points):
    body = {"points": points, **({"polish": True} if path == "/tsp" else {})}
    r = client.post(path, json=body, timeout=5)
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        assert r.json()["error"]["field"] == "points" and "points must" in r.json()["error"]["message"]
    else:
        value = r.json()["length" if path == "/tsp" else "area"]
        assert np.isfinite(value) and value >= 0  # a subnormal spread's area (~1e-622) underflows to 0
    assert client.post("/tsp", json={"points": _points(10), "polish": True}, timeout=5).status_code == 200


def test_bad_tsplib_files(client):
    for content, message in [(b"garbage", "EDGE_WEIGHT_TYPE"), (b"\xff\xfe", "UTF-8")]:
        r = client.post("/tsplib", files={"file": ("x.tsp", content)})
        assert r.status_code == 422 and message in r.json()["error"]["message"]
        assert r.json()["error"]["field"] == "file"
    assert client.post("/tsplib").status_code == 422


def test_health_version_docs_and_unknown_routes(client):
    assert client.get("/healthz").json()["status"] == "ok"
    version = client.get("/version").json()
    champion = registry.resolve_version(registered_name("tsp", "attention"))
    assert version["tsp"]["version"] == champion.version and version["tsp"]["run_id"] == champion.run_id
    assert version["convex_hull"]["name"] == registered_name("convex_hull", "ptrnet")
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/tsp", "/convex-hull", "/delaunay", "/tsplib", "/healthz", "/version"} <= set(paths)
    r = client.get("/no-such-route")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_concurrent_requests_are_batched(client):
    pts = _points(20, 9)
    with cf.ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(lambda _: client.post("/tsp", json={"points": pts}).json(), range(32)))
    assert all(problems.is_permutation(b["tour"], 20) for b in bodies)
    assert max(b["batch_size"] for b in bodies) > 1  # Serve's batcher grouped concurrent requests


def test_user_config_pins_and_releases_a_version(client):
    """Pin version 1 through the solver's reconfigure, then follow the champion alias again."""
    handle = serve.get_deployment_handle("PointerSolver", app_name="pointer-test")
    handle.reconfigure.remote({"versions": {"tsp": "1"}}).result()
    pinned = client.get("/version").json()["tsp"]
    assert pinned["version"] == "1" and pinned["alias"] is None
    assert client.post("/tsp", json={"points": _points(8)}).json()["model"]["version"] == "1"
    handle.reconfigure.remote({"versions": {}}).result()
    following = client.get("/version").json()["tsp"]
    assert following == {**registry.resolve_version(registered_name("tsp", "attention")).to_dict()}
    with pytest.raises(Exception, match="unknown models"):
        handle.reconfigure.remote({"versions": {"nope": "1"}}).result()


def test_fuzzing_the_openapi_finds_nothing(client):
    fuzz(client, exclude=("/delaunay",))  # no Delaunay model here: its 503 is the documented answer


def test_a_newly_promoted_champion_is_served_without_a_redeploy(ray_cluster, trained_tsp):
    """Promote a new version of the TSP model: the app (following @champion every second) serves it
    within seconds, and keeps answering while it switches."""
    name = registered_name("tsp", "attention")
    serve.run(
        build_app({"models": {"convex_hull": None, "delaunay": None}, "refresh_s": 1}),
        name="pointer-follow",
        route_prefix="/pointer-follow",
    )
    try:
        with httpx.Client(base_url=ray_cluster["http"] + "/pointer-follow", timeout=60) as c:
            before = c.get("/version").json()["tsp"]["version"]
            new = register_copy(name, before, "pointer")
            registry.set_champion(name, new)
            statuses, served, start = [], before, time.monotonic()
            while served != new and time.monotonic() - start < 60:
                statuses.append(c.post("/tsp", json={"points": _points(8)}).status_code)
                served = c.get("/version").json()["tsp"]["version"]
            print(f"v{before} -> v{new} served after {time.monotonic() - start:.1f} s")
            assert served == new and set(statuses) <= {200}
            assert c.post("/tsp", json={"points": _points(8)}).json()["model"]["version"] == new
    finally:
        registry.set_champion(name, before)
        serve.delete("pointer-follow")
