"""The recommendation service as a Ray Serve application (route prefix ``/recommend``).

    POST /recommend/next                {history: [item ids], k, exclude_seen}  -> ranked {item, score}
    POST /recommend/rank                {features: {...}, candidates: [{...}]}  -> a click score per candidate
    GET  /recommend/items/{id}/similar  ?k=                                    -> nearest items by embedding
    GET  /recommend/healthz, /recommend/version, /recommend/docs

``next``: unknown item ids are dropped and listed in ``unknown_items``; when nothing usable is left the
answer falls back to the most popular items and says so (``fallback: "popularity"``). ``rank``: each
candidate's fields are merged over the request's ``features``; every field of the model's schema must
be present (a 422 names the missing ones, and unknown field names too); unseen categorical values use
the out-of-vocabulary bucket.

No ``from __future__ import annotations``: Serve's class-based views need real annotations.
"""

from typing import Any

import numpy as np
import torch
from fastapi import Path as PathParam
from fastapi import Query
from pydantic import BaseModel, Field
from ray import serve

from services.common.errors import ERROR_RESPONSES
from services.common.schemas import ModelRef, StrictRequest
from services.common.serving import (
    ModelServer,
    bind_model_server,
    call_model,
    create_app,
    health,
    ingress_options,
    versions,
)

from .ctr import Schema
from .sequences import pad_left

DEFAULT_MODELS = {"next": "recommend-next-markov-mqsa-ted", "rank": "recommend-ctr-synthetic-hiformer"}
MAX_K = 100
MAX_HISTORY = 1000
MAX_CANDIDATES = 1000

ItemId = str | int
FieldValue = str | int | float | None


class NextRequest(StrictRequest):
    history: list[ItemId] = Field(max_length=MAX_HISTORY, description="the user's items, oldest first")
    k: int = Field(10, ge=1, le=MAX_K, description="how many items to return")
    exclude_seen: bool = Field(True, description="leave out items already in the history")


class ScoredItem(BaseModel):
    item: str
    score: float


class NextResponse(BaseModel):
    items: list[ScoredItem]
    unknown_items: list[str] = Field(description="history ids the model does not know (ignored)")
    fallback: str | None = Field(None, description="'popularity' when no known history item was left")
    model: ModelRef
    batch_size: int


class RankRequest(StrictRequest):
    features: dict[str, FieldValue] = Field(default_factory=dict, description="fields shared by all candidates")
    candidates: list[dict[str, FieldValue]] = Field(min_length=1, max_length=MAX_CANDIDATES)


class RankResponse(BaseModel):
    scores: list[float] = Field(description="click probability per candidate, in request order")
    model: ModelRef
    batch_size: int


class SimilarResponse(BaseModel):
    item: str
    similar: list[ScoredItem]
    model: ModelRef


