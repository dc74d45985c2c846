"""The console's ASGI app: sign-in with an API key into a signed session cookie, CSRF on every form, pages.

Each request acts as the signed-in principal through a copy of the workspace store (`Store.principal`), so
the library's own `keel.govern.require` checks refuse a viewer's POST and audit it, exactly as the CLI would.
This module knows about sessions, forms and templates; what a page shows comes from the library.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from keel.core.clock import format_time
from keel.core.echo import safe_message, shown
from keel.core.errors import DatabaseUnavailableError, InputError, KeelError, NotFoundError, StoreError
from keel.govern import (
    AuthenticationError,
    AuthenticationThrottledError,
    KeyVerifier,
    PermissionDeniedError,
    check,
)
from keel.store import Store
from keel.ui._sessions import end_session, new_session_id, session_live

__all__ = ["Console", "create_console", "mount_console"]

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "keel_console"
SESSION_HOURS = 8
PAGE = 50  # rows per page of every list
# No inline script anywhere: charts read their data from <script type="application/json"> blocks.
# Refusals recorded in the audit log per signed-in principal, or per address when nobody is signed in, per minute:
# each is a permanent event of the chained log, so anonymous clients must not be able to write them at will.
REFUSALS_RECORDED = 10
REFUSAL_WINDOW_S = 60.0
# Largest form body accepted (a review correction is the longest field); larger POSTs are refused unread.
FORM_MAX_BYTES = 1024 * 1024
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"


class Console:
    """What every page handler needs: the workspace store, the templates, and the acting principal's store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # The gateway's verifier: argon2 once per key, and failed sign-ins throttled per key id and per address.
        self.keys = KeyVerifier(store)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["when"] = _when
        self.templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
        self.templates.env.globals["page_size"] = PAGE
        self._refusals = _Window(REFUSALS_RECORDED, REFUSAL_WINDOW_S)

    def acting(self, request: Request) -> Store:
        """The store acting as the request's signed-in principal (the audit actor of what it changes)."""
        return dataclasses.replace(self.store, principal=request.state.principal)

    def may(self, request: Request, action: str, resource: str) -> bool:
        """Whether the signed-in principal may do `action` on `resource` (shows or hides a button)."""
        return check(self.store, request.state.principal, action, resource).allowed

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        """A page: the template with the session's principal, CSRF token and flash message."""
        context.setdefault("title", template.removesuffix(".html").replace("_", " ").capitalize())
        flash = request.session.pop("flash", None)
        return self.templates.TemplateResponse(
            request,
            template,
            {
                "principal": getattr(request.state, "principal", None),
                "csrf": request.session.get("csrf", ""),
                "base": request.scope.get("root_path", ""),
                "flash": flash,
                "may": lambda action, resource: self.may(request, action, resource),
                **context,
            },
            status_code=status_code,
        )

    def refuse(self, request: Request, reason: str, status_code: int = 403) -> Response:
        """Refuse a request and record the refusal in the audit log, like a denied library call."""
        signed_in = getattr(request.state, "principal", None)
        principal = signed_in or "console:anonymous"
        who = signed_in or f"address:{request.client.host if request.client else '-'}"
        if not self._refusals.admit(who):  # refused all the same, but not written into the log again
            return self.render(request, "error.html", status_code, title="Refused", message=reason)
        store = dataclasses.replace(self.store, principal=principal)
        try:
            with store.db.write() as conn:
                store.audit(
                    conn,
                    "access.denied",
                    f"console:{request.url.path}"[:255],
                    {"action": f"console.{request.method.lower()}", "principal": principal, "reason": reason},
                )
        except StoreError:  # a read-only workspace: the refusal stands, unrecorded (as keel.govern does)
            pass
        return self.render(request, "error.html", status_code, title="Refused", message=reason)

    def back(self, request: Request, path: str, flash: str | None = None, **query: str) -> RedirectResponse:
        """Redirect (303, after a POST) to a console path, with an optional flash message."""
        if flash:
            request.session["flash"] = flash
        suffix = f"?{urlencode(query)}" if query else ""
        return RedirectResponse(f"{request.scope.get('root_path', '')}{path}{suffix}", status_code=303)


