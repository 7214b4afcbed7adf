"""The recommendation models as MLflow pyfunc models: what ``mlflow.pyfunc.load_model(...).predict`` and
``mlflow models serve`` answer (the model config's ``"predict": "services.recommendation.pyfunc:predict"``).

Next-item models (MQSA-TED, SASRec), as ``POST /recommend/next``:

    input    a ``history`` column: the user's item ids, oldest first (strings or integers)
    params   ``k`` (1..100, default 10), ``exclude_seen`` (default true)
    output   items (the top-k ids, best first), scores, unknown_items (history ids the model does not know,
             ignored), fallback ("popularity" when no known item was left, else None)

Click models (Hiformer and the baselines), as ``POST /recommend/rank`` with one candidate per row:

    input    every field of the model's schema as a column (None: missing; unseen values use the
             out-of-vocabulary bucket); unknown columns are refused
    output   probability (of a click)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelstore.inputs import flag, frame, integer, no_other_params, sequence_of

from .ctr import Schema
from .sequential import NextItemRanker, SequentialRecommender

MAX_K = 100
MAX_HISTORY = 1000
BATCH = 256


def predict(model: nn.Module, model_input: Any, **params: Any) -> pd.DataFrame:
    if isinstance(model, SequentialRecommender):
        return next_items(model, model_input, **params)
    return click_probabilities(model, model_input, **params)


@torch.no_grad()
def next_items(model: SequentialRecommender, model_input: Any, **params: Any) -> pd.DataFrame:
    no_other_params(params, ("k", "exclude_seen"))
    k = integer(params, "k", 10, 1, MAX_K)
    exclude_seen = flag(params, "exclude_seen", True)
    histories = [[str(item) for item in _history(value, i)]
                 for i, value in enumerate(frame(model_input, required=["history"])["history"])]  # fmt: skip
    answers = _ranker(model).top(histories, [k] * len(histories), [exclude_seen] * len(histories))
    return pd.DataFrame([dataclasses.asdict(a) for a in answers])


def _ranker(model: SequentialRecommender) -> NextItemRanker:
    """The model's ranker, built on its first call (the item index is the size of the catalogue)."""
    if "_ranker" not in model.__dict__:
        model.__dict__["_ranker"] = NextItemRanker(model, BATCH)
    return model.__dict__["_ranker"]


@torch.no_grad()
def click_probabilities(model: nn.Module, model_input: Any, **params: Any) -> pd.DataFrame:
    no_other_params(params, ())
    schema = Schema.from_dict(model.config.schema)
    fields = [*schema.categorical, *schema.dense]
    records = frame(model_input, required=fields, scalar=fields, what="candidates").to_dict("records")
    for i, row in enumerate(records):
        for name in schema.categorical:
            # a None elsewhere in the column turns pandas' integers into floats: 5.0 is the category "5"
            if isinstance(row[name], float | np.floating) and float(row[name]).is_integer():
                row[name] = int(row[name])
        for name in schema.dense:
            value = row[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | np.number)):
                raise ValueError(f"{name} (row {i}) must be a number or None, got {value!r}")
    try:
        categorical, dense = schema.encode(records)
    except ValueError as e:  # a dense field that is not finite: the message names it
        raise ValueError(f"candidates: {e}") from None
    probability = torch.cat([torch.sigmoid(model(categorical[a : a + BATCH], dense[a : a + BATCH]).float())
                             for a in range(0, len(records), BATCH)])  # fmt: skip
    return pd.DataFrame({"probability": probability.tolist()})


def serving_example(model: nn.Module) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Two users' histories (next-item) or two candidates (click) that the model knows."""
    if isinstance(model, SequentialRecommender):
        items = model.config.item_ids
        return pd.DataFrame({"history": [items[:3], items[3:4]]}), {"k": 10, "exclude_seen": True}
    schema = Schema.from_dict(model.config.schema)
    row: dict[str, Any] = {f: next(iter(schema.vocab.get(f) or {"0": 1})) for f in schema.categorical}
    row.update({f: 0.0 for f in schema.dense})
    return pd.DataFrame([row, {**row, **{f: None for f in schema.categorical[:1]}}]), {}


def _history(value: Any, row: int) -> list:
    items = sequence_of(value)
    if items is None:
        raise ValueError(f"history (row {row}) must be a list of item ids, got {value!r}")
    if len(items) > MAX_HISTORY:
        raise ValueError(f"history (row {row}) has {len(items)} items; at most {MAX_HISTORY}")
    for item in items:
        if isinstance(item, bool | float) or not isinstance(item, str | int | np.integer | np.str_):
            raise ValueError(f"history (row {row}) must hold item ids (strings or integers), got {item!r}")
    return [item.item() if isinstance(item, np.generic) else item for item in items]
