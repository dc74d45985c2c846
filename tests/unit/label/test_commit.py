"""Labels committed as a dataset version derived from the source, rows naming their annotators; audited."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from tests.unit.label.conftest import served

from keel.core.errors import InputError
from keel.data import DatasetVersion, get_version, load_version
from keel.label import LabelSchema, commit_labels, create_queue, record_label, set_schema, skip_item
from keel.store import Store, events, walk


def test_majority_commit_keeps_source_columns_names_annotators_and_leaves_ties_out(
    store: Store, tickets: DatasetVersion
) -> None:
    queue = create_queue(store, "q", "data:tickets", overlap=3)
    votes = {0: ["billing", "billing", "bug"], 1: ["bug", "billing", None], 2: ["other", "other", "other"]}
    for position, answers in votes.items():
        for who, answer in zip(("user:a", "user:b", "user:c"), answers, strict=True):
            if answer is None:
                skip_item(store, queue, position, annotator=who)
            else:
                record_label(store, queue, position, answer, annotator=who)
    result = commit_labels(store, queue, "tickets")
    assert (result.version, result.rows) == ("tickets@v2", 2)
    assert result.left_out == {"tie": 1, "unlabelled": 5}
    rows = load_version(store, "tickets@v2").to_pylist()
    assert [(r["id"], r["label"], r["label_annotators"], r["source_lang"]) for r in rows] == [
        ("t0", "billing", ["user:a", "user:b"], "en"),
        ("t2", "other", ["user:a", "user:b", "user:c"], "en"),
    ]
    assert json.loads(rows[0]["label_votes"]) == {"user:a": "billing", "user:b": "billing", "user:c": "bug"}
    version = get_version(store, "tickets@v2")
    assert version.parents == [tickets.digest] and version.producer["queue"] == "q"
    with store.db.read() as conn:
        upstream = {hit.node for hit in walk(conn, version.node, "upstream")}
    assert {"dataset-version:tickets@v1", "label-queue:q"} <= upstream
    with store.db.read() as conn:
        assert [e.object_id for e in events(conn, action="label.commit")] == ["dataset-version:tickets@v2"]

    one = commit_labels(store, queue, "tickets-by-c", resolve="annotator:user:c")
    assert one.rows == 2 and one.left_out == {"not_labelled_by_annotator": 1, "unlabelled": 5}
    assert [r["label"] for r in load_version(store, "tickets-by-c").to_pylist()] == ["bug", "other"]
    with pytest.raises(InputError, match="--resolve majority or annotator"):
        commit_labels(store, queue, "x", resolve="vote")


def test_commit_types_the_label_column_by_schema_and_relabels_a_labelled_version(
    store: Store, tickets: DatasetVersion
) -> None:
    set_schema(store, "tickets", LabelSchema("spans", ("PER", "ORG")))
    queue = create_queue(store, "spans", "data:tickets", limit=2)
    record_label(store, queue, 0, "ORG:3-10")
    record_label(store, queue, 1, "-")
    commit_labels(store, queue, "tickets")
    table = load_version(store, "tickets@v2")
    kind = table.schema.field("label").type
    assert pa.types.is_list(kind) and [f.name for f in kind.value_type] == ["start", "end", "label"]
    assert table.column("label").to_pylist() == [[{"start": 3, "end": 10, "label": "ORG"}], []]
    set_schema(store, "tickets", LabelSchema("rating", scale=3))
    again = create_queue(store, "again", "data:tickets@v2")  # a labelled version, labelled again
    record_label(store, again, 0, 2)
    commit_labels(store, again, "tickets")
    assert load_version(store, "tickets@v3").column("label").to_pylist() == [2]


def test_commit_from_traces_links_each_trace(store: Store) -> None:
    trace = served(store, "Where is my parcel?", "It ships in two days.")
    set_schema(store, "traces:chat", LabelSchema("classes", ("good", "bad")))
    queue = create_queue(store, "t", "traces:chat")
    with pytest.raises(InputError, match="no item of queue 't' resolves"):
        commit_labels(store, queue, "chat-labels")
    record_label(store, queue, 0, "good")
    commit_labels(store, queue, "chat-labels")
    rows = load_version(store, "chat-labels@v1").to_pylist()
    assert rows == [{"id": trace, "prompt": "user: Where is my parcel?", "text": "It ships in two days.",
                     "label": "good", "label_annotators": [store.actor],
                     "label_votes": json.dumps({store.actor: "good"}, separators=(",", ":"))}]  # fmt: skip
    with store.db.read() as conn:
        upstream = {hit.node for hit in walk(conn, "dataset-version:chat-labels@v1", "upstream")}
    assert f"trace:{trace}" in upstream


def test_an_item_erased_from_its_source_is_no_longer_shown_exported_or_committed(store: Store, tmp_path: Path) -> None:
    from sqlalchemy import delete
    from tests.conftest import reopen

    from keel.label import export_labels, next_item
    from keel.store.schema import trace_contents

    first = served(store, "My email is ann@example.com", "Noted.")
    second = served(store, "Where is my parcel?", "It ships in two days.")
    set_schema(store, "traces:chat", LabelSchema("classes", ("good", "bad")))
    queue = create_queue(store, "t", "traces:chat")
    record_label(store, queue, 0, "good")
    with store.db.write() as conn:  # as a data-subject erasure removes a trace's content
        conn.execute(delete(trace_contents).where(trace_contents.c.trace_id == first))
    fresh = reopen(store)
    try:
        item = next_item(fresh, queue, "user:other")
        assert item is not None and item.item_id == second
        export_labels(fresh, queue, tmp_path / "ls.json", format="label-studio")
        assert "ann@example.com" not in (tmp_path / "ls.json").read_text()
        record_label(fresh, queue, 1, "bad")
        result = commit_labels(fresh, queue, "chat-labels")
        assert result.rows == 1 and result.left_out == {"erased": 1}
    finally:
        fresh.close()
