"""Schemas, queues from dataset versions and traces, ordering, assignment, resume/skip/undo, permissions."""

from __future__ import annotations

import sys
import types
from dataclasses import replace
from typing import Any

import pytest
from tests.unit.label.conftest import TICKETS, served

from keel.core.errors import ConflictError, InputError, NotFoundError
from keel.data import DatasetVersion
from keel.govern import PermissionDeniedError
from keel.label import (
    LabelSchema,
    agreement,
    create_queue,
    get_queue,
    get_schema,
    list_labels,
    next_item,
    queue_progress,
    record_label,
    set_schema,
    skip_item,
    undo_last,
)
from keel.store import Store, events


def test_schema_parses_each_kind_to_one_canonical_value() -> None:
    classes = LabelSchema("classes", ("billing", "bug", "other"))
    assert classes.parse("bug") == classes.parse("2") == "bug"
    multi = LabelSchema("classes", ("billing", "bug", "other"), multi=True)
    assert multi.parse("other, 1") == ["billing", "other"]
    assert LabelSchema("rating", scale=5).parse("5") == 5
    spans = LabelSchema("spans", ("PER", "ORG"))
    text = "Ann works at Acme and Ann likes it"
    assert spans.parse("ORG=Acme; PER=Ann; PER=Ann", text) == [
        {"start": 0, "end": 3, "label": "PER"},
        {"start": 13, "end": 17, "label": "ORG"},
        {"start": 22, "end": 25, "label": "PER"},
    ]
    assert spans.parse("PER:0-3", text) == spans.parse('[{"start": 0, "end": 3, "label": "PER"}]', text)
    assert spans.parse("-", text) == []
    for schema, bad in [(classes, "refund"), (multi, ""), (LabelSchema("rating", scale=5), "6"),
                        (spans, "LOC=Ann"), (LabelSchema("text"), "  ")]:  # fmt: skip
        with pytest.raises(InputError, match="expected"):
            schema.parse(bad, text)
    with pytest.raises(InputError, match="inside the item"):
        spans.parse("PER:30-40", text)
    with pytest.raises(InputError, match="exactly|at least two"):
        LabelSchema("classes", ("only",))


def test_schema_is_stored_per_dataset_and_audited(store: Store) -> None:
    with pytest.raises(NotFoundError, match="keel label schema set tickets"):
        get_schema(store, "tickets")
    set_schema(store, "tickets", LabelSchema("rating", scale=5))
    set_schema(store, "tickets", LabelSchema("spans", ("PER", "ORG")))
    set_schema(store, "traces:chat", LabelSchema("text"))
    assert get_schema(store, "tickets") == LabelSchema("spans", ("PER", "ORG"))
    assert get_schema(store, "traces:chat").kind == "text"
    with store.db.read() as conn:
        assert [e.action for e in events(conn, action="label.schema.set")] == ["label.schema.set"] * 3


def test_sequential_and_seeded_random_orders(store: Store, tickets: DatasetVersion) -> None:
    seq = create_queue(store, "seq", "data:tickets")
    assert seq.source == "data:tickets@v1" and seq.size == 8
    assert next_item(store, seq) is not None and next_item(store, seq).text == TICKETS[0]  # type: ignore[union-attr]
    one = create_queue(store, "r1", "data:tickets@v1", order="random", seed=5)
    two = create_queue(store, "r2", "data:tickets@v1", order="random", seed=5)
    other = create_queue(store, "r3", "data:tickets@v1", order="random", seed=6, limit=3)
    first = [queue_item_ids(store, one)]
    assert first == [queue_item_ids(store, two)] and sorted(first[0]) == [f"t{i}" for i in range(8)]
    assert first[0] != [f"t{i}" for i in range(8)] and other.size == 3
    with pytest.raises(ConflictError, match="exists"):
        create_queue(store, "seq", "data:tickets")
    with pytest.raises(InputError, match="expected columns 'id' and 'body'"):
        create_queue(store, "x", "data:tickets", text_field="body")


def queue_item_ids(store: Store, queue: Any) -> list[str]:
    from keel.label import get_item

    return [get_item(store, queue, p).item_id for p in range(queue.size)]


def test_active_orders_call_keel_label_active_rank_or_say_it_is_missing(
    store: Store, tickets: DatasetVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "keel.label.active", None)  # as in a branch without the module
    with pytest.raises(InputError, match="ordering uncertainty needs keel.label.active"):
        create_queue(store, "u", "data:tickets", order="uncertainty")
    seen: dict[str, Any] = {}

    def rank(texts: list[str], *, strategy: str, labelled: dict[int, str] | None = None, seed: int = 0) -> list[int]:
        seen.update(texts=texts, strategy=strategy, seed=seed)
        return list(reversed(range(len(texts))))

    monkeypatch.setitem(sys.modules, "keel.label.active", types.SimpleNamespace(rank=rank))
    queue = create_queue(store, "d", "data:tickets", order="diversity", seed=9)
    assert seen == {"texts": TICKETS, "strategy": "diversity", "seed": 9}
    assert queue_item_ids(store, queue) == [f"t{i}" for i in reversed(range(8))]
    monkeypatch.setitem(sys.modules, "keel.label.active", types.SimpleNamespace(rank=lambda texts, **kw: [0, 0]))
    with pytest.raises(ConflictError, match="not a permutation"):
        create_queue(store, "bad", "data:tickets", order="diversity")


