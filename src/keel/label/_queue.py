"""Label queues: items of a dataset version or of a deployment's traces, in labelling order, and their labels.

A queue stores references (record ids, trace ids), never the text: the text is read from the version or
the trace when an item is shown, so an erasure reaches what annotators see. Each answer is written in its
own transaction the moment it is given (a killed session loses nothing answered); an annotator resumes at
the first item in order they have neither labelled nor skipped. With `annotators`, item i is assigned to
`overlap` of them in turn (round robin); without, anyone may label an item until `overlap` people have.
"""

from __future__ import annotations

import importlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select

from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import ConflictError, InputError, NotFoundError
from keel.core.ids import canonical_json
from keel.govern import PermissionDeniedError, require
from keel.label._schema import LabelSchema, get_schema, schema_resource
from keel.registry._refs import check_name
from keel.store import Store
from keel.store.schema import label_items, label_queues, labels, trace_contents, traces

__all__ = [
    "ORDERS",
    "Item",
    "Label",
    "Queue",
    "create_queue",
    "get_item",
    "get_queue",
    "list_labels",
    "list_queues",
    "next_item",
    "queue_progress",
    "record_label",
    "skip_item",
    "undo_last",
]

Order = Literal["sequential", "random", "uncertainty", "diversity"]
ORDERS: tuple[str, ...] = ("sequential", "random", "uncertainty", "diversity")
Origin = Literal["terminal", "cli", "console", "import"]
_TEXTS = "keel.label.texts"


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue of items to label: where they came from, the schema as it was, the order and who labels."""

    name: str
    source: str
    schema: LabelSchema
    field: str
    order: str
    seed: int
    annotators: tuple[str, ...]
    overlap: int
    size: int
    created_by: str
    created_at: datetime

    @property
    def resource(self) -> str:
        """The permission resource labelling it needs `label.write` on: `dataset:NAME` or `deployment:NAME`."""
        return schema_resource(source_name(self.source))

    def assigned(self, position: int, annotator: str) -> bool:
        """Whether the item at `position` is assigned to `annotator` (anyone's, when no annotators are named)."""
        if not self.annotators:
            return True
        n = len(self.annotators)
        return annotator in {self.annotators[(position + j) % n] for j in range(self.overlap)}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"name": self.name, "source": self.source, "schema": self.schema.to_json(), "field": self.field,
                "order": self.order, "seed": self.seed, "annotators": list(self.annotators), "overlap": self.overlap,
                "size": self.size, "created_by": self.created_by,
                "created_at": format_time(self.created_at)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Item:
    """One item to label: its place in the queue, its id in the source, and what annotators read."""

    position: int
    item_id: str
    text: str
    prompt: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"position": self.position, "item_id": self.item_id, "text": self.text, "prompt": self.prompt}


@dataclass(frozen=True, slots=True)
class Label:
    """One annotator's answer (or skip) on one item."""

    queue: str
    position: int
    item_id: str
    annotator: str
    status: str
    value: Any
    origin: str
    at: datetime
    id: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"queue": self.queue, "position": self.position, "item_id": self.item_id,
                "annotator": self.annotator, "status": self.status, "value": self.value, "origin": self.origin,
                "at": format_time(self.at)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a queue is: items, labels, and per annotator what is done and what is left."""

    queue: str
    items: int
    labelled_items: int
    complete_items: int
    labels: int
    skips: int
    annotators: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"queue": self.queue, "items": self.items, "labelled_items": self.labelled_items,
                "complete_items": self.complete_items, "labels": self.labels, "skips": self.skips,
                "annotators": self.annotators}  # fmt: skip


# --- sources ---------------------------------------------------------------------------------


def _flatten_request(request: dict[str, Any]) -> str:
    messages = request.get("messages")
    if isinstance(messages, list):
        parts = []
        for m in messages:
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            if isinstance(content, list):  # OpenAI content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(f"{m.get('role', 'user')}: {content if isinstance(content, str) else ''}")
        return "\n".join(parts)
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def _trace_items(store: Store, deployment: str, since: datetime | None, ids: Sequence[str] | None) -> list[Item]:
    """Traces of `deployment` with recorded content, oldest first (this floor reads the tables: monitor is above)."""
    query = (
        select(traces.c.id, trace_contents.c.request, trace_contents.c.response)
        .join(trace_contents, trace_contents.c.trace_id == traces.c.id)
        .where(traces.c.deployment == deployment)
        .order_by(traces.c.at, traces.c.id)
    )
    if since is not None:
        query = query.where(traces.c.at >= since)
    with store.db.read() as conn:
        rows = conn.execute(query).all() if ids is None else _rows_by_id(conn, query, list(ids))
    return [Item(-1, r.id, r.response or "", _flatten_request(json.loads(r.request))) for r in rows]


def _rows_by_id(conn: Any, query: Any, ids: list[str]) -> list[Any]:
    rows = []
    for start in range(0, len(ids), 500):  # bounded IN lists
        rows += conn.execute(query.where(traces.c.id.in_(ids[start : start + 500]))).all()
    return rows


def _data_items(store: Store, ref: str, text_field: str) -> tuple[str, list[Item]]:
    """The resolved `NAME@vN` and its rows as items (record id, text), in the version's order."""
    from keel.data import get_version, load_version

    version = get_version(store, ref)
    names = version.schema.names
    if "id" not in names or text_field not in names:
        raise InputError(
            f"expected columns 'id' and {text_field!r} in {version.ref}; found {names}",
            hint="choose the column to label with --field",
        )
    table = load_version(store, version, columns=["id", text_field])
    ids, texts = table.column("id").to_pylist(), table.column(text_field).to_pylist()
    items = [Item(-1, str(i), t if isinstance(t, str) else json.dumps(t)) for i, t in zip(ids, texts, strict=True)]
    return version.ref, items


