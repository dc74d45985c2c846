"""The console in a real browser: Playwright driving Debian's headless Chromium against uvicorn on 127.0.0.1.

Needs `apt-get install -y chromium` (CI's .ci/run does it) and the `playwright` package (the dev extra); no
browser is ever downloaded. Without them the tests skip, except in CI (KEEL_REQUIRE_ALL_TIERS), where they fail.
Each page is screenshotted into the test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.serve import serve_in_thread
from keel.store import events
from keel.ui import create_console

from .conftest import Workspace

CHROMIUM = os.environ.get("KEEL_TEST_CHROMIUM", "/usr/bin/chromium")
BROWSER_SKIP = (
    f"browser tests need Debian's chromium at {CHROMIUM} and the playwright package: "
    "`apt-get install -y chromium` and `pip install -e '.[dev]'` (CI's .ci/run does both)"
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module's tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        playwright_missing = True
    else:
        playwright_missing = False
    if playwright_missing or shutil.which(CHROMIUM) is None:
        if os.environ.get("KEEL_REQUIRE_ALL_TIERS"):  # CI: a tier that cannot run is a failure (tests/conftest.py)
            pytest.fail(BROWSER_SKIP)
        pytest.skip(BROWSER_SKIP)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def console_url(workspace_built: Workspace) -> Iterator[str]:
    with serve_in_thread(create_console(workspace_built.store, secret_key="browser-test")) as url:
        yield url


def sign_in(browser: Any, url: str, secret: str) -> Any:
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{url}/")
    assert page.url.startswith(f"{url}/login")
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")
    return page


def check_accessibility(page: Any, path: str) -> None:
    """One h1; every visible form control has a label (for=, wrapping, or aria-label); images of charts are named."""
    assert page.locator("h1").count() == 1, path
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.outerHTML)"""
    )
    assert unlabeled == [], (path, unlabeled)
    assert page.locator("html[lang]").count() == 1


def test_every_page_in_chromium_with_screenshots(
    browser: Any, console_url: str, workspace_built: Workspace, tmp_path: Path
) -> None:
    from .test_console import pages

    page = sign_in(browser, console_url, workspace_built.admin_key)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    for path in pages(workspace_built):
        response = page.goto(f"{console_url}{path}")
        assert response is not None and response.status == 200, path
        check_accessibility(page, path)
        name = path.strip("/").replace("/", "_").split("?")[0] or "overview"
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert errors == [], errors  # no script error and no CSP violation on any page
    page.goto(f"{console_url}/runs/{workspace_built.run_ids[0]}")
    assert page.locator(".uplot").count() == 2  # loss and accuracy curves drawn by uPlot
    page.goto(f"{console_url}/deployments/chat")
    assert page.locator(".uplot").count() == 5  # latency, tokens, cost, errors, requests
    assert len(list(shots.glob("*.png"))) >= 20


def test_canary_and_rollback_from_the_deployment_page(
    browser: Any, console_url: str, workspace_built: Workspace, tmp_path: Path
) -> None:
    page = sign_in(browser, console_url, workspace_built.admin_key)
    page.goto(f"{console_url}/deployments/chat")
    page.get_by_label("Canary model").fill("chat@v2")
    page.get_by_label("Traffic %").fill("25")
    # keyboard-reachable: focus the button by tabbing from the weight field, then press Enter
    page.get_by_label("Traffic %").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "canary-button"
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Canary started")
    routes = page.locator("#routes tbody tr")
    assert routes.count() == 2 and "25%" in routes.nth(1).inner_text() and "chat@v2" in routes.nth(1).inner_text()
    page.screenshot(path=str(tmp_path / "canary.png"), full_page=True)
    page.get_by_role("button", name="Roll back last change").click()
    page.wait_for_selector("text=Rolled back")
    assert page.locator("#routes tbody tr").count() == 1
    assert page.locator("#history tbody tr").first.inner_text().split("\t")[2] == "rollback"
    page.screenshot(path=str(tmp_path / "rollback.png"), full_page=True)
    with workspace_built.store.db.read() as conn:
        actions = [e.action for e in events(conn, object_id="deployment:chat", limit=3)]
    assert actions[:2] == ["deployment.rollback", "deployment.canary"]


