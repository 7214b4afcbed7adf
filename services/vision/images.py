"""Decoding an uploaded image: PNG, JPEG or WebP of at most ``max_pixels``, fully read, or an
:class:`~services.common.errors.InputError` saying what is wrong (415 for another format, 413 for too many
pixels, 422 for empty, truncated or corrupt bytes)."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from services.common.errors import InputError

FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_PIXELS = 25_000_000


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
