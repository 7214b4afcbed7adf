"""The vision app on a real Serve instance with a model the pipeline trained and registered, over HTTP:
classify (multipart and base64 JSON), explain (a PNG), the model list, and a 4xx for every bad image."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import io

import httpx
import numpy as np
import pytest
from PIL import Image
from ray import serve

from services.vision.app import build_app

from .fuzzing import fuzz
from .promotion import register_copy

ROUTE = "/vision-test"


def _png(size=(28, 28), mode="L", fmt="PNG", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = size[::-1] if mode == "L" else (*size[::-1], 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(ray_cluster, trained_vision):
    app = build_app({"models": {"van": "vision-van-digits", "biformer": None, "agent": None}, "max_pixels": 250_000})
    serve.run(app, name="vision-test", route_prefix=ROUTE)
    with httpx.Client(base_url=ray_cluster["http"] + ROUTE, timeout=120) as c:
        yield c
    serve.delete("vision-test")


def test_classify_multipart_and_json(client, trained_vision):
    r = client.post("/classify", files={"file": ("x.png", _png())}, data={"model": "van", "top_k": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["labels"]) == 3 and body["input_size"] == [1, 28, 28]
    assert abs(sum(label["probability"] for label in body["labels"]) - 1) < 1  # top-3 of a distribution
    assert body["model"] == {"name": "vision-van-digits", "version": trained_vision.version}
    rgb_large = _png(size=(300, 200), mode="RGB", fmt="JPEG")
    r = client.post("/classify", json={"image_base64": base64.b64encode(rgb_large).decode(), "model": "van"})
    assert r.status_code == 200 and len(r.json()["labels"]) == 5  # any size and colour, resized by the transform


def test_explain_returns_a_png_heatmap(client):
    r = client.post("/explain", files={"file": ("x.png", _png(size=(56, 56)))}, data={"model": "van"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (56, 56) and image.mode == "RGB"
    assert r.headers["x-model"].startswith("vision-van-digits:")


def test_models_lists_versions_sizes_and_labels(client, trained_vision):
    models = client.get("/models").json()
    assert models["van"]["version"] == trained_vision.version
    assert models["van"]["input_size"] == [1, 28, 28] and models["van"]["labels"] == [str(i) for i in range(10)]
    assert client.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"files": {"file": ("x.png", b"not an image at all")}}, 415, "not a PNG, JPEG or WebP"),
        ({"files": {"file": ("x.png", _png()[:60])}}, 422, "truncated or corrupt"),
        ({"files": {"file": ("x.gif", _png(fmt="GIF"))}}, 415, "GIF images are not accepted"),
        ({"files": {"file": ("x.png", _png(size=(600, 600)))}}, 413, "pixels"),
        ({"files": {"file": ("x.png", b"")}}, 422, "empty"),
        ({"files": {"file": ("x.png", _png())}, "data": {"model": "resnet"}}, 422, "model must be one of"),
        ({"files": {"file": ("x.png", _png())}, "data": {"top_k": "0"}}, 422, "top_k"),
        ({"files": {"image": ("x.png", _png())}, "data": {"model": "van"}}, 422, "'file' field"),
        ({"data": {"model": "van"}}, 415, "x-www-form-urlencoded"),
        ({"json": {"image_base64": "%%%"}}, 422, "not valid base64"),
        ({"json": {"model": "van"}}, 422, "image_base64"),
        ({"content": b"raw bytes", "headers": {"content-type": "text/plain"}}, 415, "content type"),
        ({"content": b"{bad json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"x" * (12 << 20), "headers": {"content-type": "application/json"}}, 413, "exceeds"),
    ],
)
def test_bad_images_and_requests_get_a_clear_4xx(client, kwargs, status, needle):
    r = client.post("/classify", **kwargs)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_fuzzing_the_openapi_finds_nothing(client):
    fuzz(client)


def test_concurrent_classify_and_explain_each_get_their_own_answer(client):
    """Serve batches whatever arrives together: a batch mixing both kinds answers each in kind."""
    png = _png()
    with cf.ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(client.post, f"/{kind}", files={"file": ("d.png", png)}) for kind in ["classify", "explain"] * 6
        ]
        responses = [f.result() for f in futures]
    for kind, r in zip(["classify", "explain"] * 6, responses):
        assert r.status_code == 200, r.text
        assert (r.headers["content-type"] == "image/png") == (kind == "explain")


def test_a_newly_promoted_champion_is_served_without_a_redeploy(ray_cluster, trained_vision):
    """The multiplexed vision server follows ``@champion`` as every app does: promote a new version of the
    VAN model after it was loaded, and the app (looking every second) serves it with no redeploy."""
    import time

    from modelstore import registry

    name = "vision-van-digits"
    app = build_app({"models": {"van": name, "biformer": None, "agent": None}, "refresh_s": 1})
    serve.run(app, name="vision-follow", route_prefix="/vision-follow")
    before = trained_vision.version
    try:
        with httpx.Client(base_url=ray_cluster["http"] + "/vision-follow", timeout=120) as c:
            assert c.post("/classify", files={"file": ("x.png", _png())}).json()["model"]["version"] == before
            new = register_copy(name, before, "vision")
            registry.set_champion(name, new)
            statuses, served, start = [], before, time.monotonic()
            while served != new and time.monotonic() - start < 60:
                r = c.post("/classify", files={"file": ("x.png", _png())})
                statuses.append(r.status_code)
                served = r.json()["model"]["version"] if r.status_code == 200 else served
            print(f"v{before} -> v{new} served after {time.monotonic() - start:.1f} s")
            assert served == new and set(statuses) <= {200}
            assert c.get("/version").json()["van"] == {**registry.resolve_version(name).to_dict()}
    finally:
        registry.set_champion(name, before)
        serve.delete("vision-follow")
