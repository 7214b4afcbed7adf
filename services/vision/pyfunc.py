"""The vision models as MLflow pyfunc models: what ``mlflow.pyfunc.load_model(...).predict`` and
``mlflow models serve`` answer (the model config's ``"predict": "services.vision.pyfunc:predict"``).

Input: an ``image`` column, one image per row, either the bytes of a PNG, JPEG or WebP file
base64-encoded (as ``image_base64`` in ``POST /vision/classify``) or the pixels as a nested list
(``[H][W]`` grey or ``[H][W][3]`` RGB, values 0..255). Images of any size are resized by the model's
own evaluation transform. Param ``top_k`` (default 5, at most the number of classes).
Output: one row per image: label (the most probable class), labels (the top-k, best first) and
probabilities (theirs; with ``top_k`` = all classes they sum to 1).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from modelstore.inputs import frame, integer, no_other_params

from .data import make_transforms

COLUMN = "image"
FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_PIXELS = 25_000_000
BATCH = 64


@torch.no_grad()
def predict(model: nn.Module, model_input: Any, **params: Any) -> pd.DataFrame:
    no_other_params(params, ("top_k",))
    cfg = model.suite_config
    top_k = integer(params, "top_k", 5, 1, 100)
    column = frame(model_input, required=[COLUMN], scalar=[COLUMN])[COLUMN]
    images = [_image(value, i) for i, value in enumerate(column)]
    transform = make_transforms(cfg.in_chans, cfg.img_size, tuple(cfg.mean), tuple(cfg.std), training=False)
    mode = "L" if cfg.in_chans == 1 else "RGB"
    model.eval()
    rows = []
    for start in range(0, len(images), BATCH):
        batch = torch.stack([transform(image.convert(mode)) for image in images[start : start + BATCH]])
        probs = torch.softmax(model(batch).float(), dim=-1)
        top = probs.topk(min(top_k, len(cfg.classes)), dim=-1)
        for values, indices in zip(top.values.tolist(), top.indices.tolist()):
            labels = [cfg.classes[j] for j in indices]
            rows.append({"label": labels[0], "labels": labels, "probabilities": values})
    return pd.DataFrame(rows)


def serving_example(model: nn.Module) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A blank image of the model's input size, as base64 PNG (the input example MLflow stores)."""
    cfg = model.suite_config
    shape = (cfg.img_size, cfg.img_size) if cfg.in_chans == 1 else (cfg.img_size, cfg.img_size, 3)
    return pd.DataFrame({COLUMN: [encode_png(np.zeros(shape, dtype=np.uint8))]}), {"top_k": 5}


def encode_png(pixels: np.ndarray) -> str:
    """uint8 pixels ``[H, W]`` or ``[H, W, 3]`` → base64 PNG text (what the ``image`` column takes)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(value: Any, row: int) -> Image.Image:
    where = f"{COLUMN} (row {row})"
    if isinstance(value, str | bytes):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where} is not valid base64 (send the image file's bytes, base64-encoded)") from None
        return _decode(raw, where)
    if isinstance(value, list | tuple | np.ndarray):
        return _pixels(value, where)
    raise ValueError(f"{where} must be base64 image bytes or a nested list of pixels, got {type(value).__name__}")


def _decode(raw: bytes, where: str) -> Image.Image:
    if not raw:
        raise ValueError(f"{where} is empty")
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            kind, (w, h) = probe.format, probe.size
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ValueError(f"{where}: the bytes are not a PNG, JPEG or WebP image (or it is too large)") from None
    if kind not in FORMATS:
        raise ValueError(f"{where}: {kind} images are not accepted; send PNG, JPEG or WebP")
    if w * h > MAX_PIXELS:
        raise ValueError(f"{where} has {w}×{h} pixels; at most {MAX_PIXELS}")
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{where}: the {kind} image is truncated or corrupt ({e})") from None
    return image if image.mode in ("L", "RGB") else image.convert("RGB")


def _pixels(value: Any, where: str) -> Image.Image:
    rule = "a nested list of pixels [H][W] (grey) or [H][W][3] (RGB), numbers in 0..255"
    try:
        # cells arrive as lists, or (from MLflow's ``inputs``) as arrays of arrays: stack them back
        array = np.array(value.tolist() if isinstance(value, np.ndarray) else value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be {rule} (ragged or not numbers)") from None
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)) or min(array.shape[:2]) < 1:
        raise ValueError(f"{where} must be {rule}; got shape {list(array.shape)}")
    if array.size > 3 * MAX_PIXELS:
        raise ValueError(f"{where} has {array.shape[0]}×{array.shape[1]} pixels; at most {MAX_PIXELS}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise ValueError(f"{where} must be {rule}; got values in [{array.min()}, {array.max()}]")
    return Image.fromarray(array.round().astype(np.uint8))
