"""The vision service as a Ray Serve application (route prefix ``/vision``).

    POST /vision/classify   image as multipart (``file``) or JSON (``image_base64``); ``top_k``, ``model``
    POST /vision/explain    same input; a PNG: the Grad-CAM heatmap of the predicted class over the image
    GET  /vision/models     served models: registered name, version, input size, channels, labels
    GET  /vision/healthz, /vision/version, /vision/docs

Models are multiplexed (:mod:`.server`): the model deployment loads a model the first time a request
names it and keeps the most recently used ones, following each one's ``@champion`` as every app does.
Images: PNG, JPEG or WebP of any size (resized by the model's transform), at most ``max_upload_bytes``
and ``max_pixels``; undecodable or truncated images, other formats and content types get a 4xx saying so.

No ``from __future__ import annotations``: Serve's class-based views need real annotations.
"""

import asyncio
import base64
import binascii
import json
import time
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve

from services.common.errors import UPLOAD_ERROR_RESPONSES, InputError
from services.common.ingress import ModelIngress, create_app, ingress_options, model_routes
from services.common.schemas import ModelRef
from services.common.serving import bind_model_server

from .images import MAX_PIXELS, decode_image
from .server import Classify, Explain, VisionServer

DEFAULT_MODELS = {"van": "vision-van-digits", "biformer": "vision-biformer-digits", "agent": "vision-agent-digits"}
MAX_UPLOAD_BYTES = 10 << 20


class ClassifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field("van", description="one of the served models (GET /vision/models)")
    top_k: int = Field(5, ge=1, le=100)


class ClassifyJSON(ClassifyOptions):
    model_config = ConfigDict(extra="forbid", strict=True)  # the JSON body; form fields arrive as text
    image_base64: str = Field(description="the image file's bytes, base64-encoded")


class Label(BaseModel):
    label: str
    probability: float


class ClassifyResponse(BaseModel):
    labels: list[Label]
    model: ModelRef
    input_size: list[int]
    batch_size: int


app = create_app(
    "Vision", "Image classification with VAN, BiFormer and Agent Attention (timm models trained by the suite).",
    max_body_bytes=MAX_UPLOAD_BYTES + (1 << 20),
)  # fmt: skip


async def read_request(request: Request) -> tuple[bytes, ClassifyOptions]:
    """Multipart (``file`` + form fields) or JSON (``image_base64`` + fields)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InputError("a multipart request needs the image in the 'file' field", field="file")
        raw = await upload.read()
        fields = {k: v for k, v in form.items() if k != "file"}
        try:
            return raw, ClassifyOptions(**fields)
        except ValidationError as e:
            first = e.errors()[0]
            raise InputError(f"{first['loc'][0]}: {first['msg']}", field=str(first["loc"][0])) from None
    if content_type.startswith("application/json"):
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"the body is not valid JSON: {e}", status=400, code="malformed_json") from None
        try:
            body = ClassifyJSON(**payload) if isinstance(payload, dict) else ClassifyJSON.model_validate(payload)
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            raise InputError(f"{field}: {first['msg']}" if field else first["msg"], field=field) from None
        try:
            raw = base64.b64decode(body.image_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InputError("image_base64 is not valid base64", field="image_base64") from None
        return raw, ClassifyOptions(model=body.model, top_k=body.top_k)
    raise InputError(f"content type {content_type or 'none'!r} is not accepted: send multipart/form-data or "
                     "application/json", status=415, code="unsupported_media_type")  # fmt: skip


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
@model_routes(app)
class VisionIngress(ModelIngress):
    def __init__(self, server, *, models: list[str], request_timeout_s: float = 20.0, max_pixels: int = MAX_PIXELS):
        super().__init__(server, request_timeout_s=request_timeout_s)
        self.models, self.max_pixels = set(models), max_pixels

    async def _call(self, request: Request, kind: type[Classify] | type[Explain]) -> dict[str, Any]:
        raw, options = await read_request(request)
        if options.model not in self.models:
            raise InputError(f"model must be one of {sorted(self.models)}, got {options.model!r}", field="model")
        image = await asyncio.to_thread(decode_image, raw, self.max_pixels)
        array = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
        if kind is Classify:
            message = Classify(model=options.model, image=array, top_k=options.top_k)
        else:
            message = Explain(model=options.model, image=array)
        return await self.call(message, model=options.model)

    @app.post("/classify", response_model=ClassifyResponse, responses=UPLOAD_ERROR_RESPONSES,
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "file": {"type": "string", "format": "binary"}, "model": {"type": "string"},
                      "top_k": {"type": "integer"}}, "required": ["file"]}},
                  "application/json": {"schema": ClassifyJSON.model_json_schema()}}}})  # fmt: skip
    async def classify(self, request: Request) -> dict[str, Any]:
        """Top-k labels with probabilities."""
        start = time.perf_counter()
        result = await self._call(request, Classify)
        result["solve_ms"] = (time.perf_counter() - start) * 1e3
        return result

    @app.post("/explain", responses={**UPLOAD_ERROR_RESPONSES, 200: {"content": {"image/png": {}}}},
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "file": {"type": "string", "format": "binary"}, "model": {"type": "string"}},
                      "required": ["file"]}},
                  "application/json": {"schema": ClassifyJSON.model_json_schema()}}}})  # fmt: skip
    async def explain(self, request: Request) -> Response:
        """A PNG heatmap (Grad-CAM) of where the model looked for its predicted label."""
        result = await self._call(request, Explain)
        headers = {"X-Model": f"{result['model']['name']}:{result['model']['version']}", "X-Label": result["label"]}
        return Response(content=result["png"], media_type="image/png", headers=headers)


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder (``import_path: services.vision.app:build_app``).

    args: ``tracking_uri``, ``models`` ({key: registered name}), ``versions`` ({key: version}), ``max_batch_size``,
    ``batch_wait_timeout_s``, ``request_timeout_s``, ``max_pixels``, ``num_cpus``, ``refresh_s``.
    """
    models = {k: v for k, v in {**DEFAULT_MODELS, **(args.get("models") or {})}.items() if v}
    server = bind_model_server(VisionServer, models, args)
    return VisionIngress.options(**ingress_options(args)).bind(
        server, models=sorted(models), request_timeout_s=float(args.get("request_timeout_s", 20)),
        max_pixels=int(args.get("max_pixels", MAX_PIXELS)),
    )  # fmt: skip
