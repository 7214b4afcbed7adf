"""The studio's pages in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright)
against the four domain apps and the studio app, deployed on the session's Ray cluster from
``deploy/serve.yaml`` with the zoo's models registered. Each page runs one interaction end to end and
the test reads what it rendered; every page also must not ask anything of a host but 127.0.0.1 (requests
elsewhere are aborted and fail the test). The studio's ``/docs`` checks :mod:`services.common.docs`:
Swagger UI renders from packaged assets, offline.

``STUDIO_SCREENSHOTS=1`` saves a screenshot of each page to ``docs/img/<page>.png``.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("STUDIO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = ROOT / "docs" / "img" if os.environ.get("STUDIO_SCREENSHOTS") else None
TIMEOUT_MS = 90_000  # a first request loads its model on a shared 2-core machine

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `make test` installs Debian's chromium")


# What the pages do not use is left out, so that fewer zoo models are registered and loaded.
NOT_SERVED = {"pointer": {"convex_hull": None, "delaunay": None}, "vision": {"biformer": None, "agent": None}}


@pytest.fixture(scope="module")
def suite(ray_cluster, tmp_path_factory):
    """The zoo's models the apps serve, registered in the session's MLflow, and every app of
    deploy/serve.yaml (the studio included) deployed under its own route prefix at once, with small CPU
    shares so that all fit on 2 CPUs."""
    from ray import serve
    from ray.serve.api import RunTarget

    from modelstore.artifacts import resolve
    from pipelines import zoo

    apps = yaml.safe_load((ROOT / "deploy" / "serve.yaml").read_text())["applications"]
    assert "studio" in {a["name"] for a in apps}
    targets, names = [], set()
    for app in apps:
        args = {k: v for k, v in app["args"].items() if k != "tracking_uri"}  # the session's MLflow, inherited
        if "models" in args:
            args["models"] = {**args["models"], **NOT_SERVED.get(app["name"], {})}
            names |= set(_names(args["models"]))
        args["num_cpus"] = 0.1 if app["name"] != "studio" else 0
        targets.append(RunTarget(resolve(app["import_path"])(args), name=app["name"], route_prefix=app["route_prefix"]))
    shipped = tmp_path_factory.mktemp("zoo")
    for name in names:
        (shipped / name).symlink_to(zoo.ZOO / name, target_is_directory=True)
    zoo.register(shipped)
    serve.run_many(targets, wait_for_applications_running=False)
    _wait_running([a["name"] for a in apps], timeout_s=300)
    yield {"http": ray_cluster["http"], "apps": {a["name"]: a["route_prefix"] for a in apps}}
    for app in apps:
        serve.delete(app["name"], _blocking=False)


def _names(models: dict) -> list[str]:
    """The registered names in an app's ``models`` (nested per task in genomics; None: not served)."""
    return [n for v in models.values() for n in (_names(v) if isinstance(v, dict) else [v] if v else [])]


