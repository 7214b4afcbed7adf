"""The recommendation app's model deployment (next-item and click models) and the messages its
ingress sends it: :class:`Next`, :class:`Rank` and :class:`Similar`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray import serve

from services.common.serving import Answer, Message, ModelServer, Refusal

from .ctr import Schema
from .sequential import NextItemRanker


@dataclass
class Next(Message):
    """The ``k`` items most likely next after ``history`` (item ids, oldest first)."""

    history: list[str | int]
    k: int
    exclude_seen: bool


@dataclass
class Rank(Message):
    """A click probability per candidate; each candidate's fields merged over ``features``."""

    features: dict[str, Any]
    candidates: list[dict[str, Any]]


@dataclass
class Similar(Message):
    """The ``k`` items whose embeddings are nearest to ``item``'s."""

    item: str
    k: int


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})
class RecommendServer(ModelServer):
    """Holds the next-item model (``next``) and the click model (``rank``)."""

    def _load(self, key: str, name: str, version: str | None) -> None:
        super()._load(key, name, version)
        model = self.models[key]
        if key == "next":
            self.ranker = NextItemRanker(model)
            embeddings = model.items.weight.detach()
            self.unit_embeddings = embeddings / embeddings.norm(dim=1, keepdim=True).clamp_min(1e-12)
        else:
            self.schema = Schema.from_dict(model.config.schema)
            self.fields = set(self.schema.categorical) | set(self.schema.dense)

    def _ref(self, key: str) -> dict[str, str]:
        return {"name": self.infos[key].name, "version": self.infos[key].version}

    def process_batch(self, requests: list[Message]) -> list[Answer]:
        out: list[Answer | None] = [None] * len(requests)
        nexts = [i for i, r in enumerate(requests) if isinstance(r, Next)]
        if nexts:
            for i, result in zip(nexts, self._next([requests[i] for i in nexts])):
                out[i] = result
        for i, r in enumerate(requests):
            if isinstance(r, Rank):
                out[i] = self._rank(r)
            elif isinstance(r, Similar):
                out[i] = self._similar(r)
        return out  # type: ignore[return-value]

    def _next(self, requests: list[Next]) -> list[dict[str, Any]]:
        answers = self.ranker.top([[str(i) for i in r.history] for r in requests], [r.k for r in requests],
                                  [r.exclude_seen for r in requests])  # fmt: skip
        return [{"items": [{"item": i, "score": float(v)} for i, v in zip(a.items, a.scores)],
                 "unknown_items": a.unknown_items, "fallback": a.fallback, "model": self._ref("next")}
                for a in answers]  # fmt: skip

    @torch.no_grad()
    def _rank(self, request: Rank) -> Answer:
        rows = [{**request.features, **c} for c in request.candidates]
        for number, row in enumerate(rows):
            missing = sorted(self.fields - set(row))
            extra = sorted(set(row) - self.fields)
            if missing or extra:
                parts = ([f"missing required fields {missing}"] if missing else []) + (
                    [f"unknown fields {extra}"] if extra else []
                )
                message = f"candidate {number}: {'; '.join(parts)} (fields: {sorted(self.fields)})"
                return Refusal(message, field=f"candidates.{number}")
        try:
            categorical, dense = self.schema.encode(rows)
        except ValueError as e:
            return Refusal(str(e), field="candidates")
        scores = torch.sigmoid(self.models["rank"](categorical, dense))
        return {"scores": scores.tolist(), "model": self._ref("rank")}

    @torch.no_grad()
    def _similar(self, request: Similar) -> Answer:
        item = request.item
        index = self.ranker.index.get(item)
        if index is None:
            return Refusal(f"item {item!r} is unknown to the model", field="id", status=404, code="not_found")
        sims = self.unit_embeddings @ self.unit_embeddings[index]
        sims[0] = -np.inf
        sims[index] = -np.inf
        ids = self.ranker.item_ids
        top = sims.topk(min(request.k, len(ids) - 2))
        similar = [{"item": ids[i], "score": float(v)} for v, i in zip(top.values, top.indices.tolist())]
        return {"item": item, "similar": similar, "model": self._ref("next")}