def _source_items(store: Store, source: str, text_field: str, since: datetime | None) -> tuple[str, list[Item]]:
    if source.startswith("data:"):
        return _data_items(store, source.removeprefix("data:"), text_field)
    if source.startswith("traces:"):
        deployment = check_name(source.removeprefix("traces:"), "deployment")
        return source, _trace_items(store, deployment, since, None)
    raise InputError(f"expected a source data:NAME@vN or traces:DEPLOYMENT; got {shown(source)}")


def _contents(store: Store, queue: Queue) -> dict[str, Item]:
    """Every item's content by item id, read once per store (versions are immutable)."""
    key = f"{_TEXTS}:{queue.source}:{queue.field}"
    cached: dict[str, Item] | None = store.extensions.get(key)
    if cached is None:
        if queue.source.startswith("traces:"):
            with store.db.read() as conn:
                ids = list(conn.scalars(select(label_items.c.item_id).where(label_items.c.queue == queue.name)))
            found = _trace_items(store, queue.source.removeprefix("traces:"), None, ids)
        else:
            found = _source_items(store, queue.source, queue.field, None)[1]
        cached = store.extensions[key] = {item.item_id: item for item in found}
    return cached


# --- queues ----------------------------------------------------------------------------------


def _ordered(items: list[Item], order: str, seed: int) -> list[Item]:
    if order == "sequential":
        return items
    if order == "random":
        shuffled = list(items)
        random.Random(seed).shuffle(shuffled)
        return shuffled
    if order not in ORDERS:
        raise InputError(f"expected an order among {list(ORDERS)}; got {shown(order)}")
    try:  # the weak-supervision side provides it; imported by name so this module stands without it
        rank = importlib.import_module("keel.label.active").rank
    except ModuleNotFoundError as exc:
        if exc.name != "keel.label.active":
            raise
        raise InputError(
            f"ordering {order} needs keel.label.active, which this installation does not have",
            hint="use --order sequential or random",
        ) from None
    ranked = [int(i) for i in rank([item.text for item in items], strategy=order, labelled=None, seed=seed)]
    if sorted(ranked) != list(range(len(items))):
        raise ConflictError(f"keel.label.active.rank({order!r}) returned {len(ranked)} indices, not a permutation "
                            f"of the {len(items)} items")  # fmt: skip
    return [items[i] for i in ranked]


