"""Label Studio and Argilla files: export a queue's items and labels, import the labels people made there.

Label Studio: a JSON list of tasks (`data` holds the item's `id`, `text` and, for traces, `prompt`), each
with `annotations[]` whose `result[]` entries have `from_name`/`to_name`/`type`/`value` (`choices`,
`labels` with `start`/`end`/`text`, `rating`, `textarea`), `completed_by` and `was_cancelled` for a skip.
Keel writes `completed_by` as `{"id": N, "email": PRINCIPAL}`; it reads an integer user id too (as
Label Studio writes it), as annotator `user:labelstudio-N`.

Argilla (v2, `Dataset.records.to_json`): a JSON list of records with `id`, `fields`, `metadata`,
`responses` (question → list of `{value, user_id, status}`), `suggestions` and `vectors`. Argilla's user
ids are UUIDs: Keel writes uuid5 of each annotator and lists the annotators in the record's metadata
(`keel_annotators`), so its own files map back; other users are read as `user:argilla-<uuid>`.
Items are matched by id, else by exact text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError
from keel.label._queue import Item, Label, Queue, list_labels, present_items, record_label, skip_item
from keel.label._schema import LabelSchema
from keel.store import Store

__all__ = ["FORMATS", "ImportReport", "export_labels", "import_labels", "label_studio_config"]

Format = Literal["label-studio", "argilla"]
FORMATS: tuple[str, ...] = ("label-studio", "argilla")
_PRINCIPAL = re.compile(r"(?:local|user):[A-Za-z0-9][A-Za-z0-9._@-]{0,127}|key:[0-9A-HJKMNP-TV-Z]{26}")
_QUESTION = "label"
_LS_TYPE = {"classes": "choices", "spans": "labels", "rating": "rating", "text": "textarea"}


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import stored and what it could not place."""

    queue: str
    format: str
    labels: int
    skips: int
    unmatched_items: int
    ignored: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _items_and_labels(store: Store, queue: Queue) -> tuple[list[Item], dict[int, list[Label]]]:
    items = present_items(store, queue)
    by_position: dict[int, list[Label]] = {}
    for label in list_labels(store, queue):
        by_position.setdefault(label.position, []).append(label)
    return items, by_position


def _result_id(item_id: str, annotator: str, n: int) -> str:
    return hashlib.sha256(f"{item_id}\0{annotator}\0{n}".encode()).hexdigest()[:10]


def _ls_results(schema: LabelSchema, value: Any, text: str, item_id: str, annotator: str) -> list[dict[str, Any]]:
    base = {"from_name": _QUESTION, "to_name": "text", "type": _LS_TYPE[schema.kind]}
    if schema.kind == "classes":
        choices = value if isinstance(value, list) else [value]
        return [{"id": _result_id(item_id, annotator, 0), **base, "value": {"choices": choices}}]
    if schema.kind == "rating":
        return [{"id": _result_id(item_id, annotator, 0), **base, "value": {"rating": value}}]
    if schema.kind == "text":
        return [{"id": _result_id(item_id, annotator, 0), **base, "value": {"text": [value]}}]
    return [{"id": _result_id(item_id, annotator, n), **base,
             "value": {"start": s["start"], "end": s["end"], "text": text[s["start"] : s["end"]],
                       "labels": [s["label"]]}}
            for n, s in enumerate(value)]  # fmt: skip


def _label_studio(queue: Queue, items: list[Item], by_position: dict[int, list[Label]]) -> list[dict[str, Any]]:
    users = sorted({label.annotator for labels in by_position.values() for label in labels})
    user_ids = {u: n for n, u in enumerate(users, start=1)}
    tasks, annotation_id = [], 0
    for item in items:
        data: dict[str, Any] = {"id": item.item_id, "text": item.text}
        if item.prompt is not None:
            data["prompt"] = item.prompt
        annotations = []
        for label in by_position.get(item.position, []):
            annotation_id += 1
            skipped = label.status == "skipped"
            annotations.append({
                "id": annotation_id,
                "completed_by": {"id": user_ids[label.annotator], "email": label.annotator},
                "result": [] if skipped else _ls_results(queue.schema, label.value, item.text, item.item_id,
                                                         label.annotator),
                "was_cancelled": skipped,
                "ground_truth": False,
                "created_at": format_time(label.at),
                "updated_at": format_time(label.at),
            })  # fmt: skip
        tasks.append({"id": item.position + 1, "data": data, "annotations": annotations, "predictions": []})
    return tasks


def _argilla_value(schema: LabelSchema, value: Any) -> Any:
    return [dict(s) for s in value] if schema.kind == "spans" else value


def _user_uuid(annotator: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"keel:{annotator}"))


