"""The genomics models as MLflow pyfunc models: what ``mlflow.pyfunc.load_model(...).predict`` and
``mlflow models serve`` answer (the model config's ``"predict": "services.genomics.pyfunc:predict"``).

Input: a ``sequence`` column, one DNA/RNA sequence per row (normalized and refused as by the REST API:
any case, ``U`` read as ``T``, IUPAC codes as ``N``). Output: one row per sequence, by the model's head:

    classify   label, probabilities ({label: p}, summing to 1), length, windows
    regress    values (one per target), length, windows
    tag        probabilities ({label: [p per base]}), predicted ([label per base]), length, windows
    lm         bits_per_base (mean -log2 p over bases 2..n), log_likelihood (natural log, summed), length, windows
    mlm        embedding (the pooled vector), length, windows

Sequences longer than the model's context are windowed as in :mod:`services.genomics.inference`
(``windows`` says how many were used). No params.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelstore.inputs import frame, no_other_params

from . import inference
from .models import GenomicsModel
from .sequences import SequenceError, normalize

COLUMN = "sequence"


def predict(model: GenomicsModel, model_input: Any, **params: Any) -> pd.DataFrame:
    no_other_params(params, ())
    sequences = _sequences(frame(model_input, required=[COLUMN], scalar=[COLUMN]))
    cfg = model.config
    if cfg.head == "classify":
        result = inference.class_probabilities(model, sequences)
        rows = [{"label": cfg.labels[int(p.argmax())], "probabilities": dict(zip(cfg.labels, map(float, p)))}
                for p in result.values]  # fmt: skip
    elif cfg.head == "regress":
        result = inference.class_probabilities(model, sequences)
        rows = [{"values": p.astype(float).tolist()} for p in result.values]
    elif cfg.head == "tag":
        rows, windows = [], []
        for sequence in sequences:
            probs, used = inference.tag_probabilities(model, sequence)
            predicted = probs.argmax(1)
            rows.append({"probabilities": {label: probs[:, j].tolist() for j, label in enumerate(cfg.labels)},
                         "predicted": [cfg.labels[j] for j in predicted]})  # fmt: skip
            windows.append(used)
        result = inference.Windowed([], windows)
    elif cfg.head == "lm":
        short = [i for i, s in enumerate(sequences) if len(s) < 2]
        if short:
            raise ValueError(f"{COLUMN} (row {short[0]}): the language model scores bases 2..n; send at least 2 bases")
        result = inference.log_likelihoods(model, sequences)
        rows = [{"bits_per_base": float(-ll.mean() / np.log(2)), "log_likelihood": float(ll.sum())}
                for ll in result.values]  # fmt: skip
    else:  # mlm: a pretrained encoder, served for its embeddings
        result = inference.embeddings(model, sequences)
        rows = [{"embedding": v.astype(float).tolist()} for v in result.values]
    for row, sequence, used in zip(rows, sequences, result.windows):
        row.update(length=len(sequence), windows=used)
    return pd.DataFrame(rows)


def serving_example(model: GenomicsModel) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Two sequences that fit the model's context (the input example MLflow stores with the model)."""
    size = min(model.config.max_bases, 60)
    sequence = ("ACGTTGCA" * (size // 8 + 1))[:size]
    return pd.DataFrame({COLUMN: [sequence, sequence[: max(2, size // 2)]]}), {}


def _sequences(rows: pd.DataFrame) -> list[str]:
    out = []
    for i, value in enumerate(rows[COLUMN]):
        if not isinstance(value, str):
            raise ValueError(f"{COLUMN} (row {i}) must be a string of DNA/RNA letters, got {type(value).__name__}")
        try:
            out.append(normalize(value, record=f"{COLUMN}[{i}]"))
        except SequenceError as e:
            raise ValueError(e.message) from None  # "record 'sequence[i]': invalid character ... at position .."
    return out
