"""Commit a queue's labels as a new dataset version derived from its source, each row naming its annotators.

Rows are the source's rows (a dataset version's, with every column; or, for traces, `id` = trace id,
`prompt` and `text` = the answer) of the items that resolved to one label, plus:
- `label`: the resolved answer (a class, a list of classes, a list of `{start, end, label}` spans, an
  int rating or a text);
- `label_annotators`: who gave that answer (principals; a labelling function names itself `lf:NAME`);
- `label_votes`: canonical JSON of every annotator's answer, `{annotator: value}`.
`majority` keeps the answer more annotators gave than any other (a tie is left out and counted);
`annotator:X` keeps X's answers. Lineage: the source version (or each trace) → the new version,
and `label-queue:NAME` → the new version.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from keel.core.echo import shown
from keel.core.errors import InputError
from keel.core.ids import canonical_json
from keel.label._queue import Label, Queue, list_labels, present_items
from keel.store import Store

__all__ = ["LabelCommit", "commit_labels", "label_type", "resolve_labels"]

LABEL_COLUMNS = ("label", "label_annotators", "label_votes")


@dataclass(frozen=True, slots=True)
class LabelCommit:
    """What `commit_labels` committed and what it left out, and why."""

    version: str
    new: bool
    rows: int
    resolve: str
    left_out: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def label_type(queue: Queue) -> Any:
    """The Arrow type of the `label` column for the queue's schema."""
    import pyarrow as pa

    schema = queue.schema
    if schema.kind == "classes":
        return pa.list_(pa.string()) if schema.multi else pa.string()
    if schema.kind == "rating":
        return pa.int64()
    if schema.kind == "spans":
        return pa.list_(pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string())]))
    return pa.string()


def resolve_labels(
    labels: list[Label], resolve: str
) -> tuple[dict[int, tuple[Any, list[str], dict[str, Any]]], dict[str, int]]:
    """Each position's resolved (value, annotators who gave it, every vote), and counts of what was left out."""
    votes: dict[int, dict[str, Any]] = {}
    for label in labels:
        if label.status == "labelled":
            votes.setdefault(label.position, {})[label.annotator] = label.value
    chosen: dict[int, tuple[Any, list[str], dict[str, Any]]] = {}
    left_out: Counter[str] = Counter()
    who = resolve.removeprefix("annotator:") if resolve.startswith("annotator:") else None
    if resolve != "majority" and not who:
        raise InputError(f"expected --resolve majority or annotator:PRINCIPAL; got {shown(resolve)}")
    for position, given in sorted(votes.items()):
        if who is not None:
            if who not in given:
                left_out["not_labelled_by_annotator"] += 1
                continue
            chosen[position] = (given[who], [who], given)
            continue
        tally = Counter(canonical_json(v) for v in given.values()).most_common()
        if len(tally) > 1 and tally[0][1] == tally[1][1]:
            left_out["tie"] += 1
            continue
        winner = tally[0][0]
        names = sorted(a for a, v in given.items() if canonical_json(v) == winner)
        chosen[position] = (given[names[0]], names, given)
    return chosen, dict(left_out)


def commit_labels(
    store: Store, queue: Queue, to: str, *, resolve: str = "majority", message: str | None = None
) -> LabelCommit:
    """Commit the labelled items of `queue` as the next version of dataset `to`.

    Args:
        store: The workspace store.
        queue: The queue.
        to: The dataset to commit to (the source's own name makes the next version of it).
        resolve: `majority`, or `annotator:PRINCIPAL` to keep one annotator's answers.
        message: The version's message; one is written when omitted.

    Returns:
        The version, and how many items were left out and why (unlabelled, ties).

    Raises:
        InputError: An unknown resolution, or no item resolves to a label.
        PermissionDeniedError: The principal may not `dataset.commit` on `to`.

    Examples:
        >>> commit_labels(store, get_queue(store, "tickets-1"), "tickets", resolve="majority")  # doctest: +SKIP
    """
    import pyarrow as pa

    from keel.data import commit_version, load_version

    chosen, left_out = resolve_labels(list_labels(store, queue), resolve)
    unlabelled = queue.size - len(chosen) - sum(left_out.values())
    if unlabelled:
        left_out["unlabelled"] = unlabelled
    items = {item.position: item for item in present_items(store, queue) if item.position in chosen}
    if len(items) < len(chosen):  # erased from the source since they were labelled
        left_out["erased"] = len(chosen) - len(items)
        chosen = {p: v for p, v in chosen.items() if p in items}
    if not chosen:
        raise InputError(f"no item of queue {queue.name!r} resolves to a label ({left_out or 'none labelled'})",
                         hint="label items first (`keel label annotate`), or pick --resolve annotator:X")  # fmt: skip
    if queue.source.startswith("data:"):
        ref = queue.source.removeprefix("data:")
        table = load_version(store, ref)
        keep = {items[p].item_id: p for p in chosen}
        ids = table.column("id").to_pylist()
        rows = [i for i, record in enumerate(ids) if str(record) in keep]
        table = table.take(pa.array(rows, pa.int64()))
        table = table.drop_columns([c for c in LABEL_COLUMNS if c in table.column_names])
        order = [keep[str(ids[i])] for i in rows]
        parents, inputs = [ref], [f"label-queue:{queue.name}"]
    else:
        order = sorted(chosen)
        table = pa.table({"id": [items[p].item_id for p in order], "prompt": [items[p].prompt for p in order],
                          "text": [items[p].text for p in order]})  # fmt: skip
        parents, inputs = None, [f"label-queue:{queue.name}", *(f"trace:{items[p].item_id}" for p in order)]
    table = table.append_column("label", pa.array([chosen[p][0] for p in order], label_type(queue)))
    table = table.append_column("label_annotators", pa.array([chosen[p][1] for p in order], pa.list_(pa.string())))
    table = table.append_column("label_votes", pa.array([canonical_json(chosen[p][2]) for p in order], pa.string()))
    version, new = commit_version(
        store, to, table, parents=parents, inputs=inputs,
        message=message or f"{len(order)} items labelled in queue {queue.name} ({resolve})",
        producer={"command": "label commit", "queue": queue.name, "source": queue.source, "resolve": resolve},
    )  # fmt: skip
    with store.db.write() as conn:
        store.audit(conn, "label.commit", version.node, {"queue": queue.name, "rows": len(order), "resolve": resolve})
    return LabelCommit(version.ref, new, len(order), resolve, left_out)
