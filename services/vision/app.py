"""The vision service as a Ray Serve application (route prefix ``/vision``).

    POST /vision/classify   image as multipart (``file``) or JSON (``image_base64``); ``top_k``, ``model``
    POST /vision/explain    same input; a PNG: the Grad-CAM heatmap of the predicted class over the image
    GET  /vision/models     served models: registered name, version, input size, channels, labels
    GET  /vision/healthz, /vision/version, /vision/docs

Models are multiplexed: the model deployment loads a model the first time a request names it and keeps
the most recently used ones (``max_models_per_replica``), using Serve's ``@serve.multiplexed`` (requests
are routed to a replica that has the model) together with ``@serve.batch`` (one model per batch).
Images: PNG, JPEG or WebP of any size (resized by the model's transform), at most ``max_upload_bytes``
and ``max_pixels``; undecodable or truncated images, other formats and content types get a 4xx saying so.

No ``from __future__ import annotations``: Serve's class-based views need real annotations.
"""

import asyncio
import base64
import binascii
import io
import json
import logging
import time
from typing import Any

import numpy as np
import torch
from fastapi import Request
from fastapi.responses import Response
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve

from modelstore.registry import ModelInfo, load_registered, resolve_version
from services.common.errors import ERROR_RESPONSES, UPLOAD_ERROR_RESPONSES, InputError
from services.common.schemas import ModelRef
from services.common.serving import (
    DEFAULT_STUCK_AFTER_S,
    StuckWatch,
    bind_model_server,
    call_model,
    create_app,
    health,
    ingress_options,
)

from .data import make_transforms
from .models import grad_cam

log = logging.getLogger("attention_suite.vision")

DEFAULT_MODELS = {"van": "vision-van-digits", "biformer": "vision-biformer-digits", "agent": "vision-agent-digits"}
FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_UPLOAD_BYTES = 10 << 20
MAX_PIXELS = 25_000_000


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