def test_a_correction_in_the_review_queue_shows_on_the_trace_page(
    browser: Any, console_url: str, workspace_built: Workspace, tmp_path: Path
) -> None:
    trace_id = workspace_built.trace_ids[2]
    page = sign_in(browser, console_url, workspace_built.admin_key)
    page.goto(f"{console_url}/review")
    item = page.locator("article.review", has=page.locator(f'a[href="/traces/{trace_id}"]'))
    item.get_by_label("Bad").check()
    item.get_by_label("Correct answer").fill("Returns are accepted within 30 days of delivery.")
    item.get_by_role("button", name="Submit review").click()
    page.wait_for_url(f"{console_url}/traces/{trace_id}")
    assert "Returns are accepted within 30 days of delivery." in page.locator("#feedback").inner_text()
    page.screenshot(path=str(tmp_path / "trace_after_review.png"), full_page=True)


def test_a_viewer_sees_no_action_buttons(browser: Any, console_url: str, workspace_built: Workspace) -> None:
    page = sign_in(browser, console_url, workspace_built.viewer_key)
    for path in ("/deployments/chat", "/review"):
        page.goto(f"{console_url}{path}")
        buttons = [b.strip() for b in page.locator("main button").all_inner_texts()]
        assert buttons == [] or set(buttons) <= {"Filter"}, (path, buttons)


def test_a_post_without_a_session_is_refused(browser: Any, console_url: str, workspace_built: Workspace) -> None:
    page = browser.new_page()
    response = page.request.post(f"{console_url}/deployments/chat/rollback", form={"csrf": "x"})
    assert response.status == 403  # no session, so no CSRF token to match: refused before anything else
    page.goto(f"{console_url}/login")
    token = page.locator('input[name="csrf"]').get_attribute("value")
    response = page.request.post(f"{console_url}/deployments/chat/rollback", form={"csrf": token})
    assert response.status == 401 and "sign in first" in response.text()
    with workspace_built.store.db.read() as conn:
        refusals = events(conn, action="access.denied", limit=2)
    assert {e.actor for e in refusals} == {"console:anonymous"}


def test_lineage_graph_links_navigate(
    browser: Any, console_url: str, workspace_built: Workspace, tmp_path: Path
) -> None:
    """The trace page draws its lineage as an SVG; a node's link opens that node's page, whose graph links back."""
    trace_id = workspace_built.trace_ids[1]
    page = sign_in(browser, console_url, workspace_built.admin_key)
    page.goto(f"{console_url}/traces/{trace_id}")
    graph = page.locator("#lineage-graph svg")
    assert graph.count() == 1 and graph.locator("rect").count() >= 2
    page.screenshot(path=str(tmp_path / "trace_lineage.png"), full_page=True)
    graph.locator('a[data-node="model-version:chat@v1"]').click()
    page.wait_for_url(f"{console_url}/models/chat/v1")
    back = page.locator(f'#lineage-graph svg a[data-node="trace:{trace_id}"]')
    assert back.count() == 1  # the model version's graph shows the traces it answered, downstream
    back.click()
    page.wait_for_url(f"{console_url}/traces/{trace_id}")
    assert page.locator("h1").inner_text() == f"Trace {trace_id}"


def test_curation_report_from_the_dataset_version(
    browser: Any, console_url: str, workspace_built: Workspace, tmp_path: Path
) -> None:
    """The dataset version a curation produced links to the run's report page, which passes the page checks."""
    from keel.curate import curate, load_recipe

    from .test_curation_page import RECIPE, _corpus

    work = tmp_path / "curation"
    work.mkdir()
    _corpus(work)
    (work / "r.yaml").write_text(RECIPE)
    result = curate(workspace_built.store, load_recipe(work / "r.yaml"), dataset="docs")
    page = sign_in(browser, console_url, workspace_built.admin_key)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{console_url}/datasets/docs/v{result.version.version}")
    page.locator("#curation-link").click()
    page.wait_for_url(f"{console_url}/runs/{result.run_id}/curation")
    check_accessibility(page, "/runs/ID/curation")
    assert page.locator("#drops-by-reason tbody tr").count() >= 2
    assert page.locator("table.similarity meter").count() >= 1
    page.screenshot(path=str(tmp_path / "curation.png"), full_page=True)
    assert errors == [], errors
