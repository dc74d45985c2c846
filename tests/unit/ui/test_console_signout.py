"""Sign-out ends a console session server-side, on real servers (uvicorn on 127.0.0.1) and each database backend.

The session cookie is signed, not stored: before sign-out was recorded in the workspace database, a copy of the
cookie kept working for its whole 8 hours after the user signed out, in every process sharing the signing secret.
"""

from __future__ import annotations

import re
import secrets

import httpx
from sqlalchemy import func, select
from tests.integration.keel_serve import keel_process

from keel.serve import serve_in_thread
from keel.store.schema import console_signouts
from keel.ui import create_console

from .conftest import Workspace

COOKIE = "keel_console"


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _sign_in(client: httpx.Client, secret: str) -> None:
    response = client.post("/login", data={"key": secret, "csrf": _csrf(client.get("/login")), "next": "/"})
    assert response.status_code == 303, response.text


def _copy(client: httpx.Client, url: str) -> httpx.Client:
    """Another client holding a copy of `client`'s session cookie (what a thief takes from a browser)."""
    return httpx.Client(base_url=url, follow_redirects=False, timeout=30, cookies={COOKIE: client.cookies[COOKIE]})


def _refused(page: httpx.Response) -> bool:
    return page.status_code == 303 and page.headers["location"].startswith("/login")


def test_a_copied_cookie_stops_working_at_sign_out_in_every_console_process(workspace_built: Workspace) -> None:
    ws = workspace_built
    secret = secrets.token_hex(32)
    app = create_console(ws.store, secret_key=secret)
    with (
        serve_in_thread(app) as url,
        keel_process(ws.store.settings.workspace, "ui", ready="/login", env={"KEEL_UI_SECRET": secret}) as (other, _),
    ):
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as browser:
            _sign_in(browser, ws.viewer_key)
            with _copy(browser, url) as thief, _copy(browser, other) as elsewhere:
                assert thief.get("/audit").status_code == 200  # the copy works while the session lives…
                assert elsewhere.get("/audit").status_code == 200  # …in the other process too (same secret)
                csrf = _csrf(browser.get("/"))  # the session's token, which the copies carry too
                signed_out = browser.post("/logout", data={"csrf": csrf})
                assert signed_out.status_code == 303 and signed_out.headers["location"] == "/login"
                for client in (thief, elsewhere):  # at once: no cache stands between sign-out and the next request
                    for path in ("/audit", "/"):
                        page = client.get(path)
                        assert _refused(page), (path, page.status_code, page.text)
                    # With the session's own token: a live session would pass the CSRF check (then 403 for a viewer).
                    page = client.post("/deployments/chat/canary", data={"csrf": csrf, "weight": "10"})
                    assert page.status_code == 401 and "sign in first" in page.text, page.text
                    assert "dataset.commit" not in page.text
            with httpx.Client(base_url=url, timeout=30) as again:  # the key itself still signs in
                _sign_in(again, ws.viewer_key)
                assert again.get("/audit").status_code == 200
    with ws.store.db.read() as conn:
        assert conn.scalar(select(func.count()).select_from(console_signouts)) == 1


def test_sign_out_with_a_stale_cookie_is_a_plain_sign_out(workspace_built: Workspace) -> None:
    """Signing out a session already ended (a second tab, a copy, an expired or revoked one): no error page."""
    ws = workspace_built
    with serve_in_thread(create_console(ws.store)) as url:
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as first:
            _sign_in(first, ws.admin_key)
            csrf = _csrf(first.get("/"))
            with _copy(first, url) as second_tab:
                assert first.post("/logout", data={"csrf": csrf}).status_code == 303
                again = second_tab.post("/logout", data={"csrf": csrf})
                assert again.status_code == 303 and again.headers["location"] == "/login"
                page = second_tab.get("/login")
                assert page.status_code == 200 and "Signed out." in page.text
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as nobody:  # no cookie, no token
            gone = nobody.post("/logout", data={})
            assert gone.status_code == 303 and gone.headers["location"] == "/login"
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30, cookies={COOKIE: "forged.x.y"}) as forged:
            assert forged.post("/logout", data={"csrf": "x"}).status_code == 303


def test_a_live_session_still_needs_its_csrf_token_to_sign_out(workspace_built: Workspace) -> None:
    """Another site cannot sign a user out by posting the form: the CSRF check still stands for a live session."""
    ws = workspace_built
    with serve_in_thread(create_console(ws.store)) as url:
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as browser:
            _sign_in(browser, ws.viewer_key)
            assert browser.post("/logout", data={"csrf": "wrong"}).status_code == 403
            assert browser.get("/audit").status_code == 200