def test_resume_skip_and_undo(store: Store, tickets: DatasetVersion) -> None:
    queue = create_queue(store, "q", "data:tickets")
    record_label(store, queue, 0, "billing")
    skip_item(store, queue, 1)
    record_label(store, queue, 2, "3")
    item = next_item(store, queue)
    assert item is not None and item.position == 3  # resumes after the labelled and skipped ones
    undone = undo_last(store, queue)
    assert undone is not None and (undone.position, undone.value) == (2, "other")
    assert next_item(store, queue).position == 2  # type: ignore[union-attr]
    record_label(store, queue, 0, "bug")  # a new answer replaces the annotator's earlier one
    stored = list_labels(store, queue)
    assert [(lb.position, lb.status, lb.value) for lb in stored] == [(0, "labelled", "bug"), (1, "skipped", None)]
    progress = queue_progress(store, queue)
    assert (progress.labelled_items, progress.skips, progress.annotators[store.actor]["left"]) == (1, 1, 6)


def test_round_robin_assignment_with_overlap_and_agreement(store: Store, tickets: DatasetVersion) -> None:
    people = ("user:ann", "user:bob", "user:cy")
    queue = create_queue(store, "trio", "data:tickets", annotators=people, overlap=2)
    assert [p for p in range(8) if queue.assigned(p, "user:ann")] == [0, 2, 3, 5, 6]
    with pytest.raises(PermissionDeniedError, match="not assigned item 1"):
        record_label(store, queue, 1, "bug", annotator="user:ann")
    answers = {"user:ann": "billing", "user:bob": "billing", "user:cy": "bug"}
    for who in people:
        while (item := next_item(store, queue, who)) is not None:
            record_label(store, queue, item.position, answers[who] if item.position % 2 else "other", annotator=who)
    progress = queue_progress(store, queue)
    assert progress.complete_items == 8 and progress.labels == 16
    report = agreement(store, queue)
    assert report.fleiss_kappa is not None and report.fleiss_kappa["raters"] == 2
    assert {(p["a"], p["b"]) for p in report.pairwise} == {("user:ann", "user:bob"), ("user:ann", "user:cy"),
                                                           ("user:bob", "user:cy")}  # fmt: skip
    assert report.confusion is not None and report.confusion["kind"] == "coincidence"
    with pytest.raises(InputError, match="overlap"):
        create_queue(store, "bad", "data:tickets", annotators=("user:a",), overlap=2)


def test_open_queue_offers_an_item_until_overlap_people_labelled_it(store: Store, tickets: DatasetVersion) -> None:
    queue = create_queue(store, "open", "data:tickets", overlap=2, limit=2)
    for who in ("user:a", "user:b"):
        record_label(store, queue, 0, "bug", annotator=who)
    assert next_item(store, queue, "user:c").position == 1  # type: ignore[union-attr]
    record_label(store, queue, 1, "bug", annotator="user:a")
    record_label(store, queue, 1, "billing", annotator="user:b")
    assert next_item(store, queue, "user:c") is None
    report = agreement(store, queue)
    assert report.cohen_kappa is not None and report.confusion["matrix"] == [[0, 0], [1, 1]]  # type: ignore[index]


def test_queue_from_traces_shows_prompt_and_answer(store: Store) -> None:
    first = served(store, "Where is my parcel?", "It ships in two days.")
    served(store, "Other deployment", "ignored", deployment="other")
    second = served(store, "Can I return it?", "Yes, within 30 days.")
    with pytest.raises(NotFoundError, match="traces:chat"):
        create_queue(store, "t", "traces:chat")
    set_schema(store, "traces:chat", LabelSchema("rating", scale=5))
    queue = create_queue(store, "t", "traces:chat")
    item = next_item(store, queue)
    assert item is not None and (item.item_id, item.text) == (first, "It ships in two days.")
    assert item.prompt == "user: Where is my parcel?"
    record_label(store, queue, 0, 4)
    assert next_item(store, queue).item_id == second  # type: ignore[union-attr]
    with pytest.raises(InputError, match="no items"):
        create_queue(store, "none", "traces:chat", since=store.clock().replace(year=2100))


def test_labelling_needs_label_write(store: Store, tickets: DatasetVersion) -> None:
    from keel.govern import create_key, grant

    queue = create_queue(store, "perm", "data:tickets")
    viewer = create_key(store, "viewer")
    grant(store, f"key:{viewer.key.id}", "viewer")
    as_viewer = replace(store, principal=f"key:{viewer.key.id}")
    with pytest.raises(PermissionDeniedError, match="label.write on dataset:tickets"):
        record_label(as_viewer, get_queue(as_viewer, "perm"), 0, "bug")
    with pytest.raises(PermissionDeniedError, match="label.write on dataset:tickets"):
        set_schema(as_viewer, "tickets", LabelSchema("text"))
    record_label(store, queue, 0, "bug")  # the granter is admin
    assert len(list_labels(store, queue)) == 1
