"""The console's labelling pages, in the review area: the label queues, and the next item for the signed-in user.

Answers go through `keel.label.record_label` / `skip_item` on a store acting as the signed-in principal, so
`label.write` and the queue's assignment are decided (and refusals audited) by the library, as in the terminal.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from keel.core.errors import KeelError
from keel.govern import PermissionDeniedError
from keel.label import get_item, get_queue, list_queues, next_item, queue_progress, record_label, skip_item
from keel.ui._app import Console, keel_error_message

__all__ = ["add_routes"]


def add_routes(app: FastAPI, console: Console) -> None:
    """Register the label queue list, the labelling page and its answer action on `app`."""

    @app.get("/labels", response_class=HTMLResponse)
    async def queues(request: Request) -> Response:
        found = [(q, queue_progress(console.store, q)) for q in list_queues(console.store)]
        return console.render(request, "labels.html", title="Label queues", queues=found)

    @app.get("/labels/{name}", response_class=HTMLResponse)
    async def label_page(request: Request, name: str) -> Response:
        queue = get_queue(console.store, name)
        store = console.acting(request)
        item = next_item(store, queue)
        progress = queue_progress(console.store, queue)
        return console.render(request, "label_item.html", title=f"Label {name}", queue=queue, item=item,
                              progress=progress.annotators.get(store.actor), keys=queue.schema.keys(),
                              may_label=console.may(request, "label.write", queue.resource))  # fmt: skip

    @app.post("/labels/{name}/{position}")
    async def answer(request: Request, name: str, position: int) -> Response:
        form = await request.form()
        queue = get_queue(console.store, name)
        store = console.acting(request)
        get_item(store, queue, position)  # a position the queue has (NotFoundError: 404)
        try:
            if form.get("skip"):
                skip_item(store, queue, position, origin="console")
                done = f"Skipped item {position + 1}."
            else:
                chosen = [str(v) for v in form.getlist("answer") if str(v).strip()]
                value: object = chosen if queue.schema.multi else (chosen[0] if chosen else "")
                made = record_label(store, queue, position, value, origin="console")
                done = f"Stored {made.value} on item {position + 1}."
        except PermissionDeniedError:
            raise  # the library recorded the denial; the app's handler renders it as 403
        except KeelError as exc:
            return console.back(request, f"/labels/{name}", flash=keel_error_message(exc))
        return console.back(request, f"/labels/{name}", flash=done)