class _Window:
    """At most `limit` events per `window_s` for each name (bounded to the 10,000 names seen last)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit, self._window_s = limit, window_s
        self._times: OrderedDict[str, deque[float]] = OrderedDict()
        self._warned: dict[str, float] = {}
        self._lock = threading.Lock()

    def admit(self, name: str) -> bool:
        """Count one event for `name`; False when it already had `limit` within the window."""
        now = time.monotonic()
        with self._lock:
            times = self._times.setdefault(name, deque())
            self._times.move_to_end(name)
            while times and times[0] <= now - self._window_s:
                times.popleft()
            if len(times) >= self._limit:
                if self._warned.get(name) != times[0]:  # once per window, not once per refusal
                    self._warned[name] = times[0]
                    log.warning("not recording further console refusals for %s for up to %.0f s", name,
                                self._window_s)  # fmt: skip
                return False
            times.append(now)
            while len(self._times) > 10_000:
                self._warned.pop(self._times.popitem(last=False)[0], None)
            return True


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    return format_time(value) if isinstance(value, datetime) else str(value)


_OPEN = ("/login", "/static/")


def _guard(console: Console) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Every path but sign-in and static files needs a live session; every POST needs the session's CSRF token."""

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await checked(request, call_next)
        response.headers["Content-Security-Policy"] = CSP  # refusals too: every HTML page the console sends
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def checked(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path.removeprefix(request.scope.get("root_path", "")) or "/"
        request.state.principal = None
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(32)
        principal = request.session.get("principal")
        if principal is not None and not _may_stay(console, principal, request.session):
            # Signed out (this cookie or a copy of it), or key or role revoked since sign-in: the session ends.
            request.session.pop("principal", None)
            principal = None
        request.state.principal = principal
        if request.method == "POST":
            # Read only after its declared size is checked: anyone may POST, signed in or not. h11 holds a body to
            # its Content-Length, and a browser always sends one with a form.
            declared = request.headers.get("content-length", "")
            if not declared.isdigit():
                return console.refuse(request, "expected a form with a Content-Length header; got none", 411)
            if int(declared) > FORM_MAX_BYTES:
                return console.refuse(
                    request, f"expected a form of at most {FORM_MAX_BYTES:,} bytes; got {int(declared):,}", 413
                )
            if principal is None and path == "/logout":
                # Nothing to end (an expired, signed-out or revoked session, or none): signed out all the same,
                # without a CSRF check (there is no session to protect) and without reading the body.
                request.session.clear()
                return console.back(request, "/login", flash="Signed out.")
            # The body, not request.form(): Starlette replays a read body to the handler, not a parsed stream.
            # Every console form is urlencoded (no file uploads).
            token = parse_qs((await request.body()).decode("utf-8", "replace")).get("csrf", [""])[0]
            if not hmac.compare_digest(token.encode(), str(request.session["csrf"]).encode()):
                return console.refuse(request, "the form's CSRF token is missing or wrong: reload the page and retry")
            if principal is None and path != "/login":
                return console.refuse(request, "sign in first: this action needs a console session", 401)
        elif principal is None and not path.startswith(_OPEN):
            return console.back(request, "/login", next=path)
        return await call_next(request)

    return guard


def _may_stay(console: Console, principal: str, session: dict[str, Any]) -> bool:
    """Whether a session was not signed out, its key is still live and its principal may still sign in.

    One database read per request (the key and the sign-out in one query; roles come from a snapshot re-read
    at most once a second), so a sign-out or revocation reaches every console process at its next request.
    """
    return (
        session_live(console.store, session.get("key_id"), session.get("sid"))
        and check(console.store, principal, "console.read", "*").allowed
    )


def create_console(store: Store, *, secret_key: str | None = None, https_only: bool = False) -> FastAPI:
    """The console as an ASGI app: `keel ui` serves it, `keel serve --ui` mounts it at `/ui`.

    Args:
        store: The workspace store; each request acts through a copy carrying the signed-in principal.
        secret_key: Signs the session cookie; a random one per process by default (sessions end on restart).
        https_only: Mark the session cookie Secure (serve over HTTPS).

    Returns:
        A FastAPI app with every page, sign-in and the static assets.

    Examples:
        >>> import uvicorn  # doctest: +SKIP
        >>> uvicorn.run(create_console(open_store()), port=8080)  # doctest: +SKIP
    """
    from keel.ui import _actions, _labels, _pages

    console = Console(store)
    # No trailing-slash redirects: Starlette's point at `http://<Host header>/…`, another site if a proxy lets it by.
    app = FastAPI(title="Keel console", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.middleware("http")(_guard(console))
    # Added last, so it runs first: the guard reads the session it decoded.
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key or secrets.token_urlsafe(32),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_HOURS * 3600,
        same_site="strict",
        https_only=https_only,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _sign_in_routes(app, console)
    _pages.add_routes(app, console)
    _actions.add_routes(app, console)
    _labels.add_routes(app, console)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> Response:
        return console.render(request, "error.html", 404, title="Not found", message=safe_message(str(exc)))

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError) -> Response:
        return console.render(request, "error.html", 400, title="Bad input", message=safe_message(str(exc)))

    @app.exception_handler(RequestValidationError)
    async def bad_query(request: Request, exc: RequestValidationError) -> Response:
        wrong = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return console.render(request, "error.html", 400, title="Bad input", message=safe_message(f"expected {wrong}"))

    @app.exception_handler(PermissionDeniedError)
    async def denied(request: Request, exc: PermissionDeniedError) -> Response:
        return console.render(request, "error.html", 403, title="Refused", message=safe_message(str(exc)))

    return app


def mount_console(
    app: FastAPI, store: Store, *, secret_key: str | None = None, https_only: bool = False, path: str = "/ui"
) -> None:
    """Mount the console on another app (the gateway: `keel serve --ui`) at `path`, and `path` alone redirects there.

    The gateway makes no trailing-slash redirects (Starlette's name the request's Host header), so the bare
    `path` gets its own, relative one.

    Args:
        app: The app to mount on.
        store: The workspace store, as for `create_console`.
        secret_key: Signs the session cookie, as for `create_console`.
        https_only: Mark the session cookie Secure.
        path: Where the console answers.
    """
    app.mount(path, create_console(store, secret_key=secret_key, https_only=https_only))

    async def to_console(_: Request) -> Response:
        return RedirectResponse(f"{path}/", status_code=307)

    app.add_route(path, to_console, methods=["GET", "HEAD"])


def _sign_in_routes(app: FastAPI, console: Console) -> None:
    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> Response:
        return console.render(request, "login.html", title="Sign in", next=_local(next))

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await request.form()
        presented = str(form.get("key", ""))
        target = str(form.get("next", "/"))
        try:
            key = console.keys.verify(presented.strip(), client=request.client.host if request.client else None)
        except AuthenticationError as exc:
            status = 429 if isinstance(exc, AuthenticationThrottledError) else 401
            return console.render(request, "login.html", status, title="Sign in", error=str(exc), next=target)
        principal = f"key:{key.id}"
        if not check(console.store, principal, "console.read", "*").allowed:
            request.state.principal = principal
            return console.refuse(request, f"{principal} holds no role that may sign in to the console (console.read)")
        request.session.clear()
        request.session.update(
            {"principal": principal, "key_id": key.id, "sid": new_session_id(), "csrf": secrets.token_urlsafe(32)}
        )
        return console.back(request, _local(target))

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        # Only a live session gets here (the guard signs out any other): end it in the database, so a copy of its
        # cookie is refused by every console process on the workspace, not only by this browser.
        key_id, sid = str(request.session["key_id"]), str(request.session["sid"])
        request.session.clear()
        try:
            end_session(console.store, key_id, sid, timedelta(hours=SESSION_HOURS))
        except DatabaseUnavailableError as exc:  # a read-only workspace: this browser forgets the cookie, no more
            log.warning("console sign-out not recorded: %s", exc)
            return console.back(
                request,
                "/login",
                flash="Signed out in this browser only: the workspace is read-only here, "
                "so a copy of the session cookie works until it expires "
                f"({SESSION_HOURS} h after the session last changed).",
            )
        return console.back(request, "/login", flash="Signed out.")


def _local(target: str) -> str:
    """A path on this console to go to after sign-in; anything else (another site: `//x`, `/` + backslash) is `/`."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


def parse_weight(value: str) -> int:
    """A canary weight from a form field: a whole percent."""
    try:
        return int(value)
    except ValueError:
        raise InputError(f"expected a canary weight as a whole percent (1-99); got {shown(value)}") from None


def keel_error_message(exc: KeelError) -> str:
    """One line for a flash message: the error and its hint."""
    hint = getattr(exc, "hint", None)
    return f"{type(exc).__name__}: {exc}" + (f" ({hint})" if hint else "")
