"""The Pointer-Net solver as a Ray Serve application (route prefix ``/pointer``).

    POST /pointer/tsp           {points, decode, beam_width, samples, polish} -> {tour, length, ...}
    POST /pointer/convex-hull   {points, decode, beam_width, samples}         -> {hull, area, ...}
    POST /pointer/delaunay      {points, decode, beam_width, samples}         -> {triangles, ...}
    POST /pointer/tsplib        multipart: file=<.tsp>, decode, polish         -> {tour, length, ...}
    GET  /pointer/healthz, /pointer/version, /pointer/models, /pointer/docs

Input rules (each refused with a 422 naming the field and the rule): at least 3 and at most
``max_points`` points, each a pair of finite numbers (strings, booleans, NaN and infinities are
refused), no two points equal (duplicates are refused, not merged: the answer indexes the input), and
for the convex hull and Delaunay not all on one line. Hulls list strictly convex vertices only
(points on a hull edge are not vertices).

No ``from __future__ import annotations`` here: Serve's class-based FastAPI views need the route
annotations as real types.
"""

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import File, Form, UploadFile
from pydantic import BaseModel, Field
from ray import serve

from services.common.deadline import Deadline, DeadlineExceeded
from services.common.errors import ERROR_RESPONSES, InputError
from services.common.ingress import ModelIngress, create_app, ingress_options, model_routes
from services.common.schemas import ModelRef, StrictRequest
from services.common.serving import bind_model_server

from . import problems, tsplib
from .server import PointerSolver, Solve
from .solver import Options

TASKS = {"tsp": "tsp", "convex_hull": "convex_hull", "delaunay": "delaunay"}
DEFAULT_MODELS = {
    "tsp": "pointer-tsp-attention",
    "convex_hull": "pointer-convex-hull-ptrnet",
    "delaunay": "pointer-delaunay-ptrnet",
}

Coordinate = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Point = Annotated[list[Coordinate], Field(min_length=2, max_length=2, description="[x, y]")]


class SolveRequest(StrictRequest):
    points: list[Point] = Field(min_length=3, description="the input points, [[x, y], ...]")
    decode: Literal["greedy", "beam", "sample"] = "greedy"
    beam_width: int = Field(5, ge=1, le=64, description="beams kept (decode=beam)")
    samples: int = Field(16, ge=1, le=1024, description="sampled answers, best kept (decode=sample)")


class TSPRequest(SolveRequest):
    polish: bool = Field(False, description="improve the model's tour with 2-opt and Or-opt")


class Timing(BaseModel):
    model: ModelRef
    solve_ms: float = Field(description="time in the service, queueing and batching included")
    batch_size: int = Field(description="requests decoded together with this one")


class TSPResponse(Timing):
    tour: list[int] = Field(description="a permutation of the point indices; the tour closes")
    length: float
    model_tour: list[int] | None = Field(None, description="the model's own tour when polish was asked")
    model_length: float | None = None


class HullResponse(Timing):
    hull: list[int] = Field(description="hull vertices, counter-clockwise")
    area: float


class DelaunayResponse(Timing):
    triangles: list[list[int]]


class TSPLibResponse(Timing):
    name: str
    dimension: int
    edge_weight_type: str
    tour: list[int] = Field(description="node ids as in the file (1-based)")
    length: float = Field(description="in the instance's own metric")
    model_length: float | None = Field(None, description="before polishing, in the instance's metric")


app = create_app(
    "Pointer-Net solver",
    "Convex hull, Delaunay triangulation and TSP with pointer models trained by the suite's pipelines.",
)


