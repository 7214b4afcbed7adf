"""The genomics app on a real Serve instance with models the pipeline trained and registered, over HTTP:
every endpoint, FASTA uploads, windows for long sequences, and a 4xx for every kind of bad input."""

from __future__ import annotations

import gzip

import httpx
import numpy as np
import pytest
from ray import serve

from services.genomics.app import build_app

from .fuzzing import fuzz

ROUTE = "/genomics-test"
MODELS = {
    "lm": "genomics-synthetic-lm-hyena",
    "classify": {"splice": "genomics-synthetic-splice-hyena"},
    "tag": {"coding": "genomics-coding-hyena"},
}
LIMITS = {"max_sequences": 8, "max_bases": 5000, "max_tag_bases": 3000}


def _random(n: int, seed: int = 0) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=n))


@pytest.fixture(scope="module")
def client(ray_cluster, trained_genomics):
    serve.run(build_app({"models": MODELS, **LIMITS}), name="genomics-test", route_prefix=ROUTE)
    with httpx.Client(base_url=ray_cluster["http"] + ROUTE, timeout=60) as c:
        yield c
    serve.delete("genomics-test")


def test_classify_returns_labels_with_probabilities(client):
    body = client.post("/classify", json={"sequences": [_random(60, 1), "acgu" * 15], "task": "splice"}).json()
    assert body["task"] == "splice" and body["model"]["name"] == MODELS["classify"]["splice"]
    assert len(body["results"]) == 2
    for r in body["results"]:
        assert r["label"] in {"0", "1", "2"} and r["windows"] == 1 and r["length"] == 60
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)


def test_long_sequences_are_windowed_and_say_so(client):
    long = _random(2500, 2)  # the tiny models' context is ~1,000 bases
    body = client.post("/classify", json={"sequences": [long], "task": "splice"}).json()
    assert body["results"][0]["windows"] > 1 and body["results"][0]["length"] == 2500
    body = client.post("/embed", json={"sequences": [long, "ACGT"]}).json()
    assert [r["windows"] for r in body["results"]][1] == 1 and body["results"][0]["windows"] > 1
    assert body["dim"] == 128 and all(len(r["vector"]) == 128 for r in body["results"])


def test_tag_returns_runs_covering_the_sequence(client):
    seq = _random(1500, 3)
    body = client.post("/tag", json={"sequence": seq, "task": "coding"}).json()
    runs = body["runs"]
    assert runs[0]["start"] == 0 and runs[-1]["end"] == 1500 and body["length"] == 1500
    assert all(a["end"] == b["start"] and a["label"] != b["label"] for a, b in zip(runs, runs[1:]))
    assert all(r["label"] in {"noncoding", "coding"} and 0.5 <= r["mean_probability"] <= 1 for r in runs)


def test_variant_effect_compares_reference_and_alternative(client):
    seq = _random(300, 4)
    alt = "A" if seq[100] != "A" else "C"
    first, expected = ("u", "T") if seq[0] != "T" else ("a", "A")  # U is read as T
    variants = [{"position": 100, "alt": alt}, {"position": 0, "alt": first}]
    effects = client.post("/variant-effect", json={"sequence": seq, "variants": variants}).json()["effects"]
    assert effects[0]["ref"] == seq[100] and effects[0]["alt"] == alt and effects[1]["alt"] == expected
    assert all(np.isfinite(e["delta_log_likelihood"]) for e in effects)
    # the tiny LM's context (129 bases) is shorter than the sequence: each variant gets a window around it
    for e in effects:
        start, end = e["window"]
        assert 0 <= start <= e["position"] < end <= 300 and end - start == 129
    assert effects[0]["delta_log_likelihood"] != 0