def decode_image(raw: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Bytes → a fully decoded PIL image, or :class:`InputError` naming what is wrong."""
    if not raw:
        raise InputError("the image is empty", field="image")
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            kind, (w, h) = probe.format, probe.size
    except Image.DecompressionBombError:
        raise InputError(f"the image has more than {max_pixels} pixels", field="image", status=413,
                         code="payload_too_large") from None  # fmt: skip
    except UnidentifiedImageError:
        raise InputError("the bytes are not a PNG, JPEG or WebP image", field="image", status=415,
                         code="unsupported_media_type") from None  # fmt: skip
    if kind not in FORMATS:
        raise InputError(f"{kind} images are not accepted; send PNG, JPEG or WebP", field="image", status=415,
                         code="unsupported_media_type")  # fmt: skip
    if w * h > max_pixels:
        raise InputError(f"the image has {w}×{h} = {w * h} pixels; at most {max_pixels} are accepted", field="image",
                         status=413, code="payload_too_large")  # fmt: skip
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"the {kind} image is truncated or corrupt ({e})", field="image") from None
    return image


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


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})
class VisionServer(StuckWatch):
    """Loads models on demand (multiplexed by name) and classifies batches of decoded images."""

    def __init__(
        self,
        models: dict[str, str],
        *,
        tracking_uri: str | None = None,
        threads: int = 1,
        stuck_after_s: float = DEFAULT_STUCK_AFTER_S,
        refresh_s: float = 0.0,  # models load on first use per replica (multiplexed); not followed yet
    ):
        import os

        import mlflow

        torch.set_num_threads(max(1, threads))
        if tracking_uri:
            os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
            mlflow.set_tracking_uri(tracking_uri)
        self.names = dict(models)
        self.stuck_after_s = stuck_after_s

    def check_health(self) -> None:
        self.check_stuck()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        user_config = user_config or {}
        if "max_batch_size" in user_config:
            self.handle_batch.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self.handle_batch.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

    @serve.multiplexed(max_num_models_per_replica=2)
    async def get_model(self, key: str) -> tuple[Any, ModelInfo]:
        model, info = await asyncio.to_thread(load_registered, self.names[key])
        cfg = model.suite_config
        model.suite_transform = make_transforms(cfg.in_chans, cfg.img_size, tuple(cfg.mean), tuple(cfg.std),
                                                training=False)  # fmt: skip
        log.info("loaded %s = %s v%s", key, info.name, info.version)
        return model, info

    def describe(self) -> dict[str, Any]:
        """Served models with their versions and input specs (reads configs, builds no model)."""
        from modelstore.registry import read_registered_config

        out = {}
        for key, name in self.names.items():
            try:
                info = resolve_version(name)
                cfg = read_registered_config(name, info.version)["config"]
                size = [cfg["in_chans"], cfg["img_size"], cfg["img_size"]]
                out[key] = {"name": name, "version": info.version, "run_id": info.run_id, "arch": cfg["arch"],
                            "input_size": size, "labels": cfg["classes"]}  # fmt: skip
            except LookupError as e:
                out[key] = {"name": name, "error": str(e)}
        return out

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def handle_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key = serve.get_multiplexed_model_id()
        model, info = await self.get_model(key)
        return await asyncio.to_thread(self._run, model, info, requests)

    def _run(self, model, info: ModelInfo, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self.busy():
            return run_batch(model, info, requests)


def run_batch(model, info: ModelInfo, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Classify (or explain) a batch of decoded images with one model.

    A module-level function on purpose: Serve pickles the deployment class by value, and cloudpickle
    then follows attribute names such as ``.classes`` to same-named torch submodules (``torch.classes``),
    which cannot be pickled; module-level functions are pickled by reference.
    """
    cfg = model.suite_config
    ref = {"name": info.name, "version": info.version}
    results: list[dict[str, Any] | None] = [None] * len(requests)
    # A batch may mix kinds (Serve batches whatever arrives together): explain one by one, classify at once.
    for i, r in enumerate(requests):
        if r["kind"] == "explain":
            with torch.enable_grad():
                cam, logits = grad_cam(model, _prepare(model, r["image"]).unsqueeze(0))
            results[i] = {"png": overlay_png(r["image"], cam[0].numpy()), "model": ref,
                          "label": cfg.classes[int(logits.argmax())]}  # fmt: skip
    to_classify = [i for i, r in enumerate(requests) if r["kind"] != "explain"]
    if to_classify:
        batch = torch.stack([_prepare(model, requests[i]["image"]) for i in to_classify])
        with torch.no_grad():
            probs = torch.softmax(model(batch), dim=-1)
        for i, p in zip(to_classify, probs):
            top = p.topk(min(requests[i]["top_k"], len(cfg.classes)))
            labels = [
                {"label": cfg.classes[j], "probability": float(v)} for v, j in zip(top.values, top.indices.tolist())
            ]
            results[i] = {"labels": labels, "model": ref, "input_size": [cfg.in_chans, cfg.img_size, cfg.img_size],
                          "batch_size": len(to_classify)}  # fmt: skip
    return results  # type: ignore[return-value]


def _prepare(model, image: np.ndarray) -> torch.Tensor:
    pil = Image.fromarray(image).convert("L" if model.suite_config.in_chans == 1 else "RGB")
    return model.suite_transform(pil)


def overlay_png(image: np.ndarray, heat: np.ndarray) -> bytes:
    """The image with the [0, 1] heat map blended on top (a blue→red ramp), as PNG bytes."""
    base = Image.fromarray(image).convert("RGB")
    heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(base.size, Image.BILINEAR)) / 255.0
    ramp = np.stack([heat, 1 - np.abs(heat - 0.5) * 2, 1 - heat], axis=-1)  # red high, green mid, blue low
    blended = (0.55 * np.asarray(base) + 0.45 * ramp * 255).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blended).save(buffer, format="PNG")
    return buffer.getvalue()


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
class VisionIngress:
    def __init__(self, server, *, models: list[str], request_timeout_s: float = 20.0, max_pixels: int = MAX_PIXELS):
        self.server, self.models = server, set(models)
        self.timeout_s, self.max_pixels = request_timeout_s, max_pixels

    async def _call(self, request: Request, kind: str) -> dict[str, Any]:
        raw, options = await read_request(request)
        if options.model not in self.models:
            raise InputError(f"model must be one of {sorted(self.models)}, got {options.model!r}", field="model")
        image = await asyncio.to_thread(decode_image, raw, self.max_pixels)
        array = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
        payload = {"kind": kind, "image": array, "top_k": options.top_k}
        handle = self.server.options(multiplexed_model_id=options.model)
        return await call_model(handle, payload, self.timeout_s)

    @app.post("/classify", response_model=ClassifyResponse, responses=UPLOAD_ERROR_RESPONSES,
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "file": {"type": "string", "format": "binary"}, "model": {"type": "string"},
                      "top_k": {"type": "integer"}}, "required": ["file"]}},
                  "application/json": {"schema": ClassifyJSON.model_json_schema()}}}})  # fmt: skip
    async def classify(self, request: Request) -> dict[str, Any]:
        """Top-k labels with probabilities."""
        start = time.perf_counter()
        result = await self._call(request, "classify")
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
        result = await self._call(request, "explain")
        headers = {"X-Model": f"{result['model']['name']}:{result['model']['version']}", "X-Label": result["label"]}
        return Response(content=result["png"], media_type="image/png", headers=headers)

    @app.get("/models", responses=ERROR_RESPONSES)
    async def list_models(self) -> dict[str, Any]:
        """The served models: registered name, version, input size, labels."""
        return await self.server.describe.remote()

    @app.get("/healthz", responses=ERROR_RESPONSES)
    async def healthz(self) -> dict[str, Any]:
        """Liveness of the app and the model deployment."""
        return await health(self.server, timeout_s=10, probe="describe")

    @app.get("/version", responses=ERROR_RESPONSES)
    async def version(self) -> dict[str, Any]:
        return await self.server.describe.remote()


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder (``import_path: services.vision.app:build_app``).

    args: ``tracking_uri``, ``models`` ({key: registered name}), ``max_batch_size``, ``batch_wait_timeout_s``,
    ``request_timeout_s``, ``max_pixels``, ``num_cpus``.
    """
    models = {k: v for k, v in {**DEFAULT_MODELS, **(args.get("models") or {})}.items() if v}
    server = bind_model_server(VisionServer, models, args, pinned_versions=False)
    return VisionIngress.options(**ingress_options(args)).bind(
        server, models=sorted(models), request_timeout_s=float(args.get("request_timeout_s", 20)),
        max_pixels=int(args.get("max_pixels", MAX_PIXELS)),
    )  # fmt: skip