def _argilla(queue: Queue, items: list[Item], by_position: dict[int, list[Label]]) -> list[dict[str, Any]]:
    records = []
    for item in items:
        fields = {"text": item.text}
        if item.prompt is not None:
            fields["prompt"] = item.prompt
        labels = by_position.get(item.position, [])
        responses = [{"value": None if lb.status == "skipped" else _argilla_value(queue.schema, lb.value),
                      "user_id": _user_uuid(lb.annotator),
                      "status": "discarded" if lb.status == "skipped" else "submitted"} for lb in labels]  # fmt: skip
        records.append({
            "id": item.item_id,
            "fields": fields,
            "metadata": {"keel_queue": queue.name, "keel_annotators": sorted({lb.annotator for lb in labels})},
            "suggestions": {},
            "responses": {_QUESTION: responses} if responses else {},
            "vectors": {},
            "_server_id": None,
        })  # fmt: skip
    return records


def export_labels(store: Store, queue: Queue, path: str | os.PathLike[str], *, format: Format) -> int:
    """Write every item of `queue` with its labels as a Label Studio or Argilla JSON file; returns the item count.

    Examples:
        >>> export_labels(store, queue, "tasks.json", format="label-studio")  # doctest: +SKIP
        120
    """
    if format not in FORMATS:
        raise InputError(f"expected a format among {list(FORMATS)}; got {shown(format)}")
    items, by_position = _items_and_labels(store, queue)
    document = (
        _label_studio(queue, items, by_position) if format == "label-studio" else _argilla(queue, items, by_position)
    )
    target = Path(path)
    staged = target.with_name(f".{target.name}.partial")
    staged.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    staged.replace(target)
    return len(items)


def label_studio_config(schema: LabelSchema) -> str:
    """The Label Studio labelling config (XML) whose `from_name`/`to_name` match Keel's export."""
    if schema.kind == "classes":
        choice = "multiple" if schema.multi else "single"
        options = "".join(f'\n    <Choice value="{c}"/>' for c in schema.classes)
        control = f'  <Choices name="label" toName="text" choice="{choice}">{options}\n  </Choices>'
    elif schema.kind == "spans":
        options = "".join(f'\n    <Label value="{c}"/>' for c in schema.classes)
        control = f'  <Labels name="label" toName="text">{options}\n  </Labels>'
    elif schema.kind == "rating":
        control = f'  <Rating name="label" toName="text" maxRating="{schema.scale}"/>'
    else:
        control = '  <TextArea name="label" toName="text"/>'
    return f'<View>\n  <Text name="text" value="$text"/>\n{control}\n</View>\n'


# --- import ----------------------------------------------------------------------------------


def _time(value: object, default: datetime) -> datetime:
    if not isinstance(value, str):
        return default
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return default
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _ls_annotator(completed_by: object) -> str:
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        if isinstance(email, str) and email:
            return email if _PRINCIPAL.fullmatch(email) else f"user:{email}"
        completed_by = completed_by.get("id")
    if isinstance(completed_by, int) and not isinstance(completed_by, bool):
        return f"user:labelstudio-{completed_by}"
    raise InputError(f"expected `completed_by` as a user id or {{id, email}}; got {completed_by!r:.60}")


def _ls_value(schema: LabelSchema, results: list[Any]) -> Any:
    wanted = _LS_TYPE[schema.kind]
    mine = [r for r in results if isinstance(r, dict) and r.get("type") == wanted and isinstance(r.get("value"), dict)]
    if schema.kind == "spans":
        return [{"start": r["value"].get("start"), "end": r["value"].get("end"), "label": label}
                for r in mine for label in r["value"].get("labels", [])]  # fmt: skip
    if not mine:
        raise InputError(f"expected a `{wanted}` result (the queue's schema is {schema.describe()}); got none")
    value = mine[0]["value"]
    if schema.kind == "classes":
        choices = [c for r in mine for c in r["value"].get("choices", [])]
        return choices if schema.multi else (choices[0] if len(choices) == 1 else choices)
    if schema.kind == "rating":
        return value.get("rating")
    text = value.get("text")
    return text[0] if isinstance(text, list) and len(text) == 1 else text


def _match(items: dict[str, int], texts: dict[str, int], item_id: object, text: object) -> int | None:
    if isinstance(item_id, str | int) and str(item_id) in items:
        return items[str(item_id)]
    return texts.get(text) if isinstance(text, str) else None


def _load_json_list(path: Path, what: str) -> list[Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"expected {path} to be a readable JSON file of {what}; {exc}") from None
    if isinstance(document, dict):  # one task or record on its own
        document = [document]
    if not isinstance(document, list):
        raise InputError(f"expected {path} to hold a JSON list of {what}; got {type(document).__name__}")
    return document