def test_fasta_uploads_give_one_result_per_record(client):
    fasta = f">first one\n{_random(60, 5)}\n>second\n{_random(30, 6)[:30]}\n{_random(30, 7)}\n"
    body = client.post("/classify/fasta", files={"file": ("x.fa", fasta)}, data={"task": "splice"}).json()
    assert [r["id"] for r in body["results"]] == ["first", "second"]
    assert [r["length"] for r in body["results"]] == [60, 60]
    gz = gzip.compress(fasta.encode())
    body = client.post("/embed/fasta", files={"file": ("x.fa.gz", gz)}).json()
    assert [r["id"] for r in body["results"]] == ["first", "second"]
    body = client.post("/tag/fasta", files={"file": ("x.fa", fasta)}, data={"task": "coding"}).json()
    assert [r["id"] for r in body["results"]] == ["first", "second"] and body["task"] == "coding"


def test_models_and_health(client):
    models = client.get("/models").json()
    assert set(models) == {"lm", "classify:splice", "tag:coding"}
    assert models["tag:coding"]["labels"] == ["noncoding", "coding"] and models["lm"]["arch"] == "hyena"
    assert client.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "body", "status", "field", "words"),
    [
        ("/classify", {"sequences": ["ACGTXACGT"], "task": "splice"}, 422, "sequences.0", "'X' at position 4"),
        ("/classify", {"sequences": ["ACGT", ""], "task": "splice"}, 422, "sequences.1", "empty"),
        ("/classify", {"sequences": [], "task": "splice"}, 422, "sequences", "at least 1"),
        ("/classify", {"sequences": ["ACGT"], "task": "nope"}, 422, "task", "splice"),
        ("/classify", {"sequences": ["ACGT"] * 9, "task": "splice"}, 413, "sequences", "at most 8"),
        ("/classify", {"sequences": ["A" * 3000, "C" * 2001], "task": "splice"}, 413, "sequences", "5001 bases"),
        ("/classify", {"sequence": "ACGT"}, 422, "sequences", "required"),
        ("/embed", {"sequences": ["AC GT"]}, 422, "sequences.0", "position 2"),
        ("/embed", {"sequences": ["ACGT"], "source": "nope"}, 422, "source", "lm"),
        ("/tag", {"sequence": "A" * 3001, "task": "coding"}, 413, "sequence", "at most 3000"),
        ("/tag", {"sequence": "ACGT-ACGT", "task": "coding"}, 422, "sequence.0", "'-'"),
        ("/tag", {"sequence": "ACGT", "task": "splice"}, 422, "task", "coding"),
        ("/variant-effect", {"sequence": "ACGT", "variants": [{"position": 4, "alt": "A"}]}, 422,
         "variants.0.position", "outside"),
        ("/variant-effect", {"sequence": "ACGT", "variants": [{"position": 0, "alt": "A"}]}, 422,
         "variants.0.alt", "equals the reference"),
        ("/variant-effect", {"sequence": "ACGT", "variants": [{"position": 1, "alt": "N"}]}, 422,
         "variants.0.alt", "A C G T"),
        ("/variant-effect", {"sequence": "ACGT", "variants": [{"position": -1, "alt": "A"}]}, 422,
         "variants.0.position", "greater than or equal"),
        ("/variant-effect", {"sequence": "ACGT", "variants": []}, 422, "variants", "at least 1"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_4xx_naming_the_field(client, path, body, status, field, words):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["field"] == field and words in error["message"], error


@pytest.mark.parametrize(
    ("content", "field", "words"),
    [
        (b"ACGT\n", "file", "header"),
        (b">a\nACGT\n>b\nAC*T\n", "file (record 'b')", "'*' at position 2"),
        (b"", "file", "no records"),
        (b"\xff\xfe>a\nACGT", "file", "not ASCII"),
        (b"\x1f\x8bnot really gzip", "file", "corrupt"),
    ],
)
def test_bad_fasta_uploads_get_a_422(client, content, field, words):
    r = client.post("/classify/fasta", files={"file": ("x.fa", content)}, data={"task": "splice"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field and words in error["message"], error


def test_malformed_json_and_missing_file(client):
    r = client.post("/classify", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and "error" in r.json()
    r = client.post("/classify/fasta", data={"task": "splice"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "file"


def test_fuzzing_the_openapi_finds_nothing(client):
    fuzz(client)
