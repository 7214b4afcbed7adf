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
from .sequences import pad_left


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
            cfg = model.config
            self.item_index = {item: i + 1 for i, item in enumerate(cfg.item_ids)}
            self.item_ids = ["<pad>", *cfg.item_ids]
            self.popularity = torch.tensor(cfg.popularity, dtype=torch.float32)
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

    @torch.no_grad()
    def _next(self, requests: list[Next]) -> list[dict[str, Any]]:
        model = self.models["next"]
        histories, unknown = [], []
        for r in requests:
            ids = [str(i) for i in r.history]
            histories.append([self.item_index[i] for i in ids if i in self.item_index])
            unknown.append([i for i in ids if i not in self.item_index])
        usable = [h for h in histories if h]
        scores = model.scores(pad_left(usable, model.config.max_len)) if usable else None
        results, row = [], 0
        for r, history, missing in zip(requests, histories, unknown):
            if history:
                s, fallback = scores[row].clone(), None
                row += 1
            else:
                s, fallback = self.popularity.clone(), "popularity"
            s[0] = -np.inf
            if r.exclude_seen and history:
                s[torch.tensor(history)] = -np.inf
            k = min(r.k, int(torch.isfinite(s).sum()))
            top = s.topk(k)
            items = [{"item": self.item_ids[i], "score": float(v)} for v, i in zip(top.values, top.indices.tolist())]
            results.append({"items": items, "unknown_items": missing, "fallback": fallback, "model": self._ref("next")})
        return results

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
        if item not in self.item_index:
            return Refusal(f"item {item!r} is unknown to the model", field="id", status=404, code="not_found")
        index = self.item_index[item]
        sims = self.unit_embeddings @ self.unit_embeddings[index]
        sims[0] = -np.inf
        sims[index] = -np.inf
        top = sims.topk(min(request.k, len(self.item_ids) - 2))
        similar = [{"item": self.item_ids[i], "score": float(v)} for v, i in zip(top.values, top.indices.tolist())]
        return {"item": item, "similar": similar, "model": self._ref("next")}