def _wait_running(names: list[str], timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications
        states = {name: status[name].status if name in status else "MISSING" for name in names}
        if all(s == "RUNNING" for s in states.values()):
            return
        failed = {n: status[n].message for n, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")}
        assert not failed, f"apps failed to deploy: {failed}"
        assert time.monotonic() < deadline, f"apps not RUNNING after {timeout_s} s: {states}"
        time.sleep(1)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, suite):
    """A fresh page whose requests are recorded; anything not for the suite's origin is aborted, and
    the test fails if a page asked for it."""
    origin = suite["http"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    local = re.compile(rf"^({re.escape(origin)}/|data:|blob:)")

    def guard(route):
        if local.match(route.request.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not outside, f"the page asked hosts other than 127.0.0.1: {outside}"
    assert not errors, f"JavaScript errors on the page: {errors}"


def _open(page, suite, name: str) -> None:
    page.goto(f"{suite['http']}/studio/{name}")
    page.wait_for_selector("#versions[data-state=done] table")


def _wait(page, selector: str, state: str) -> None:
    """Until the element's ``data-state`` (set by the page's scripts around each request) is ``state``."""
    page.wait_for_selector(f"{selector}[data-state={state}]", state="attached")


def _shot(page, name: str) -> None:
    if SCREENSHOTS is not None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


# ---------------------------------------------------------------------------------------------- pages
def test_index_lists_every_domain_with_its_models(page, suite):
    page.goto(f"{suite['http']}/studio/")
    for domain in ("pointer", "vision", "genomics", "recommend"):
        page.wait_for_selector(f"[data-versions={domain}][data-state=done] li[data-key]")
    assert page.locator(".card").count() == 4
    link = page.locator("[data-versions=pointer] a[href*='#/runs/']").first.get_attribute("href")
    assert link.startswith("http://127.0.0.1:5000/#/runs/")


def test_pointer_page_draws_the_tour_of_clicked_points(page, suite):
    _open(page, suite, "pointer")
    board = page.locator("#board").bounding_box()
    clicks = [(80, 90), (420, 60), (470, 300), (300, 460), (90, 400), (250, 250), (160, 200), (380, 180)]
    for x, y in clicks:
        page.mouse.click(board["x"] + x, board["y"] + y)
    assert _text(page, "#board-hint").startswith("8 points")
    page.select_option("#decode", "beam")
    page.click("#solve")
    _wait(page, "#result", "done")
    assert _text(page, "#answer-count") == "8 points"
    tour = page.locator("polyline.tour").get_attribute("points").split()
    assert len(tour) == 9 and tour[0] == tour[-1]  # 8 points, closed
    length, model_length, exact = (float(_text(page, f"#{k}")) for k in ("length", "model-length", "exact-length"))
    assert exact <= length + 1e-6 and length <= model_length + 1e-6
    assert _text(page, "#gap").endswith("%") and _text(page, "#model").startswith("pointer-tsp-attention v")
    _shot(page, "pointer")

    page.click("#clear")  # two points: the API refuses, and the page shows its message
    page.mouse.click(board["x"] + 100, board["y"] + 100)
    page.mouse.click(board["x"] + 200, board["y"] + 200)
    page.click("#solve")
    _wait(page, "#result", "error")
    error = page.locator("#error .error")
    assert error.get_attribute("data-status") == "422" and "at least 3 items" in _text(page, "#error .message")
    assert _text(page, "#error .field") == "field: points"


def _mnist_digit() -> tuple[bytes, str]:
    from services.vision.data import read_mnist_folder

    digits = read_mnist_folder(ROOT / "data" / "vision")  # MNIST's test split
    buffer = io.BytesIO()
    Image.fromarray(digits.images[0]).save(buffer, format="PNG")
    return buffer.getvalue(), digits.classes[int(digits.labels[0])]


def test_vision_page_classifies_an_upload_and_shows_the_attention_map(page, suite, tmp_path):
    png, label = _mnist_digit()
    direct = httpx.post(f"{suite['http']}/vision/classify", json={"image_base64": base64.b64encode(png).decode(),
                        "model": "van", "top_k": 3}, timeout=120).json()  # fmt: skip
    (tmp_path / "digit.png").write_bytes(png)
    _open(page, suite, "vision")
    page.wait_for_selector("#model option[value=van]", state="attached")
    page.select_option("#model", "van")
    page.fill("#top-k", "3")
    page.set_input_files("#image", str(tmp_path / "digit.png"))
    page.click("#classify")
    _wait(page, "#result", "done")
    assert _text(page, "#top-label") == direct["labels"][0]["label"] == label
    assert page.locator("tr.label-row").count() == 3
    assert page.locator("#heatmap").evaluate("img => img.complete && img.naturalWidth") > 0
    assert "Grad-CAM of label" in _text(page, "#explain-info")
    _shot(page, "vision")


def _splice_records() -> list[str]:
    from services.genomics.sequences import read_uci_splice

    records = read_uci_splice(ROOT / "data" / "genomics" / "splice.data.gz")
    return [records[0].sequence, records[1].sequence]


def test_genomics_page_classifies_tags_and_scans_a_fasta_record(page, suite, tmp_path):
    first, second = _splice_records()
    fasta = tmp_path / "reads.fa.gz"
    fasta.write_bytes(gzip.compress(f">one\n{first}\n>two some description\n{second[:30]}\n{second[30:]}\n".encode()))
    direct = httpx.post(f"{suite['http']}/genomics/classify", json={"sequences": [second], "task": "splice"},
                        timeout=120).json()  # fmt: skip
    _open(page, suite, "genomics")
    page.wait_for_selector("#tag-task option[value=coding]", state="attached")
    page.set_input_files("#fasta", str(fasta))
    page.wait_for_selector("#record option[value='1']", state="attached")
    page.select_option("#record", "1")
    assert page.locator("#sequence").input_value() == second
    page.click("#analyse")
    _wait(page, "#result", "done")
    _wait(page, "#tag-result", "done")
    assert _text(page, "#class-label") == direct["results"][0]["label"]
    assert page.locator("tr.class-row").count() == 3  # EI, IE, N
    assert page.locator("#track").get_attribute("data-length") == _text(page, "#track-length") == str(len(second))
    assert page.locator("#track rect.run").count() >= 1
    page.fill("#scan-start", "20")
    page.fill("#scan-end", "30")
    page.click("#scan")
    _wait(page, "#scan-result", "done")
    assert _text(page, "#scan-count") == "30" and page.locator("#scan-plot circle.effect").count() == 30
    _shot(page, "genomics")

    page.fill("#sequence", "ACGTXACGT")  # an invalid letter: the API's message names the position
    page.click("#analyse")
    _wait(page, "#result", "error")
    assert page.locator("#error .error").first.get_attribute("data-status") == "422"


def test_recommend_page_recommends_from_a_history_and_shows_similar_items(page, suite):
    _open(page, suite, "recommend")
    page.wait_for_selector("#popular .chip")
    popular = page.locator("#popular .chip")
    items = [popular.nth(i).get_attribute("data-item") for i in (0, 3, 5)]
    for i in (0, 3, 5):
        popular.nth(i).click()
    assert [c.get_attribute("data-item") for c in page.locator("#history .chip").all()] == items
    page.fill("#k", "5")
    page.click("#recommend")
    _wait(page, "#result", "done")
    rows = page.locator("tr.next-row")
    assert rows.count() == 5
    assert not {r.get_attribute("data-item") for r in rows.all()} & set(items)  # seen items left out
    rows.first.click()
    _wait(page, "#similar-result", "done")
    assert page.locator("tr.similar-row").count() == 10
    _shot(page, "recommend")

    page.fill("#item-input", "no-such-item")
    page.click("#add")
    page.wait_for_selector("#error .error")
    assert page.locator("#error .error").get_attribute("data-status") == "404"
    assert "unknown to the model" in _text(page, "#error .message")


def test_docs_render_offline_from_packaged_assets(page, suite):
    page.goto(f"{suite['http']}/studio/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Studio" in _text(page, ".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path >> text=/healthz")
    assert httpx.get(f"{suite['http']}/studio/redoc").status_code == 404  # ReDoc's bundle would fetch from a CDN
