"""API docs that work offline: Swagger UI at ``<prefix>/docs``, its JavaScript and CSS served by the app
itself instead of a CDN.

FastAPI's own ``/docs`` page loads ``swagger-ui-bundle.js`` and ``swagger-ui.css`` from jsDelivr, so on
a machine without internet it is a blank page. :func:`serve_docs` replaces it with a page that loads the
same files from ``<prefix>/docs-assets/``, taken from the ``fastapi-offline`` package (PyPI; it vendors
swagger-ui-dist), the way FastAPI documents self-hosting (``get_swagger_ui_html(swagger_js_url=...,
swagger_css_url=...)`` and static files)::

    app = FastAPI(title=...)
    serve_docs(app)          # /docs, /docs/oauth2-redirect, /docs-assets/*

FastAPI's ``/redoc`` goes too and is not replaced: ReDoc's standalone bundle still fetches its logo from
cdn.redoc.ly, and nothing a page of the suite loads may leave the machine.

The page builds every URL from the request's ``root_path``, which Ray Serve sets to the app's route
prefix, so the same app works at ``/`` under uvicorn and at ``/pointer`` under Serve.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

__all__ = ["ASSETS", "serve_docs"]


def _assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


ASSETS = _assets_dir()
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


def serve_docs(app: FastAPI, *, docs_path: str = "/docs", assets_path: str = "/docs-assets") -> FastAPI:
    """Serve ``app``'s OpenAPI as Swagger UI at ``docs_path`` from packaged assets (mounted at
    ``assets_path``). FastAPI's CDN-based pages (``docs_url``, its OAuth2 redirect, ``redoc_url``), if the
    app has them, are removed first, so this can be called on an app built with the defaults. Returns ``app``."""
    if app.openapi_url is None:
        raise ValueError("app.openapi_url is None: there is no OpenAPI schema for the docs to show")
    missing = [name for name in ASSET_FILES if not (ASSETS / name).is_file()]
    if missing:
        raise FileNotFoundError(f"the docs assets {missing} are not in {ASSETS}: reinstall fastapi-offline")
    _remove_routes(app, {app.docs_url, app.swagger_ui_oauth2_redirect_url if app.docs_url else None, app.redoc_url})
    app.docs_url = app.redoc_url = None  # so that a later app.setup() does not add the CDN pages back
    app.mount(assets_path, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url

    redirect_path = f"{docs_path}/oauth2-redirect"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets_path}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets_path}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets_path}/favicon.png",
            oauth2_redirect_url=root + redirect_path,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_api_route(docs_path, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(redirect_path, swagger_ui_redirect, methods=["GET"], include_in_schema=False)
    return app


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _remove_routes(app: FastAPI, paths: set[str | None]) -> None:
    app.router.routes[:] = [r for r in app.router.routes if not (isinstance(r, Route) and r.path in paths)]