def _points(raw: list[list[float]], *, task: str, max_points: int) -> list[list[float]]:
    try:
        arr = problems.check_points(raw, max_points=max_points, allow_collinear=task == "tsp")
    except ValueError as e:
        raise InputError(str(e), field="points") from None
    return arr.tolist()


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
@model_routes(app)
class PointerIngress(ModelIngress):
    def __init__(self, solver, *, tasks: list[str], max_points: int = 200, request_timeout_s: float = 10.0):
        super().__init__(solver, request_timeout_s=request_timeout_s)
        self.tasks = set(tasks)
        self.max_points = max_points

    async def _solve(self, task: str, body: SolveRequest, **extra: Any) -> dict[str, Any]:
        start = time.perf_counter()
        if task not in self.tasks:
            raise InputError(f"this deployment serves no {task} model", status=503, code="unavailable")
        options = Options(decode=body.decode, beam_width=body.beam_width, samples=body.samples, **extra)
        points = _points(body.points, task=task, max_points=self.max_points)
        result = await self.call(Solve(task=task, points=points, options=options))
        result["solve_ms"] = (time.perf_counter() - start) * 1e3
        return result

    @app.post("/tsp", response_model=TSPResponse, responses=ERROR_RESPONSES)
    async def tsp(self, body: TSPRequest) -> dict[str, Any]:
        """A closed tour through all points (shortest the model finds; optionally polished)."""
        return await self._solve("tsp", body, polish=body.polish)

    @app.post("/convex-hull", response_model=HullResponse, responses=ERROR_RESPONSES)
    async def convex_hull(self, body: SolveRequest) -> dict[str, Any]:
        """The convex hull as a counter-clockwise polygon of input points."""
        return await self._solve("convex_hull", body)

    @app.post("/delaunay", response_model=DelaunayResponse, responses=ERROR_RESPONSES)
    async def delaunay(self, body: SolveRequest) -> dict[str, Any]:
        """The Delaunay triangulation as triangles of point indices."""
        return await self._solve("delaunay", body)

    @app.post("/tsplib", response_model=TSPLibResponse, responses=ERROR_RESPONSES)
    async def tsplib_file(
        self,
        file: UploadFile = File(description="a TSPLIB .tsp file (EUC_2D, CEIL_2D, ATT or GEO)"),  # noqa: B008
        decode: Literal["greedy", "beam", "sample"] = Form("greedy"),
        beam_width: int = Form(5, ge=1, le=64),
        samples: int = Form(16, ge=1, le=1024),
        polish: bool = Form(True),
    ) -> dict[str, Any]:
        """Solve a TSPLIB instance; lengths are in the instance's own metric."""
        start = time.perf_counter()
        try:
            instance = tsplib.parse_tsp((await file.read()).decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError("file must be a UTF-8 text .tsp file", field="file") from None
        except ValueError as e:
            raise InputError(str(e), field="file") from None
        if instance.dimension > self.max_points:
            raise InputError(f"file has {instance.dimension} nodes; at most {self.max_points} are allowed", "file")
        try:
            points = problems.check_points(instance.planar(), max_points=self.max_points, allow_collinear=True)
        except ValueError as e:
            raise InputError(str(e), field="file") from None
        if "tsp" not in self.tasks:
            raise InputError("this deployment serves no tsp model", status=503, code="unavailable")
        options = Options(decode=decode, beam_width=beam_width, samples=samples, polish=False)
        result = await self.call(Solve(task="tsp", points=points.tolist(), options=options))
        dist = instance.distances()
        tour = result["tour"]
        model_length = problems.tour_cost(dist, tour)
        if polish:
            remaining = Deadline.after(self.timeout_s - (time.perf_counter() - start))
            try:
                tour = await asyncio.to_thread(problems.polish, dist, tour, deadline=remaining)
            except DeadlineExceeded:
                raise InputError(
                    f"the request took longer than {self.timeout_s:g} s", status=504, code="timeout"
                ) from None
            except ValueError as e:
                raise InputError(str(e), field="file") from None
        return {
            "name": instance.name,
            "dimension": instance.dimension,
            "edge_weight_type": instance.edge_weight_type,
            "tour": [i + 1 for i in tour],
            "length": problems.tour_cost(dist, tour),
            "model_length": model_length if polish else None,
            "model": result["model"],
            "batch_size": result["batch_size"],
            "solve_ms": (time.perf_counter() - start) * 1e3,
        }


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder for Serve configs (``import_path: services.pointer.app:build_app``).

    args: ``tracking_uri``, ``models`` ({task: registered name}), ``versions`` ({task: version}),
    ``max_points``, ``request_timeout_s``, ``max_batch_size``, ``batch_wait_timeout_s``, ``num_cpus``.
    """
    models = {task: name for task, name in {**DEFAULT_MODELS, **(args.get("models") or {})}.items() if name}
    unknown = set(models) - set(TASKS)
    if unknown:
        raise ValueError(f"models names unknown tasks {sorted(unknown)}; tasks are {sorted(TASKS)}")
    solver = bind_model_server(PointerSolver, models, args)
    return PointerIngress.options(**ingress_options(args)).bind(
        solver,
        tasks=sorted(models),
        max_points=int(args.get("max_points", 200)),
        request_timeout_s=float(args.get("request_timeout_s", 10)),
    )