app = create_app("Recommendation", "Next-item recommendation (MQSA-TED, SASRec) and click ranking (Hiformer).")


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

    def process_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any] | None] = [None] * len(requests)
        nexts = [i for i, r in enumerate(requests) if r["kind"] == "next"]
        if nexts:
            for i, result in zip(nexts, self._next([requests[i] for i in nexts])):
                out[i] = result
        for i, r in enumerate(requests):
            if r["kind"] == "rank":
                out[i] = self._rank(r)
            elif r["kind"] == "similar":
                out[i] = self._similar(r)
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def _next(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model = self.models["next"]
        histories, unknown = [], []
        for r in requests:
            ids = [str(i) for i in r["history"]]
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
            if r["exclude_seen"] and history:
                s[torch.tensor(history)] = -np.inf
            k = min(r["k"], int(torch.isfinite(s).sum()))
            top = s.topk(k)
            items = [{"item": self.item_ids[i], "score": float(v)} for v, i in zip(top.values, top.indices.tolist())]
            results.append({"items": items, "unknown_items": missing, "fallback": fallback, "model": self._ref("next")})
        return results

    @torch.no_grad()
    def _rank(self, request: dict[str, Any]) -> dict[str, Any]:
        rows = [{**request["features"], **c} for c in request["candidates"]]
        for number, row in enumerate(rows):
            missing = sorted(self.fields - set(row))
            extra = sorted(set(row) - self.fields)
            if missing or extra:
                parts = ([f"missing required fields {missing}"] if missing else []) + (
                    [f"unknown fields {extra}"] if extra else []
                )
                message = f"candidate {number}: {'; '.join(parts)} (fields: {sorted(self.fields)})"
                return {"error": {"code": "invalid_request", "message": message, "field": f"candidates.{number}",
                                  "status": 422}}  # fmt: skip
        try:
            categorical, dense = self.schema.encode(rows)
        except ValueError as e:
            return {"error": {"code": "invalid_request", "message": str(e), "field": "candidates", "status": 422}}
        scores = torch.sigmoid(self.models["rank"](categorical, dense))
        return {"scores": scores.tolist(), "model": self._ref("rank")}

    @torch.no_grad()
    def _similar(self, request: dict[str, Any]) -> dict[str, Any]:
        item = request["item"]
        if item not in self.item_index:
            return {"error": {"code": "not_found", "message": f"item {item!r} is unknown to the model",
                              "field": "id", "status": 404}}  # fmt: skip
        index = self.item_index[item]
        sims = self.unit_embeddings @ self.unit_embeddings[index]
        sims[0] = -np.inf
        sims[index] = -np.inf
        top = sims.topk(min(request["k"], len(self.item_ids) - 2))
        similar = [{"item": self.item_ids[i], "score": float(v)} for v, i in zip(top.values, top.indices.tolist())]
        return {"item": item, "similar": similar, "model": self._ref("next")}


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
class RecommendIngress:
    def __init__(self, server, *, request_timeout_s: float = 10.0):
        self.server = server
        self.timeout_s = request_timeout_s

    @app.post("/next", response_model=NextResponse, responses=ERROR_RESPONSES)
    async def next_items(self, body: NextRequest) -> dict[str, Any]:
        """The k items the user is most likely to interact with next."""
        return await call_model(self.server, {"kind": "next", **body.model_dump()}, self.timeout_s)

    @app.post("/rank", response_model=RankResponse, responses=ERROR_RESPONSES)
    async def rank(self, body: RankRequest) -> dict[str, Any]:
        """Click probability of each candidate given the shared features."""
        return await call_model(self.server, {"kind": "rank", **body.model_dump()}, self.timeout_s)

    @app.get("/items/{item_id}/similar", response_model=SimilarResponse, responses={**ERROR_RESPONSES, 404: {}})
    async def similar(
        self, item_id: str = PathParam(max_length=200), k: int = Query(10, ge=1, le=MAX_K)
    ) -> dict[str, Any]:
        """Items whose learned embeddings are closest (cosine) to this one."""
        return await call_model(self.server, {"kind": "similar", "item": item_id, "k": k}, self.timeout_s)

    @app.get("/healthz", responses=ERROR_RESPONSES)
    async def healthz(self) -> dict[str, Any]:
        return await health(self.server)

    @app.get("/version", responses=ERROR_RESPONSES)
    async def version(self) -> dict[str, Any]:
        return await versions(self.server)


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder (``import_path: services.recommendation.app:build_app``).

    args: ``tracking_uri``, ``models`` ({"next": name, "rank": name}), ``versions``, ``max_batch_size``,
    ``batch_wait_timeout_s``, ``request_timeout_s``, ``num_cpus``.
    """
    models = {**DEFAULT_MODELS, **(args.get("models") or {})}
    unknown = set(models) - set(DEFAULT_MODELS)
    if unknown:
        raise ValueError(f"models names unknown endpoints {sorted(unknown)}; expected {sorted(DEFAULT_MODELS)}")
    server = bind_model_server(RecommendServer, models, args)
    return RecommendIngress.options(**ingress_options(args)).bind(
        server, request_timeout_s=float(args.get("request_timeout_s", 10))
    )
