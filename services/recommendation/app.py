"""The recommendation service as a Ray Serve application (route prefix ``/recommend``).

    POST /recommend/next                {history: [item ids], k, exclude_seen}  -> ranked {item, score}
    POST /recommend/rank                {features: {...}, candidates: [{...}]}  -> a click score per candidate
    GET  /recommend/items/{id}/similar  ?k=                                    -> nearest items by embedding
    GET  /recommend/healthz, /recommend/version, /recommend/models, /recommend/docs

``next``: unknown item ids are dropped and listed in ``unknown_items``; when nothing usable is left the
answer falls back to the most popular items and says so (``fallback: "popularity"``). ``rank``: each
candidate's fields are merged over the request's ``features``; every field of the model's schema must
be present (a 422 names the missing ones, and unknown field names too); unseen categorical values use
the out-of-vocabulary bucket.

No ``from __future__ import annotations``: Serve's class-based views need real annotations.
"""

from typing import Any

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import BaseModel, Field
from ray import serve

from services.common.errors import ERROR_RESPONSES
from services.common.ingress import ModelIngress, create_app, ingress_options, model_routes
from services.common.schemas import ModelRef, StrictRequest
from services.common.serving import bind_model_server

from .server import Next, Rank, RecommendServer, Similar

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


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
@model_routes(app)
class RecommendIngress(ModelIngress):
    def __init__(self, server, *, request_timeout_s: float = 10.0):
        super().__init__(server, request_timeout_s=request_timeout_s)

    @app.post("/next", response_model=NextResponse, responses=ERROR_RESPONSES)
    async def next_items(self, body: NextRequest) -> dict[str, Any]:
        """The k items the user is most likely to interact with next."""
        return await self.call(Next(history=body.history, k=body.k, exclude_seen=body.exclude_seen))

    @app.post("/rank", response_model=RankResponse, responses=ERROR_RESPONSES)
    async def rank(self, body: RankRequest) -> dict[str, Any]:
        """Click probability of each candidate given the shared features."""
        return await self.call(Rank(features=body.features, candidates=body.candidates))

    @app.get("/items/{item_id}/similar", response_model=SimilarResponse, responses={**ERROR_RESPONSES, 404: {}})
    async def similar(
        self, item_id: str = PathParam(max_length=200), k: int = Query(10, ge=1, le=MAX_K)
    ) -> dict[str, Any]:
        """Items whose learned embeddings are closest (cosine) to this one."""
        return await self.call(Similar(item=item_id, k=k))


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
