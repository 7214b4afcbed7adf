"""Pydantic pieces every app's schemas share.

``StrictRequest`` is the base of every JSON request body: unknown fields are refused, and values are
not coerced (``0`` is not a boolean, ``"3"`` not an integer, ``1.5`` not an integer), so the OpenAPI
schema is exactly what is accepted. ``ModelRef`` names the model version that answered.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ModelRef(BaseModel):
    name: str
    version: str
