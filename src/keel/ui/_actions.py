"""The console's actions: canary, promote and roll back a deployment; rate or correct an answer in review.

Each POST calls the same library function the CLI calls, through a store acting as the signed-in principal,
so `keel.govern.require` decides and audits; the page only hides buttons the principal could not use.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from keel.core.errors import KeelError
from keel.govern import PermissionDeniedError
from keel.monitor import get_trace_contents, list_feedback, list_traces, record_feedback
from keel.serve import canary_deployment, promote_deployment, rollback_deployment
from keel.ui._app import PAGE, Console, keel_error_message, parse_weight

__all__ = ["add_routes"]


def add_routes(app: FastAPI, console: Console) -> None:
    """Register the deployment actions and the review queue on `app`."""
    _deployment_actions(app, console)
    _review_routes(app, console)


def _deployment_actions(app: FastAPI, console: Console) -> None:
    @app.post("/deployments/{name}/canary")
    async def canary(request: Request, name: str) -> Response:
        form = await request.form()
        model = str(form.get("model", "")).strip() or None
        weight = parse_weight(str(form.get("weight", "")))
        return _act(
            console, request, name, "Canary started", lambda s: canary_deployment(s, name, model, weight=weight)
        )

    @app.post("/deployments/{name}/promote")
    async def promote(request: Request, name: str) -> Response:
        return _act(console, request, name, "Promoted", lambda s: promote_deployment(s, name))

    @app.post("/deployments/{name}/rollback")
    async def rollback(request: Request, name: str) -> Response:
        return _act(console, request, name, "Rolled back", lambda s: rollback_deployment(s, name))


def _act(console: Console, request: Request, name: str, done: str, action: object) -> Response:
    """Run a deployment change as the signed-in principal; a refusal is a 403 page, other errors a flash."""
    assert callable(action)
    try:
        result = action(console.acting(request))
    except PermissionDeniedError:
        raise  # the library recorded the denial; the app's handler renders it as 403
    except KeelError as exc:
        return console.back(request, f"/deployments/{name}", flash=keel_error_message(exc))
    routes = ", ".join(route.label() for route in result.routes)
    return console.back(request, f"/deployments/{name}", flash=f"{done}: {routes}")


def _review_routes(app: FastAPI, console: Console) -> None:
    @app.get("/review", response_class=HTMLResponse)
    async def review(request: Request, deployment: str = "", pending: bool = False, after: str = "") -> Response:
        page = list_traces(console.store, deployment=deployment or None, limit=PAGE, after=after or None)
        contents = get_trace_contents(console.store, [t.id for t in page])
        given = list_feedback(console.store, trace_ids=list(contents), source="human", limit=None)
        reviewed = {f.trace_id for f in given}
        shown = [t for t in page if t.id in contents and not (pending and t.id in reviewed)]
        items = [{"trace": t, "content": contents[t.id], "reviewed": t.id in reviewed} for t in shown]
        nxt = page[-1].id if len(page) == PAGE else None
        return console.render(request, "review.html", title="Review queue", items=items, next=nxt,
                              deployment=deployment, pending=pending)  # fmt: skip

    @app.post("/review/{trace_id}")
    async def rate(request: Request, trace_id: str) -> Response:
        form = await request.form()
        score = str(form.get("score", "")) or None
        correction = str(form.get("correction", "")).strip() or None
        comment = str(form.get("comment", "")).strip() or None
        store = console.acting(request)
        try:
            record_feedback(store, trace_id, score=score, correction=correction, comment=comment, source="human")
        except PermissionDeniedError:
            raise
        except KeelError as exc:
            return console.back(request, "/review", flash=keel_error_message(exc))
        return console.back(request, f"/traces/{trace_id}", flash="Feedback recorded.")
