"""The console's permissions on a real server (uvicorn on 127.0.0.1): what a signed-in principal may still read.

Roles change while sessions live for hours, and a restricted dataset's records need `dataset.read` whoever asks:
the console's own process principal (an admin) must not read them on a signed-in principal's behalf.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from keel.govern import classify_dataset, create_key, define_role, grant, list_keys, revoke
from keel.serve import serve_in_thread
from keel.store import events
from keel.ui import create_console

from .conftest import Workspace


@contextmanager
def _signed_in(url: str, secret: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        page = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text
        response = client.post("/login", data={"key": secret, "csrf": csrf.group(1), "next": "/"})
        assert response.status_code == 303, response.text
        yield client


def _key_id(ws: Workspace, name: str) -> str:
    (key,) = [k for k in list_keys(ws.store) if k.name == name]
    return key.id


def test_a_role_revoked_after_sign_in_ends_the_session(workspace_built: Workspace) -> None:
    ws = workspace_built
    with serve_in_thread(create_console(ws.store)) as url, _signed_in(url, ws.viewer_key) as viewer:
        assert viewer.get("/audit").status_code == 200
        revoke(ws.store, f"key:{_key_id(ws, 'console-viewer')}", "viewer")
        time.sleep(1.1)  # the console's policy snapshot is re-read at most once a second
        for path in ("/audit", "/datasets/faq/v1", "/"):
            page = viewer.get(path)
            assert page.status_code == 303 and page.headers["location"].startswith("/login"), (path, page.text)
            assert "dataset.commit" not in page.text
        # and it cannot sign in again with the key either
        login = viewer.get("/login")
        assert login.status_code == 200


def test_restricted_records_need_dataset_read_in_the_console_too(workspace_built: Workspace) -> None:
    ws = workspace_built
    define_role(ws.store, "console-only", ["console.read"])
    reader = create_key(ws.store, "console-only-reader")
    grant(ws.store, f"key:{reader.key.id}", "console-only")
    classify_dataset(ws.store, "faq", "restricted")
    secret_text = "Returns are accepted within 30 days."
    pages = ["/datasets/faq/v1", "/datasets/faq/v2?q=returns", "/datasets/faq/diff?before=v1&after=v2",
             f"/records/{ws.record_id}"]  # fmt: skip
    with serve_in_thread(create_console(ws.store)) as url:
        with _signed_in(url, reader.secret) as client:
            assert client.get("/datasets").status_code == 200  # the list of datasets is not their records
            for path in pages:
                page = client.get(path)
                assert page.status_code == 403, (path, page.status_code)
                assert secret_text not in page.text and "dataset.read" in page.text, path
        with _signed_in(url, ws.admin_key) as admin:
            assert secret_text in admin.get("/datasets/faq/v1").text
            assert secret_text in admin.get(f"/records/{ws.record_id}").text


def _denials(ws: Workspace) -> list[Any]:
    with ws.store.db.read() as conn:
        return events(conn, action="access.denied", limit=None)


def test_anonymous_posts_cannot_flood_the_audit_log(workspace_built: Workspace) -> None:
    """Each refused POST wrote one permanent, chained audit event, so anyone who could reach the console could
    write hundreds of rows a second (their own path text in each) into the log nobody may prune."""
    ws = workspace_built
    with serve_in_thread(create_console(ws.store)) as url, httpx.Client(base_url=url, timeout=30) as client:
        before = len(_denials(ws))
        statuses = {client.post(f"/deployments/chat/rollback-{i}", data={"csrf": "x"}).status_code for i in range(40)}
        assert statuses == {403}  # every one is still refused
        recorded = _denials(ws)[: len(_denials(ws)) - before]
        assert 1 <= len(recorded) <= 10, len(recorded)
        assert all(e.actor == "console:anonymous" for e in recorded)
        with _signed_in(url, ws.viewer_key) as viewer:  # a signed-in principal's refusals are its own to count
            page = viewer.get("/deployments/chat")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            assert viewer.post("/deployments/chat/rollback", data={"csrf": csrf.group(1)}).status_code == 403
        (last,) = _denials(ws)[:1]
        assert last.actor.startswith("key:") and last.object_id == "deployment:chat"


def test_a_form_larger_than_any_console_form_is_refused_unread(workspace_built: Workspace) -> None:
    """The CSRF check read the whole body of any POST into memory, signed in or not: 400 MB held 500 MB."""
    ws = workspace_built
    with serve_in_thread(create_console(ws.store)) as url, httpx.Client(base_url=url, timeout=60) as client:
        big = client.post("/logout", content=b"csrf=" + b"a" * (2 * 1024 * 1024),
                          headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert big.status_code == 413 and "at most 1,048,576 bytes" in big.text

        def chunks() -> Iterator[bytes]:  # no Content-Length: the size is only known once read
            yield b"csrf=x"

        chunked = client.post(
            "/logout", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert chunked.status_code == 411
        for refused in (big, chunked, client.post("/logout", data={"csrf": "wrong"})):
            assert refused.headers["content-security-policy"].startswith("default-src 'self'")
            assert refused.headers["x-content-type-options"] == "nosniff"
        assert client.get("/login").status_code == 200  # the server is fine


def test_no_redirect_names_the_host_header(workspace_built: Workspace) -> None:
    ws = workspace_built
    with serve_in_thread(create_console(ws.store)) as url, _signed_in(url, ws.admin_key) as admin:
        for path in ("/datasets/", "/runs/"):
            page = admin.get(path, headers={"host": "evil.example"})
            assert "evil.example" not in page.headers.get("location", ""), (path, page.headers)
        assert admin.get("/runs").status_code == 200
