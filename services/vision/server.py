"""The vision app's model deployment and the messages its ingress sends it.

Models are multiplexed: a model loads the first time a request names it, and a replica keeps the most
recently used ones (``max_num_models_per_replica``), through Serve's ``@serve.multiplexed`` (requests go
to a replica that has the model, and a batch holds one model's requests) on the common
:class:`~services.common.serving.ModelServer` (``on_demand``): pinned versions, champion following and
``/version`` work as in every app, for the models a replica holds.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from ray import serve

from modelstore.registry import ModelInfo, read_registered_config
from services.common.serving import Answer, Message, ModelServer, Resident

from .data import make_transforms
from .models import grad_cam

MAX_MODELS_PER_REPLICA = 2


@dataclass
class Classify(Message):
    """Top-``top_k`` labels of a decoded image (``[H, W]`` or ``[H, W, 3]`` uint8) under ``model``."""

    model: str
    image: np.ndarray
    top_k: int


@dataclass
class Explain(Message):
    """The Grad-CAM heat map of the predicted label over the image, as PNG bytes."""

    model: str
    image: np.ndarray


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})
class VisionServer(ModelServer):
    """Loads models on demand (multiplexed by key) and classifies or explains batches of decoded images."""

    on_demand = True

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def get_model(self, key: str) -> Resident:
        await asyncio.to_thread(self.ensure_loaded, key)
        return Resident(self, key)

    async def before_batch(self, requests: list[Message]) -> None:
        await self.get_model(serve.get_multiplexed_model_id())

    def _load(self, key: str, name: str, version: str | None) -> None:
        super()._load(key, name, version)
        attach_transform(self.models[key])

    def details(self, key: str, version: str) -> dict[str, Any]:
        """Input size and labels from the registered config (no model is built for a model not resident)."""
        return describe_config(read_registered_config(self.names[key], version)["config"])

    def process_batch(self, requests: list[Message]) -> list[Answer]:
        model, info = self.ensure_loaded(requests[0].model)  # a batch holds one model's requests
        return run_batch(model, info, requests)


# Module-level functions on purpose: Serve pickles the deployment class by value, and cloudpickle then
# follows attribute names such as ``.classes`` to same-named torch submodules (``torch.classes``), which
# cannot be pickled; module-level functions are pickled by reference.
def attach_transform(model) -> None:
    cfg = model.suite_config
    model.suite_transform = make_transforms(cfg.in_chans, cfg.img_size, tuple(cfg.mean), tuple(cfg.std),
                                            training=False)  # fmt: skip


def describe_config(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"arch": cfg["arch"], "input_size": [cfg["in_chans"], cfg["img_size"], cfg["img_size"]],
            "labels": cfg["classes"]}  # fmt: skip


def run_batch(model, info: ModelInfo, requests: list[Message]) -> list[Answer]:
    """Classify (or explain) a batch of decoded images with one model."""
    cfg = model.suite_config
    ref = {"name": info.name, "version": info.version}
    results: list[Answer | None] = [None] * len(requests)
    # A batch may mix kinds (Serve batches whatever arrives together): explain one by one, classify at once.
    for i, r in enumerate(requests):
        if isinstance(r, Explain):
            with torch.enable_grad():
                cam, logits = grad_cam(model, _prepare(model, r.image).unsqueeze(0))
            results[i] = {"png": overlay_png(r.image, cam[0].numpy()), "model": ref,
                          "label": cfg.classes[int(logits.argmax())]}  # fmt: skip
    to_classify = [i for i, r in enumerate(requests) if isinstance(r, Classify)]
    if to_classify:
        batch = torch.stack([_prepare(model, requests[i].image) for i in to_classify])
        with torch.no_grad():
            probs = torch.softmax(model(batch), dim=-1)
        for i, p in zip(to_classify, probs):
            top = p.topk(min(requests[i].top_k, len(cfg.classes)))
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
