"""One error shape for every 4xx (and the rare 5xx) a service returns.

    {"error": {"code": "invalid_request", "message": "points must ...", "field": "points"}}

``install_error_handlers(app)`` maps FastAPI's validation errors, HTTP errors, our :class:`InputError`,
timeouts and anything unexpected onto that shape, so that no request, however malformed, gets
FastAPI's default bodies or a bare 500. :class:`BodyLimitMiddleware` refuses bodies over a limit
with 413 before they are read into memory.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("attention_suite.errors")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    retry_after_s: int | None = None  # with 503: also sent as the Retry-After header


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


# For the OpenAPI docs of each route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Malformed request (e.g. invalid JSON)"),
        (413, "Request body too large"),
        (422, "A field breaks a rule; the message names the field and the rule"),
        (503, "The model is not available (see Retry-After)"),
        (504, "The request took longer than the per-request timeout"),
    )
}


# Routes that take an uploaded file also answer 415 for a format they cannot read.
UPLOAD_ERROR_RESPONSES = {
    **ERROR_RESPONSES,
    415: {"model": ErrorBody, "description": "The uploaded file is not in a supported format"},
}


class InputError(ValueError):
    """Bad input found after schema validation (e.g. duplicate points); maps to 422 by default."""

    def __init__(
        self,
        message: str,
        field: str | None = None,
        status: int = 422,
        code: str = "invalid_request",
        retry_after_s: int | None = None,
    ):
        super().__init__(message)
        self.message, self.field, self.status, self.code = message, field, status, code
        self.retry_after_s = retry_after_s


def error_response(
    status: int, code: str, message: str, field: str | None = None, retry_after_s: int | None = None
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message, "field": field}
    headers = None
    if retry_after_s is not None:
        error["retry_after_s"] = retry_after_s
        headers = {"Retry-After": str(retry_after_s)}
    return JSONResponse(status_code=status, content={"error": error}, headers=headers)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = (
        [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path", "header") else [str(p) for p in loc]
    )
    return ".".join(parts) or None


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if not errors:
        return error_response(422, "invalid_request", "the request does not match the schema")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return error_response(400, "malformed_json", f"the body is not valid JSON: {first.get('msg')}")
    field = _field_of(first.get("loc", ()))
    message = first.get("msg", "invalid value")
    if field:
        message = f"{field}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return error_response(422, "invalid_request", message, field)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.retry_after_s)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 503: "unavailable"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); see the service log")


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 when ``Content-Length`` or the streamed body exceeds ``max_bytes``."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                return await self._refuse(send, 400, "malformed_request", "Content-Length is not a number")
            if too_big:
                return await self._refuse_size(send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # an HTTPException, so FastAPI's body reader passes it on
                    raise StarletteHTTPException(413, f"the request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse_size(self, send) -> None:
        await self._refuse(send, 413, "payload_too_large", f"the request body exceeds {self.max_bytes} bytes")

    async def _refuse(self, send, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message, "field": None}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
