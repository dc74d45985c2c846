"""The console's labelling pages: queues listed, the next item labelled by the signed-in key, CSRF, permissions."""

from __future__ import annotations

import pyarrow as pa
from fastapi.testclient import TestClient

from keel.data import commit_version
from keel.label import LabelSchema, create_queue, get_queue, list_labels, set_schema
from keel.ui import create_console

from .conftest import Workspace
from .test_console import csrf_of, signed_in


def make_queue(ws: Workspace) -> None:
    rows = [{"id": f"t{i}", "text": f"ticket <b>{i}</b> about billing"} for i in range(3)]
    commit_version(ws.store, "tickets", pa.Table.from_pylist(rows))
    set_schema(ws.store, "tickets", LabelSchema("classes", ("billing", "bug")))
    create_queue(ws.store, "tq", "data:tickets")


def test_an_admin_labels_and_skips_items_from_the_console(workspace_built: Workspace) -> None:
    make_queue(workspace_built)
    with signed_in(workspace_built, workspace_built.admin_key) as admin:
        listing = admin.get("/labels")
        assert listing.status_code == 200 and 'href="/labels/tq"' in listing.text and "<h1>" in listing.text
        page = admin.get("/labels/tq")
        assert page.status_code == 200 and "ticket &lt;b&gt;0&lt;/b&gt;" in page.text  # escaped text
        assert '<label for="answer-1">billing</label>' in page.text
        stored = admin.post("/labels/tq/0", data={"csrf": csrf_of(page.text), "answer": "bug"})
        assert stored.status_code == 303 and stored.headers["location"] == "/labels/tq"
        page = admin.get("/labels/tq")
        assert "Stored bug on item 1." in page.text and "Item 2 of 3" in page.text
        skipped = admin.post("/labels/tq/1", data={"csrf": csrf_of(page.text), "skip": "1"})
        assert skipped.status_code == 303
        wrong = admin.post("/labels/tq/2", data={"csrf": csrf_of(page.text), "answer": "refund"})
        assert "expected one of the classes" in admin.get(wrong.headers["location"]).text
        forged = admin.post("/labels/tq/2", data={"csrf": "forged", "answer": "bug"})
        assert forged.status_code == 403
    labels = list_labels(workspace_built.store, get_queue(workspace_built.store, "tq"))
    assert [(lb.item_id, lb.status, lb.value, lb.origin) for lb in labels] == [
        ("t0", "labelled", "bug", "console"), ("t1", "skipped", None, "console")]  # fmt: skip
    assert labels[0].annotator.startswith("key:")


def test_a_viewer_sees_no_form_and_its_answer_is_refused(workspace_built: Workspace) -> None:
    make_queue(workspace_built)
    with signed_in(workspace_built, workspace_built.viewer_key) as viewer:
        page = viewer.get("/labels/tq")
        assert page.status_code == 200 and "Save label" not in page.text
        refused = viewer.post("/labels/tq/0", data={"csrf": csrf_of(page.text), "answer": "bug"})
        assert refused.status_code == 403 and "label.write" in refused.text
    assert list_labels(workspace_built.store, get_queue(workspace_built.store, "tq")) == []
    anonymous = TestClient(create_console(workspace_built.store), follow_redirects=False)
    assert anonymous.get("/labels").status_code == 303
