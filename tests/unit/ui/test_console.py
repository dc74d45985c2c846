"""The console over the ASGI client: sign-in, sessions, CSRF, refusals audited, every page, the actions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from keel.store import events
from keel.ui import create_console

from .conftest import Workspace


def signed_in(ws: Workspace, secret: str) -> TestClient:
    client = TestClient(create_console(ws.store, secret_key="test-secret"), follow_redirects=False)
    page = client.get("/login")
    assert page.status_code == 200
    response = client.post("/login", data={"key": secret, "csrf": csrf_of(page.text), "next": "/"})
    assert response.status_code == 303, response.text
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


@pytest.fixture
def admin(workspace_built: Workspace) -> Iterator[TestClient]:
    with signed_in(workspace_built, workspace_built.admin_key) as client:
        yield client


def pages(ws: Workspace) -> list[str]:
    return [
        "/", "/datasets", "/datasets/faq", "/datasets/faq/v1", "/datasets/faq/v2?q=support",
        "/datasets/faq/diff?before=v1&after=v2", f"/records/{ws.record_id}", "/runs", "/runs?sort=loss&order=asc",
        f"/runs/{ws.run_ids[0]}", f"/runs/compare?ids={ws.run_ids[0]},{ws.run_ids[1]}", "/models", "/models/chat",
        "/models/chat/v1", "/prompts", "/prompts/support?var_topic=returns", "/indexes", "/deployments",
        "/deployments/chat", "/deployments/chat/cost", "/traces", f"/traces/{ws.trace_ids[1]}", "/review", "/audit",
        "/audit/verify",
    ]  # fmt: skip


def test_every_page_needs_a_session(workspace_built: Workspace) -> None:
    client = TestClient(create_console(workspace_built.store), follow_redirects=False)
    for path in pages(workspace_built):
        response = client.get(path)
        assert response.status_code == 303 and "/login" in response.headers["location"], path
        assert "faq" not in response.text and "chat@v1" not in response.text


def test_every_page_renders_for_an_admin(workspace_built: Workspace, admin: TestClient) -> None:
    for path in pages(workspace_built):
        response = admin.get(path)
        assert response.status_code == 200, (path, response.text[:2000])
        assert "<h1>" in response.text and "Content-Security-Policy" in response.headers
    assert re.search(r"Chain verification:\s+verified", admin.get("/audit/verify").text)
    diff = admin.get("/datasets/faq/diff?before=v1&after=v2").text  # ids are content hashes: an edit adds and removes
    assert '<dt>added</dt><dd id="added">1</dd>' in diff and "<dt>removed</dt><dd>1</dd>" in diff
    assert "Support is open 8 to 8" in admin.get("/datasets/faq/v2?q=every+day").text
    assert workspace_built.record_id in admin.get(f"/datasets/faq/v1?q={workspace_built.record_id}").text
    bad = admin.get("/deployments/chat?hours=soon")
    assert bad.status_code == 400 and "hours: Input should be a valid integer" in bad.text
    assert admin.get("/traces/01J00000000000000000000000").status_code == 404
    record = admin.get(f"/records/{workspace_built.record_id}").text
    assert "file:///docs/0.txt" in record and 'href="/datasets/faq/v1"' in record
    assert "You answer questions about returns." in admin.get("/prompts/support?var_topic=returns").text
    trace = admin.get(f"/traces/{workspace_built.trace_ids[1]}").text
    assert "How long do returns take? (1)" in trace and "Returns take 14 days." in trace and "wrong period" in trace
    assert "kb@v1" in trace


def test_sign_in_refuses_bad_keys_and_csrf(workspace_built: Workspace) -> None:
    client = TestClient(create_console(workspace_built.store), follow_redirects=False)
    token = csrf_of(client.get("/login").text)
    bad = client.post("/login", data={"key": "keel_nope", "csrf": token})
    assert bad.status_code == 401 and "expected an API key" in bad.text
    forged = client.post("/login", data={"key": workspace_built.admin_key, "csrf": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert client.get("/").status_code == 303  # still signed out
    wrong = workspace_built.admin_key[:-4] + "AAAA"
    statuses = [client.post("/login", data={"key": wrong, "csrf": token}).status_code for _ in range(11)]
    assert statuses[0] == 401 and statuses[-1] == 429  # more than 10 failures a minute: throttled before argon2


def test_canary_promote_and_rollback_as_admin(workspace_built: Workspace, admin: TestClient) -> None:
    page = admin.get("/deployments/chat").text
    assert 'id="canary-button"' in page and 'data-confirm="' in page
    response = admin.post("/deployments/chat/canary", data={"model": "chat@v2", "weight": "20", "csrf": csrf_of(page)})
    assert response.status_code == 303
    page = admin.get("/deployments/chat").text
    assert "Canary started" in page and "chat@v2" in page and 'id="rollback-button"' in page
    response = admin.post("/deployments/chat/rollback", data={"csrf": csrf_of(page)})
    assert response.status_code == 303, response.text
    page = admin.get("/deployments/chat").text
    assert "Rolled back" in page, page and page.count("<td>canary</td>") == 0
    bad = admin.post("/deployments/chat/canary", data={"model": "chat@v2", "weight": "150", "csrf": csrf_of(page)})
    assert "between 1 and 99" in admin.get(bad.headers["location"]).text
    with workspace_built.store.db.read() as conn:
        actors = {e.action: e.actor for e in events(conn, object_id="deployment:chat", limit=10)}
    assert actors["deployment.canary"].startswith("key:") and actors["deployment.rollback"].startswith("key:")


def test_viewer_sees_no_buttons_and_its_posts_are_refused_and_audited(workspace_built: Workspace) -> None:
    with signed_in(workspace_built, workspace_built.viewer_key) as viewer:
        page = viewer.get("/deployments/chat").text
        assert "canary-button" not in page and "rollback-button" not in page and "<button" in page  # only sign out
        review = viewer.get("/review").text
        assert "Submit review" not in review
        token = csrf_of(page)
        refused = viewer.post("/deployments/chat/canary", data={"model": "chat@v2", "weight": "10", "csrf": token})
        assert refused.status_code == 403 and "may not deployment.change" in refused.text
        refused = viewer.post(f"/review/{workspace_built.trace_ids[0]}", data={"score": "up", "csrf": token})
        assert refused.status_code == 403 and "feedback.write" in refused.text
    with workspace_built.store.db.read() as conn:
        denied = [e.details for e in events(conn, action="access.denied", limit=10)]
    assert {d["action"] for d in denied} >= {"deployment.change", "feedback.write"}


def test_post_without_a_session_is_refused_and_audited(workspace_built: Workspace) -> None:
    client = TestClient(create_console(workspace_built.store), follow_redirects=False)
    token = csrf_of(client.get("/login").text)
    response = client.post("/deployments/chat/rollback", data={"csrf": token})
    assert response.status_code == 401 and "sign in first" in response.text
    with workspace_built.store.db.read() as conn:
        (event,) = events(conn, action="access.denied", limit=1)
    assert event.actor == "console:anonymous" and event.object_id == "console:/deployments/chat/rollback"


def test_review_correction_shows_on_the_trace_page(workspace_built: Workspace, admin: TestClient) -> None:
    trace_id = workspace_built.trace_ids[3]
    page = admin.get("/review").text
    assert f"/review/{trace_id}" in page
    data = {"score": "down", "correction": "Returns are accepted within 30 days.", "csrf": csrf_of(page)}
    response = admin.post(f"/review/{trace_id}", data=data)
    assert response.status_code == 303 and response.headers["location"].endswith(f"/traces/{trace_id}")
    trace = admin.get(f"/traces/{trace_id}").text
    assert "Feedback recorded." in trace and "Returns are accepted within 30 days." in trace
    pending = admin.get("/review?pending=true").text
    assert f"/review/{trace_id}" not in pending and f"/review/{workspace_built.trace_ids[1]}" not in pending
    assert f"/review/{workspace_built.trace_ids[0]}" in pending


def test_lists_page_by_keyset(workspace_built: Workspace, admin: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("keel.ui._pages.PAGE", 2)
    first = admin.get("/traces").text
    nxt = re.search(r'after=([0-9A-Z]{26})"', first)
    assert nxt is not None
    second = admin.get(f"/traces?after={nxt.group(1)}").text
    shown = lambda html: set(re.findall(r'/traces/([0-9A-Z]{26})"', html))  # noqa: E731
    assert len(shown(first)) == 2 and len(shown(second)) == 2 and not shown(first) & shown(second)
    runs = admin.get("/runs?sort=loss&order=asc").text
    after = re.search(r"after=([0-9A-Z]{26})", runs)
    assert after is not None
    rest = admin.get(f"/runs?sort=loss&order=asc&after={after.group(1)}").text
    assert len(set(re.findall(r'/runs/([0-9A-Z]{26})"', rest))) == 1


def test_mounted_under_the_gateway_at_ui(workspace_built: Workspace) -> None:
    from keel.serve import Gateway, ServeSettings, create_app

    app = create_app(Gateway(workspace_built.store, ServeSettings(require_keys=False)))
    app.mount("/ui", create_console(workspace_built.store))  # what `keel serve --ui` does
    client = TestClient(app, follow_redirects=False)
    assert client.get("/ui/runs").headers["location"] == "/ui/login?next=%2Fruns"
    page = client.get("/ui/login")
    assert 'href="/ui/static/keel.css"' in page.text and client.get("/ui/static/uPlot.iife.min.js").status_code == 200
    response = client.post("/ui/login", data={"key": workspace_built.admin_key, "csrf": csrf_of(page.text)})
    assert response.headers["location"] == "/ui/"
    assert 'href="/ui/deployments/chat"' in client.get("/ui/deployments").text


def test_index_query_box(workspace_built: Workspace, admin: TestClient) -> None:
    from keel.index import build_index

    build_index(workspace_built.store, "kb", "faq@v2")
    page = admin.get("/indexes").text
    assert "kb@v1" in page and "faq@v2" in page
    hits = admin.get("/indexes", params={"ref": "kb@v1", "q": "support hours every day", "mode": "keyword"}).text
    assert "Support is open 8 to 8, every day." in hits.split('<ol class="hits">')[1]


def test_keel_ui_serves_the_console(workspace_built: Workspace) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "keel", "ui", "--port", str(port), "--json"]
    with subprocess.Popen(command, cwd=workspace_built.store.settings.workspace, env=dict(os.environ),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            announced = "".join(iter(proc.stdout.readline, "}\n")) + "}"  # one (indented) JSON document
            assert json.loads(announced) == {"url": f"http://127.0.0.1:{port}/"}
            for _ in range(300):
                try:
                    response = httpx.get(f"http://127.0.0.1:{port}/runs", follow_redirects=False)
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
            assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Fruns"
        finally:
            proc.terminate()


def test_keel_ui_outside_a_workspace_is_one_line() -> None:
    from typer.testing import CliRunner

    from keel.cli import app

    result = CliRunner().invoke(app, ["ui"])
    assert result.exit_code == 2 and "WorkspaceNotFoundError: expected a Keel workspace" in result.output


def test_sign_in_goes_back_only_to_console_paths(workspace_built: Workspace) -> None:
    client = TestClient(create_console(workspace_built.store), follow_redirects=False)
    for target, expected in (("/runs", "/runs"), ("//evil.example", "/"), ("/\\evil.example", "/"), ("x", "/")):
        page = client.get("/login", params={"next": target})
        data = {"key": workspace_built.viewer_key, "csrf": csrf_of(page.text), "next": target}
        assert client.post("/login", data=data).headers["location"] == expected


def test_revoking_the_key_ends_its_sessions(workspace_built: Workspace) -> None:
    from keel.govern import list_keys, revoke_key

    with signed_in(workspace_built, workspace_built.viewer_key) as viewer:
        assert viewer.get("/runs").status_code == 200
        (key,) = [k for k in list_keys(workspace_built.store) if k.name == "console-viewer"]
        revoke_key(workspace_built.store, key.id)
        assert viewer.get("/runs").headers["location"] == "/login?next=%2Fruns"


def test_a_trace_without_a_lineage_node_shows_no_lineage(admin: TestClient, workspace_built: Workspace) -> None:
    """Traces written straight into the table (bulk loads, imports) have no lineage node: the page still shows."""
    from datetime import timedelta

    from keel.store.schema import traces

    store = workspace_built.store
    row = {"id": "01M00000000000000000000000", "at": store.clock() - timedelta(minutes=1), "deployment": "chat",
           "model_version": "chat@v1", "prompt_version": None, "key_id": None, "operation": "chat", "status": 200,
           "error": None, "tokens_in": 1, "tokens_out": 1, "ttft_ms": None, "latency_ms": 12.0, "cost": 0.0,
           "cache_hit": 0, "flags": "[]"}  # fmt: skip
    with store.db.write() as conn:
        conn.execute(traces.insert(), [row])
    page = admin.get(f"/traces/{row['id']}")
    assert page.status_code == 200 and "No recorded lineage." in page.text and "lineage-graph" not in page.text


def test_a_chart_block_keeps_hostile_names_as_text_and_holds_its_time_window() -> None:
    from keel.ui._pages import _chart

    name = "chat</script><script>alert(1)</script>&"
    block = _chart({name: [(1_700_000_000, 2.0)]}, (1_699_990_000.0, 1_700_010_000.0))
    assert "<" not in block and ">" not in block and "&" not in block
    parsed = json.loads(block)
    assert parsed["labels"] == [name]
    assert parsed["data"] == [[1_700_000_000], [2.0]]
    assert parsed["range"] == [1_699_990_000.0, 1_700_010_000.0]  # one point still gets the page's 24 h axis


def test_cost_page_shows_the_cli_report(workspace_built: Workspace, admin: TestClient) -> None:
    from datetime import timedelta

    from keel.monitor import cost_report

    asked = admin.get("/deployments/chat/cost")  # no machine cost anywhere: the form says what to give
    assert asked.status_code == 200 and 'id="cost-missing"' in asked.text
    page = admin.get("/deployments/chat/cost?api=gpt-4o-mini&hours=24&hardware=2.5")
    assert page.status_code == 200
    store = workspace_built.store
    until = store.clock()
    since = until - timedelta(hours=24)
    report = cost_report(store, "chat", api="gpt-4o-mini", since=since, hardware_cost_per_hour=2.5)
    assert report.requests > 0
    cell = re.search(r'id="api-cost">([0-9.]+) ', page.text)
    assert cell is not None and float(cell.group(1)) == pytest.approx(report.api_cost, abs=1e-4)
    assert admin.get("/deployments/chat/cost?api=no-such-api&hardware=1").status_code == 400
    assert admin.get("/deployments/nope/cost?hardware=1").status_code == 404