def create_queue(
    store: Store,
    name: str,
    source: str,
    *,
    order: str = "sequential",
    seed: int = 0,
    annotators: Sequence[str] = (),
    overlap: int = 1,
    text_field: str = "text",
    since: datetime | None = None,
    limit: int | None = None,
    schema: str | None = None,
) -> Queue:
    """Make a queue of the items of `source` to label, in the given order.

    Args:
        store: The workspace store.
        name: The queue's name.
        source: `data:NAME@vN` (a dataset version; `data:NAME` is its latest) or `traces:DEPLOYMENT`.
        order: `sequential`, `random` (by `seed`), `uncertainty` or `diversity` (`keel.label.active.rank`).
        seed: The seed of random and active orders.
        annotators: Principals the items are assigned to (round robin, `overlap` each); empty: anyone.
        overlap: How many annotators label each item (2 or more to measure agreement).
        text_field: The column annotators read, for dataset sources.
        since: Only traces served at or after this time.
        limit: Keep the first `limit` items of the order.
        schema: The label schema's name; by default the source dataset's (or `traces:DEPLOYMENT`).

    Returns:
        The queue.

    Raises:
        InputError: A malformed name, source, order or assignment; no items; no schema (NotFoundError).
        ConflictError: A queue of that name exists.
        PermissionDeniedError: The principal may not `label.write` on the source's dataset or deployment.

    Examples:
        >>> create_queue(store, "tickets-1", "data:tickets@v1", order="random", overlap=2)  # doctest: +SKIP
    """
    check_name(name, "queue")
    if order not in ORDERS:
        raise InputError(f"expected an order among {list(ORDERS)}; got {shown(order)}")
    if annotators and len(set(annotators)) != len(annotators):
        raise InputError(f"expected distinct annotators; got {list(annotators)}")
    if overlap < 1 or (annotators and overlap > len(annotators)):
        most = f"at most the {len(annotators)} annotators named" if annotators else "at least 1"
        raise InputError(f"expected an overlap of 1 to {len(annotators) or 'any'} ({most}); got {overlap}")
    ref, items = _source_items(store, source, text_field, since)
    source = ref if ref.startswith("traces:") else f"data:{ref}"
    schema_name = schema or (source if source.startswith("traces:") else ref.split("@", 1)[0])
    label_schema = get_schema(store, schema_name)
    require(store, "label.write", schema_resource(source_name(source)))
    if not items:
        raise InputError(f"no items to label in {source}" + (" since then" if since else ""),
                         hint="traces need their deployment to record content (`keel deploy configure`)")  # fmt: skip
    ordered = _ordered(items, order, seed)[:limit]
    spec = {"schema": label_schema.to_json(), "schema_name": schema_name, "field": text_field, "order": order,
            "seed": seed, "annotators": list(annotators), "overlap": overlap,
            "since": since.isoformat() if since else None}  # fmt: skip
    now = store.clock()
    with store.db.write() as conn:
        if conn.scalar(select(label_queues.c.name).where(label_queues.c.name == name)) is not None:
            raise ConflictError(f"a label queue named {name!r} exists", hint="choose another name")
        conn.execute(label_queues.insert().values(name=name, source=source, spec=canonical_json(spec),
                                                  created_by=store.actor, created_at=now))  # fmt: skip
        conn.execute(label_items.insert(), [{"queue": name, "position": p, "item_id": item.item_id}
                                            for p, item in enumerate(ordered)])  # fmt: skip
        store.audit(conn, "label.queue.create", f"label-queue:{name}", {"source": source, "items": len(ordered),
                                                                         "order": order})  # fmt: skip
    return get_queue(store, name)


def source_name(source: str) -> str:
    """The dataset name (or `traces:DEPLOYMENT`) of a queue source."""
    return source if source.startswith("traces:") else source.removeprefix("data:").split("@", 1)[0]


def _queue_from_row(row: Any, size: int) -> Queue:
    spec = json.loads(row.spec)
    return Queue(name=row.name, source=row.source, schema=LabelSchema.from_json(spec["schema"]), field=spec["field"],
                 order=spec["order"], seed=int(spec["seed"]), annotators=tuple(spec["annotators"]),
                 overlap=int(spec["overlap"]), size=size, created_by=row.created_by,
                 created_at=row.created_at)  # fmt: skip


