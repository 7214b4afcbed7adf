"""The studio as a Ray Serve application (route prefix ``/studio``): one page per domain.

    GET /studio/             the index: a card per domain with its served models
    GET /studio/pointer      click points (or load a TSPLIB file); TSP / convex hull / Delaunay drawn
    GET /studio/vision       draw a digit or upload an image; top-k and the Grad-CAM map over it
    GET /studio/genomics     paste DNA or load FASTA; classes, the per-base coding track, a variant scan
    GET /studio/recommend    build a history from item ids; next items and similar items
    GET /studio/static/...   the pages' CSS and JavaScript
    GET /studio/healthz, /studio/docs (Swagger UI, served offline by services.common.docs)

The pages are static HTML with their own JavaScript (``static/``), which calls each domain app's
existing REST API in the browser, on the same origin (``apps`` maps a domain to its route prefix), and
shows the API's own error message when a request is refused. The studio holds no model and needs no
GPU or MLflow access; ``mlflow_ui`` is only the address the pages link runs and model versions to.
Nothing is loaded from the internet: a page asks only its own origin.

No ``from __future__ import annotations``: Serve's class-based views need real annotations.
"""

import html
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from ray import serve

from services.common.docs import serve_docs
from services.common.errors import ERROR_RESPONSES, install_error_handlers

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PAGES = HERE / "pages"

# page -> (tab title, one line for the index); the page's body is pages/<page>.html, its script static/<page>.js
DOMAINS: dict[str, tuple[str, str]] = {
    "pointer": ("Pointer solver", "TSP, convex hull and Delaunay triangulation by pointer networks"),
    "vision": ("Vision", "digit and image classification with VAN, BiFormer and Agent Attention"),
    "genomics": ("Genomics", "HyenaDNA: sequence classes, per-base coding track and variant effects"),
    "recommend": ("Recommendation", "MQSA-TED next items and item-to-item similarity"),
}
DEFAULT_APPS = {"pointer": "/pointer", "vision": "/vision", "genomics": "/genomics", "recommend": "/recommend"}
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"

app = FastAPI(
    title="Studio",
    description="A page per domain over the suite's REST APIs (HTML, CSS and JavaScript only; no model).",
    version="1",
    docs_url=None,
    redoc_url=None,
)
install_error_handlers(app)
serve_docs(app)
app.mount("/static", StaticFiles(directory=STATIC), name="static")


def render(page: str, *, root: str, apps: dict[str, str], mlflow_ui: str) -> str:
    """The HTML of ``page`` (``index`` or a domain): the shared layout around ``pages/<page>.html``, with
    the configuration the scripts read (``#studio-config``) inlined, so a page needs no extra request."""
    title = "Studio" if page == "index" else DOMAINS[page][0]
    tabs = [("index", "Studio", f"{root}/")] + [(d, t, f"{root}/{d}") for d, (t, _) in DOMAINS.items()]
    nav = "".join(
        f'<a href="{href}" data-page="{name}"{" class=active" if name == page else ""}>{html.escape(text)}</a>'
        for name, text, href in tabs
    )
    body = (PAGES / f"{page}.html").read_text()
    if page == "index":
        cards = "".join(
            f'<div class="card" data-domain="{d}"><h2><a href="{root}/{d}">{html.escape(t)}</a></h2>'
            f'<p>{html.escape(line)}</p><div class="versions" data-versions="{d}"></div></div>'
            for d, (t, line) in DOMAINS.items()
        )
        body = body.replace("{{cards}}", cards)
    config = {"page": page, "root": root, "apps": apps, "mlflow_ui": mlflow_ui.rstrip("/")}
    script = "" if page == "index" else f'<script src="{root}/static/{page}.js"></script>'
    return (
        (PAGES / "layout.html")
        .read_text()
        .replace("{{title}}", html.escape(title))
        .replace("{{root}}", root)
        .replace("{{nav}}", nav)
        .replace("{{body}}", body)
        .replace("{{config}}", json.dumps(config).replace("</", "<\\/"))
        .replace("{{script}}", script)
    )


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Studio:
    def __init__(self, *, apps: dict[str, str], mlflow_ui: str = DEFAULT_MLFLOW_UI):
        self.apps, self.mlflow_ui = apps, mlflow_ui

    def _page(self, request: Request, page: str) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(render(page, root=root, apps=self.apps, mlflow_ui=self.mlflow_ui))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(self, request: Request) -> HTMLResponse:
        return self._page(request, "index")

    @app.get("/ui", include_in_schema=False)
    async def ui(self, request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/")

    @app.get("/healthz", responses=ERROR_RESPONSES)
    async def healthz(self) -> dict[str, Any]:
        """Liveness; the domain apps' prefixes the pages call."""
        return {"status": "ok", "apps": self.apps}

    @app.get("/{page}", response_class=HTMLResponse, responses=ERROR_RESPONSES)
    async def domain_page(self, page: str, request: Request) -> HTMLResponse:
        """A domain's page: pointer, vision, genomics or recommend."""
        if page not in DOMAINS:
            raise HTTPException(404, f"no page {page!r}; the pages are {sorted(DOMAINS)}")
        return self._page(request, page)


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder (``import_path: services.studio.app:build_app``).

    args: ``apps`` ({domain: route prefix} of the apps the pages call; defaults to /pointer, /vision,
    /genomics, /recommend), ``mlflow_ui`` (the MLflow UI the pages link to), ``num_cpus`` (0: serving
    static files needs no CPU share); ``tracking_uri`` is accepted like every app's and unused (the
    browser, not the studio, needs MLflow).
    """
    apps = {**DEFAULT_APPS, **(args.get("apps") or {})}
    unknown = set(apps) - set(DOMAINS)
    if unknown:
        raise ValueError(f"apps names unknown domains {sorted(unknown)}; the domains are {sorted(DOMAINS)}")
    options = {"ray_actor_options": {"num_cpus": float(args.get("num_cpus", 0))}}
    return Studio.options(**options).bind(apps=apps, mlflow_ui=str(args.get("mlflow_ui", DEFAULT_MLFLOW_UI)))
