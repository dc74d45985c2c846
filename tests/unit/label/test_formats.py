"""Label Studio and Argilla files: export → import round-trips exactly; files as those tools write them import."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from tests.unit.label.conftest import TICKETS, commit_tickets

from keel.core.errors import InputError
from keel.data import DatasetVersion
from keel.label import (
    LabelSchema,
    create_queue,
    export_labels,
    import_labels,
    label_studio_config,
    list_labels,
    record_label,
    set_schema,
    skip_item,
)
from keel.store import Store

ANSWERS = {
    "classes": ["billing", "bug", "billing"],
    "multi": [["billing", "other"], ["bug"], ["other"]],
    "spans": ["ORG:0-5; PER:8-12", "-", "PER:0-3"],
    "rating": [5, 1, 3],
    "text": ["double charge", "crash on settings", "refund"],
}
SCHEMAS = {
    "classes": LabelSchema("classes", ("billing", "bug", "other")),
    "multi": LabelSchema("classes", ("billing", "bug", "other"), multi=True),
    "spans": LabelSchema("spans", ("PER", "ORG")),
    "rating": LabelSchema("rating", scale=5),
    "text": LabelSchema("text"),
}


@pytest.mark.parametrize("kind", list(SCHEMAS))
def test_label_studio_export_import_round_trips_exactly(store: Store, tmp_path: Path, kind: str) -> None:
    commit_tickets(store)
    set_schema(store, "tickets", SCHEMAS[kind])
    first = create_queue(store, "first", "data:tickets", order="random", seed=1, limit=5)
    for position, answer in enumerate(ANSWERS[kind]):
        record_label(store, first, position, answer, annotator="user:ann")
        record_label(store, first, position, ANSWERS[kind][0], annotator="user:bob")
    skip_item(store, first, 3, annotator="user:bob")
    exported = tmp_path / "ls.json"
    assert export_labels(store, first, exported, format="label-studio") == 5
    second = create_queue(store, "second", "data:tickets", order="random", seed=1, limit=5)
    report = import_labels(store, second, exported, format="label-studio")
    assert (report.labels, report.skips, report.unmatched_items) == (6, 1, 0)
    again = tmp_path / "ls2.json"
    export_labels(store, second, again, format="label-studio")
    assert again.read_bytes() == exported.read_bytes()
    fields = ("position", "item_id", "annotator", "status", "value", "at")
    assert [[getattr(lb, f) for f in fields] for lb in list_labels(store, second)] == [
        [getattr(lb, f) for f in fields] for lb in list_labels(store, first)
    ]
    tasks = json.loads(exported.read_text())
    result = tasks[0]["annotations"][0]["result"]
    assert all(r["from_name"] == "label" and r["to_name"] == "text" for r in result)
    assert 'name="label" toName="text"' in label_studio_config(SCHEMAS[kind])


def test_a_label_studio_export_as_label_studio_writes_it_imports(store: Store, tmp_path: Path) -> None:
    """Tasks as Label Studio's JSON export writes them: integer `completed_by`, cancelled annotations, predictions."""
    commit_tickets(store)
    set_schema(store, "tickets", LabelSchema("classes", ("billing", "bug", "other")))
    queue = create_queue(store, "q", "data:tickets")
    tasks = [
        {"id": 17, "created_at": "2026-11-30T10:00:00.000000Z", "updated_at": "2026-11-30T10:05:00.000000Z",
         "project": 3, "data": {"id": "t0", "text": TICKETS[0]},
         "annotations": [
             {"id": 41, "result": [{"from_name": "sentiment", "id": "Dx_aB91ISN", "to_name": "text", "type": "choices",
                                    "origin": "manual", "value": {"choices": ["billing"]}}],
              "was_cancelled": False, "ground_truth": False, "created_at": "2026-11-30T10:04:00.123456Z",
              "updated_at": "2026-11-30T10:04:00.123456Z", "lead_time": 4.2, "result_count": 0, "task": 17,
              "completed_by": 10},
             {"id": 42, "result": [], "was_cancelled": True, "ground_truth": False,
              "created_at": "2026-11-30T10:06:00Z", "updated_at": "2026-11-30T10:06:00Z", "lead_time": 1.0,
              "task": 17, "completed_by": {"id": 11, "email": "bob@example.com", "first_name": "", "last_name": ""}},
         ],
         "predictions": [{"model_version": "m1", "score": 0.5, "result": [
             {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["bug"]}}]}]},
        {"id": 18, "data": {"text": TICKETS[1]},  # no id: matched by its text
         "annotations": [{"id": 43, "completed_by": 10, "was_cancelled": False,
                          "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                      "value": {"choices": ["bug"]}}]}]},
        {"id": 19, "data": {"id": "elsewhere", "text": "not in this queue"}, "annotations": []},
    ]  # fmt: skip
    path = tmp_path / "project-3-at-2026-11-30.json"
    path.write_text(json.dumps(tasks))
    report = import_labels(store, queue, path, format="label-studio")
    assert (report.labels, report.skips, report.unmatched_items, report.ignored) == (2, 1, 1, {"predictions": 1})
    stored = [(lb.item_id, lb.annotator, lb.status, lb.value) for lb in list_labels(store, queue)]
    assert stored == [("t0", "user:bob@example.com", "skipped", None), ("t0", "user:labelstudio-10", "labelled",
                      "billing"), ("t1", "user:labelstudio-10", "labelled", "bug")]  # fmt: skip
    assert list_labels(store, queue)[1].at.isoformat() == "2026-11-30T10:04:00.123456+00:00"


def test_an_argilla_records_file_imports_and_keel_files_map_users_back(store: Store, tmp_path: Path) -> None:
    commit_tickets(store)
    set_schema(store, "tickets", LabelSchema("spans", ("PER", "ORG")))
    queue = create_queue(store, "q", "data:tickets")
    ann, bob = str(uuid.uuid4()), str(uuid.uuid4())
    records = [  # as `dataset.records.to_json(path)` writes Argilla v2 records
        {"id": "t4", "fields": {"text": TICKETS[4]}, "metadata": {"team": "support"},
         "suggestions": {"label": {"value": [{"start": 0, "end": 3, "label": "PER"}], "score": 0.7, "agent": "gliner"}},
         "responses": {"label": [{"value": [{"start": 18, "end": 25, "label": "ORG"}], "user_id": ann},
                                 {"value": None, "user_id": bob, "status": "discarded"},
                                 {"value": [{"start": 0, "end": 3, "label": "PER"}], "user_id": ann,
                                  "status": "draft"}]},
         "vectors": {}, "_server_id": str(uuid.uuid4())},
        {"id": str(uuid.uuid4()), "fields": {"text": TICKETS[2]}, "metadata": {}, "suggestions": {},
         "responses": {"label": [{"value": [], "user_id": bob}]}, "vectors": {}, "_server_id": None},
    ]  # fmt: skip
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records))
    report = import_labels(store, queue, path, format="argilla")
    assert (report.labels, report.skips, report.unmatched_items) == (2, 1, 0)
    assert report.ignored == {"suggestions": 1, "drafts": 1}
    stored = {(lb.item_id, lb.annotator, lb.status) for lb in list_labels(store, queue)}
    assert stored == {("t4", f"user:argilla-{ann}", "labelled"), ("t4", f"user:argilla-{bob}", "skipped"),
                      ("t2", f"user:argilla-{bob}", "labelled")}  # fmt: skip
    exported = tmp_path / "out.json"
    export_labels(store, queue, exported, format="argilla")
    written = json.loads(exported.read_text())
    assert set(written[0]) == {"id", "fields", "metadata", "suggestions", "responses", "vectors", "_server_id"}
    other = create_queue(store, "other", "data:tickets")
    import_labels(store, other, exported, format="argilla")
    assert [(lb.item_id, lb.annotator, lb.value) for lb in list_labels(store, other)] == [
        (lb.item_id, lb.annotator, lb.value) for lb in list_labels(store, queue)
    ]


def test_a_file_with_an_answer_the_schema_refuses_stores_nothing(store: Store, tickets: DatasetVersion,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    queue = create_queue(store, "q", "data:tickets")
    tasks = [{"data": {"id": "t0"}, "annotations": [{"completed_by": 1, "result": [
                 {"from_name": "l", "to_name": "text", "type": "choices", "value": {"choices": ["bug"]}}]}]},
             {"data": {"id": "t1"}, "annotations": [{"completed_by": 1, "result": [
                 {"from_name": "l", "to_name": "text", "type": "choices",
                  "value": {"choices": ["refund"]}}]}]}]  # fmt: skip
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks))
    with pytest.raises(InputError, match="item 't1' by user:labelstudio-1: expected one of the classes"):
        import_labels(store, queue, path, format="label-studio")
    assert list_labels(store, queue) == []
    path.write_text("{not json")
    with pytest.raises(InputError, match="readable JSON"):
        import_labels(store, queue, path, format="label-studio")