@dataclass
class _Answer:
    position: int
    annotator: str
    value: Any
    skipped: bool
    at: datetime


def _label_studio_answers(queue: Queue, tasks: list[Any], lookup: Any, report: dict[str, int]) -> Iterable[_Answer]:
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise InputError(f"expected Label Studio tasks with a `data` object; got {str(task)[:80]!r}")
        position = lookup(task["data"].get("id"), task["data"].get("text"))
        if position is None:
            report["unmatched"] += 1
            continue
        annotations = task.get("annotations", task.get("completions", []))  # `completions`: Label Studio < 1.0
        report["predictions"] += len(task.get("predictions") or [])
        for annotation in annotations or []:
            at = _time(annotation.get("updated_at") or annotation.get("created_at"), datetime.now(UTC))
            who = _ls_annotator(annotation.get("completed_by"))
            if annotation.get("was_cancelled"):
                yield _Answer(position, who, None, True, at)
            else:
                yield _Answer(position, who, _ls_value(queue.schema, annotation.get("result") or []), False, at)


def _argilla_answers(queue: Queue, records: list[Any], lookup: Any, report: dict[str, int]) -> Iterable[_Answer]:
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("fields"), dict):
            raise InputError(f"expected Argilla records with a `fields` object; got {str(record)[:80]!r}")
        position = lookup(record.get("id"), record["fields"].get("text"))
        if position is None:
            report["unmatched"] += 1
            continue
        metadata = record.get("metadata") or {}
        known = {_user_uuid(a): a for a in metadata.get("keel_annotators") or [] if isinstance(a, str)}
        report["suggestions"] += len(record.get("suggestions") or {})
        responses = record.get("responses") or {}
        if not isinstance(responses, dict):
            raise InputError(f"expected `responses` as question → list of responses; got {str(responses)[:80]!r}")
        for question, answers in responses.items():
            if len(responses) > 1 and question != _QUESTION:
                report["other_questions"] += len(answers)
                continue
            for answer in answers:
                status = answer.get("status") or "submitted"
                if status == "draft":
                    report["drafts"] += 1
                    continue
                user = str(answer.get("user_id"))
                who = known.get(user) or f"user:argilla-{user}"
                skipped = status == "discarded"
                yield _Answer(position, who, None if skipped else answer.get("value"), skipped, datetime.now(UTC))


def import_labels(store: Store, queue: Queue, path: str | os.PathLike[str], *, format: Format) -> ImportReport:
    """Store the labels of a Label Studio or Argilla JSON file on the matching items of `queue`.

    Each answer is validated against the queue's schema and stored under its annotator (replacing that
    annotator's earlier answer on the item); items of the file not in the queue are counted, not stored.

    Raises:
        InputError: Not a file of that format, or an answer the schema does not accept (nothing is stored
            for the file then: every answer is checked first).
        PermissionDeniedError: No `label.write` on the queue's source.
    """
    if format not in FORMATS:
        raise InputError(f"expected a format among {list(FORMATS)}; got {shown(format)}")
    source = Path(path)
    document = _load_json_list(source, "tasks" if format == "label-studio" else "records")
    items, _ = _items_and_labels(store, queue)
    ids = {item.item_id: item.position for item in items}
    at = {item.position: item for item in items}
    texts: dict[str, int] = {}
    for item in items:
        texts.setdefault(item.text, item.position)

    def lookup(item_id: object, text: object) -> int | None:
        return _match(ids, texts, item_id, text)

    counts = {"unmatched": 0, "predictions": 0, "suggestions": 0, "drafts": 0, "other_questions": 0}
    read = _label_studio_answers if format == "label-studio" else _argilla_answers
    answers = list(read(queue, document, lookup, counts))
    for answer in answers:  # every answer checked before any is stored
        if not answer.skipped:
            try:
                answer.value = queue.schema.parse(answer.value, at[answer.position].text)
            except InputError as exc:
                raise InputError(
                    f"{source}: item {at[answer.position].item_id!r} by {answer.annotator}: {exc}"
                ) from None
    for answer in answers:
        if answer.skipped:
            skip_item(store, queue, answer.position, annotator=answer.annotator, origin="import", at=answer.at)
        else:
            record_label(store, queue, answer.position, answer.value, annotator=answer.annotator, origin="import",
                         at=answer.at)  # fmt: skip
    skips = sum(a.skipped for a in answers)
    with store.db.write() as conn:
        store.audit(conn, "label.import", f"label-queue:{queue.name}",
                    {"format": format, "file": source.name, "answers": len(answers)})  # fmt: skip
    ignored = {k: v for k, v in counts.items() if k != "unmatched" and v}
    return ImportReport(queue.name, format, len(answers) - skips, skips, counts["unmatched"], ignored)
