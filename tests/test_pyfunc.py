"""Registered models work as MLflow users expect: one shipped zoo model per domain is registered the way
``python -m pipelines.zoo register`` does, loaded with ``mlflow.pyfunc.load_model("models:/<name>@champion")``
and asked on a pandas DataFrame and on a dict (the shapes ``mlflow models serve`` passes on)."""

from __future__ import annotations

import base64
import os

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines import zoo
from services.genomics.sequences import read_uci_splice
from services.recommendation.ctr import synthetic_ctr
from services.vision.data import read_mnist_folder
from services.vision.pyfunc import encode_png

NAMES = ["genomics-splice-hyena", "recommend-ctr-synthetic-hiformer", "recommend-next-markov-mqsa-ted",
         "vision-van-mnist", "pointer-tsp-ptrnet"]  # fmt: skip


@pytest.fixture(scope="module")
def champion(suite_env, tmp_path_factory):
    """``name`` → the pyfunc model behind ``models:/<name>@champion``, registered from a zoo of the five
    into an MLflow store of this module's own (other tests register models of the same names)."""
    previous = os.environ["MLFLOW_TRACKING_URI"]
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('pyfunc_mlflow') / 'mlflow.db'}"
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    shipped = tmp_path_factory.mktemp("zoo")
    for name in NAMES:
        (shipped / name).symlink_to(zoo.ZOO / name, target_is_directory=True)
    lines = zoo.register(shipped)
    assert len(lines) == len(NAMES) and all(" v1 (champion)" in line for line in lines), lines
    models = {"zoo": shipped}

    def load(name):
        if name not in models:  # loaded once, by the first test that asks
            models[name] = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        return models[name]

    yield load
    os.environ["MLFLOW_TRACKING_URI"] = previous
    mlflow.set_tracking_uri(previous)


def test_zoo_register_records_the_domain_predict_and_a_signature(champion):
    for name in NAMES:
        meta = champion(name).metadata
        assert meta.signature is not None and meta.signature.inputs.input_names(), name
        assert meta.saved_input_example_info is not None, name
    assert [p.name for p in champion("vision-van-mnist").metadata.signature.params] == ["top_k"]
    again = zoo.register(champion("zoo"))  # a second register finds each model by its digest and predict function
    assert all(" v1 (champion)" in line for line in again), again


def test_genomics_classifies_real_splice_junctions(champion):
    model = champion("genomics-splice-hyena")
    records = read_uci_splice(zoo.ROOT / "data/genomics/splice.data.gz")[::200][:16]
    out = model.predict(pd.DataFrame({"sequence": [r.sequence for r in records]}))
    assert list(out.columns) == ["label", "probabilities", "length", "windows"] and len(out) == len(records)
    for probs in out["probabilities"]:
        assert set(probs) == {"EI", "IE", "N"} and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    assert np.mean(out["label"] == [r.label for r in records]) >= 0.75
    one = model.predict({"sequence": records[0].sequence.lower().replace("t", "u")})  # RNA, lower case
    assert len(one) == 1 and one["label"][0] == out["label"][0]
    with pytest.raises(ValueError, match=r"sequence\[1\].*invalid character 'X' at position 2"):
        model.predict({"sequence": ["ACGT", "ACXT"]})


def test_recommendation_next_items_from_histories(champion):
    model = champion("recommend-next-markov-mqsa-ted")
    items = model.unwrap_python_model().model.config.item_ids
    histories = [items[:5], [int(items[7]), items[8]]]  # ids as strings or integers, as the REST API takes
    out = model.predict(pd.DataFrame({"history": histories}), params={"k": 4})
    assert len(out) == 2 and list(out.columns) == ["items", "scores", "unknown_items", "fallback"]
    for history, top, scores in zip(histories, out["items"], out["scores"]):
        assert len(top) == 4 and not set(top) & {str(i) for i in history} and set(top) <= set(items)
        assert scores == sorted(scores, reverse=True)
    default = model.predict({"history": [["no-such-item"]]})  # a dict of columns; default k = 10
    assert len(default["items"][0]) == 10 and default["fallback"][0] == "popularity"
    assert default["unknown_items"][0] == ["no-such-item"]
    with pytest.raises(ValueError, match=r"history \(row 0\) must be a list of item ids"):
        model.predict({"history": [int(items[0])]})  # a column of one id, not a list


def test_recommendation_click_probabilities_rank_synthetic_clicks(champion):
    model = champion("recommend-ctr-synthetic-hiformer")
    data = synthetic_ctr(400, seed=7)
    cat, dense = (data.categorical - 1).numpy(), data.dense.numpy()
    rows = [{**{f"f{j}": int(c[j]) for j in range(8)}, "d0": float(d[0]), "d1": float(d[1])}
            for c, d in zip(cat, dense)]  # fmt: skip
    out = model.predict(pd.DataFrame(rows))
    assert list(out.columns) == ["probability"] and len(out) == len(rows)
    assert out["probability"].between(0, 1).all()
    assert roc_auc_score(data.labels.numpy(), out["probability"]) > 0.8  # the card: 0.90
    records = model.predict([rows[0], {**rows[1], "f3": None, "d1": None}])  # a list of records; None = missing
    assert len(records) == 2 and records["probability"][0] == pytest.approx(out["probability"][0], abs=1e-6)
    with pytest.raises(ValueError, match=r"d0 must be a finite number"):
        model.predict([{**rows[0], "d0": float("inf")}])


def test_vision_reads_real_mnist_digits_as_png_or_pixels(champion):
    model = champion("vision-van-mnist")
    digits = read_mnist_folder(zoo.ROOT / "data/vision", prefix="t10k").subset(np.arange(16))
    out = model.predict(pd.DataFrame({"image": [encode_png(im) for im in digits.images]}), params={"top_k": 10})
    assert list(out.columns) == ["label", "labels", "probabilities"] and len(out) == 16
    for probs, labels in zip(out["probabilities"], out["labels"]):
        assert sum(probs) == pytest.approx(1, abs=1e-4) and sorted(labels) == [str(i) for i in range(10)]
    assert out["label"][0] == str(digits.labels[0])
    assert np.mean(out["label"] == digits.labels.astype(str)) >= 15 / 16
    pixels = model.predict({"image": [digits.images[0].tolist()]})  # nested pixel lists; default top_k = 5
    assert pixels["label"][0] == out["label"][0] and len(pixels["labels"][0]) == 5
    with pytest.raises(ValueError, match=r"image \(row 0\).*not a PNG, JPEG or WebP"):
        model.predict({"image": [base64.b64encode(b"not an image").decode()]})


def test_pointer_tours_visit_every_city_once(champion):
    model = champion("pointer-tsp-ptrnet")
    rng = np.random.default_rng(0)
    instances = [rng.random((12, 2)).tolist(), (rng.random((8, 2)) * 100).tolist()]
    out = model.predict(pd.DataFrame({"points": instances}))
    assert len(out) == 2 and {"tour", "length"} <= set(out.columns)
    for points, tour, length in zip(instances, out["tour"], out["length"]):
        assert sorted(tour) == list(range(len(points))) and length > 0
    beam = model.predict({"points": [instances[0]]}, params={"decode": "beam", "beam_width": 4})
    assert beam["length"][0] <= out["length"][0] + 1e-9
    with pytest.raises(ValueError, match=r"points \(row 0\).*distinct"):
        model.predict({"points": [[[0, 0], [1, 1], [0, 0], [1, 0]]]})