def get_queue(store: Store, name: str) -> Queue:
    """The queue `name`.

    Raises:
        NotFoundError: No such queue; the message says how to list them.
    """
    with store.db.read() as conn:
        row = conn.execute(select(label_queues).where(label_queues.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no label queue named {name!r}", hint="list them with `keel label queue list`")
        size = conn.scalar(select(func.count()).select_from(label_items).where(label_items.c.queue == name))
    return _queue_from_row(row, int(size or 0))


def list_queues(store: Store) -> list[Queue]:
    """Every queue, by name."""
    with store.db.read() as conn:
        sizes: dict[str, int] = dict(
            conn.execute(select(label_items.c.queue, func.count()).group_by(label_items.c.queue)).all()
        )
        rows = conn.execute(select(label_queues).order_by(label_queues.c.name)).all()
    return [_queue_from_row(row, int(sizes.get(row.name, 0))) for row in rows]


def _item_ids(store: Store, queue: str) -> list[str]:
    with store.db.read() as conn:
        query = select(label_items.c.item_id).where(label_items.c.queue == queue).order_by(label_items.c.position)
        return list(conn.scalars(query))


def get_item(store: Store, queue: Queue, position: int) -> Item:
    """The item at `position`, with its text read from the source.

    Raises:
        NotFoundError: No such position, or the source no longer holds the item (erased).
    """
    with store.db.read() as conn:
        item_id = conn.scalar(
            select(label_items.c.item_id).where(label_items.c.queue == queue.name, label_items.c.position == position)
        )
    if item_id is None:
        raise NotFoundError(f"queue {queue.name!r} has no item at position {position} (it has {queue.size})")
    content = _contents(store, queue).get(item_id)
    if content is None:
        raise NotFoundError(f"item {item_id!r} of queue {queue.name!r} is no longer in {queue.source} (erased?)")
    return Item(position, item_id, content.text, content.prompt)


def present_items(store: Store, queue: Queue) -> list[Item]:
    """The queue's items in order, without those its source no longer holds (erased since the queue was made)."""
    contents = _contents(store, queue)
    found = []
    for position, item_id in enumerate(_item_ids(store, queue.name)):
        content = contents.get(item_id)
        if content is not None:
            found.append(Item(position, item_id, content.text, content.prompt))
    return found


def position_of(store: Store, queue: Queue, item_id: str) -> int:
    """The position of the item with id `item_id` in `queue`."""
    with store.db.read() as conn:
        position = conn.scalar(
            select(label_items.c.position).where(label_items.c.queue == queue.name, label_items.c.item_id == item_id)
        )
    if position is None:
        raise NotFoundError(
            f"queue {queue.name!r} has no item {item_id!r}", hint="ids are the records' (or traces') ids"
        )
    return int(position)


def _answers(store: Store, queue: str) -> list[Any]:
    with store.db.read() as conn:
        query = select(labels.c.position, labels.c.annotator, labels.c.status).where(labels.c.queue == queue)
        return list(conn.execute(query).all())


def next_item(store: Store, queue: Queue, annotator: str | None = None) -> Item | None:
    """The first item in order assigned to `annotator` that they have neither labelled nor skipped, if any.

    Without named annotators an item is offered until `overlap` people have labelled it.
    """
    who = annotator or store.actor
    mine: set[int] = set()
    labelled: dict[int, int] = {}
    for row in _answers(store, queue.name):
        if row.annotator == who:
            mine.add(row.position)
        elif row.status == "labelled":
            labelled[row.position] = labelled.get(row.position, 0) + 1
    for position in range(queue.size):
        if position in mine or not queue.assigned(position, who):
            continue
        if not queue.annotators and labelled.get(position, 0) >= queue.overlap:
            continue
        try:
            return get_item(store, queue, position)
        except NotFoundError:  # erased from the source since the queue was made: nothing to show
            continue
    return None


def _check_annotator(store: Store, queue: Queue, position: int, who: str) -> None:
    require(store, "label.write", queue.resource)
    if queue.annotators and not queue.assigned(position, who):
        raise PermissionDeniedError(
            f"{who} is not assigned item {position} of queue {queue.name!r} (assigned: {list(queue.annotators)})",
            hint="label the items `keel label annotate` offers you",
        )


def _write(store: Store, queue: Queue, position: int, who: str, status: str, value: Any, origin: str,
           at: datetime | None) -> Label:  # fmt: skip
    item_id = _item_ids_at(store, queue.name, position)
    moment = at or store.clock()
    row = {"queue": queue.name, "position": position, "annotator": who, "status": status,
           "value": None if value is None else canonical_json(value), "origin": origin, "at": moment}  # fmt: skip
    with store.db.write() as conn:  # one transaction per answer: an answer given is an answer kept
        conn.execute(delete(labels).where(labels.c.queue == queue.name, labels.c.position == position,
                                          labels.c.annotator == who))  # fmt: skip
        new_id = conn.execute(labels.insert().values(**row)).inserted_primary_key
    return Label(queue.name, position, item_id, who, status, value, origin, moment, int(new_id[0]) if new_id else 0)


def _item_ids_at(store: Store, queue: str, position: int) -> str:
    with store.db.read() as conn:
        item_id = conn.scalar(
            select(label_items.c.item_id).where(label_items.c.queue == queue, label_items.c.position == position)
        )
    if item_id is None:
        raise NotFoundError(f"queue {queue!r} has no item at position {position}")
    return str(item_id)


def record_label(
    store: Store,
    queue: Queue,
    position: int,
    answer: object,
    *,
    annotator: str | None = None,
    origin: Origin = "cli",
    at: datetime | None = None,
) -> Label:
    """Store an annotator's answer on the item at `position` at once (replacing their earlier one).

    Args:
        store: The workspace store.
        queue: The queue.
        position: The item's position.
        answer: The answer, as `LabelSchema.parse` accepts it.
        annotator: Who answered; the acting principal by default (imports name others).
        origin: Where it was given: terminal, cli, console or import.
        at: When it was given (imports keep the file's time); now by default.

    Returns:
        The stored label.

    Raises:
        InputError: An answer the queue's schema does not accept.
        PermissionDeniedError: No `label.write` on the source, or the item is assigned to others.
    """
    who = annotator or store.actor
    if origin != "import":
        _check_annotator(store, queue, position, who)
    else:
        require(store, "label.write", queue.resource)
    text = get_item(store, queue, position).text if queue.schema.kind == "spans" else None
    value = queue.schema.parse(answer, text)
    return _write(store, queue, position, who, "labelled", value, origin, at)


def skip_item(
    store: Store, queue: Queue, position: int, *, annotator: str | None = None, origin: Origin = "cli",
    at: datetime | None = None,
) -> Label:  # fmt: skip
    """Record that an annotator skipped the item at `position` (it is not offered to them again)."""
    who = annotator or store.actor
    if origin != "import":
        _check_annotator(store, queue, position, who)
    else:
        require(store, "label.write", queue.resource)
    return _write(store, queue, position, who, "skipped", None, origin, at)


def _label_from_row(row: Any, item_id: str) -> Label:
    value = None if row.value is None else json.loads(row.value)
    return Label(row.queue, row.position, item_id, row.annotator, row.status, value, row.origin, row.at, row.id)


def undo_last(store: Store, queue: Queue, annotator: str | None = None) -> Label | None:
    """Remove the annotator's latest answer (or skip) in `queue`, so that item is offered again; None if none."""
    who = annotator or store.actor
    require(store, "label.write", queue.resource)
    with store.db.write() as conn:
        row = conn.execute(
            select(labels).where(labels.c.queue == queue.name, labels.c.annotator == who).order_by(labels.c.id.desc())
        ).first()
        if row is None:
            return None
        conn.execute(delete(labels).where(labels.c.id == row.id))
    return _label_from_row(row, _item_ids_at(store, queue.name, row.position))


def list_labels(store: Store, queue: Queue, *, annotator: str | None = None) -> list[Label]:
    """Every answer in `queue` (optionally one annotator's), by position then annotator."""
    query = (
        select(labels, label_items.c.item_id)
        .join(label_items, (label_items.c.queue == labels.c.queue) & (label_items.c.position == labels.c.position))
        .where(labels.c.queue == queue.name)
        .order_by(labels.c.position, labels.c.annotator)
    )
    if annotator is not None:
        query = query.where(labels.c.annotator == annotator)
    with store.db.read() as conn:
        return [_label_from_row(row, row.item_id) for row in conn.execute(query)]


def queue_progress(store: Store, queue: Queue) -> Progress:
    """Items, labels and skips of `queue`, and per annotator how many they labelled, skipped and have left."""
    answers = _answers(store, queue.name)
    per_item: dict[int, int] = {}
    people: dict[str, dict[str, int]] = {a: {"labelled": 0, "skipped": 0} for a in queue.annotators}
    for row in answers:
        counts = people.setdefault(row.annotator, {"labelled": 0, "skipped": 0})
        counts[row.status] = counts.get(row.status, 0) + 1
        if row.status == "labelled":
            per_item[row.position] = per_item.get(row.position, 0) + 1
    for who, counts in people.items():
        assigned = sum(queue.assigned(p, who) for p in range(queue.size)) if queue.annotators else queue.size
        counts["left"] = max(0, assigned - counts["labelled"] - counts["skipped"])
    done = sum(1 for n in per_item.values() if n >= queue.overlap)
    return Progress(queue.name, queue.size, len(per_item), done, sum(per_item.values()),
                    sum(1 for r in answers if r.status == "skipped"), dict(sorted(people.items())))  # fmt: skip
