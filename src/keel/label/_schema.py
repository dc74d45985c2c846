"""Label schemas: what annotators answer about the items of a dataset (or of a deployment's traces).

A schema is one question of one kind: `classes` (one class, or several with `multi`), `spans`
(character offsets into the item's text, each with a class), `rating` (1..scale) or `text`.
`LabelSchema.parse` is the one place an answer from any face (terminal keys, `keel label add`,
the console, an imported file) becomes the canonical value stored and committed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select

from keel.core.echo import shown
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json
from keel.govern import require
from keel.registry._refs import check_name
from keel.store import Store
from keel.store.schema import label_schemas

__all__ = ["KINDS", "LabelSchema", "get_schema", "list_schemas", "schema_resource", "set_schema"]

Kind = Literal["classes", "spans", "rating", "text"]
KINDS: tuple[str, ...] = ("classes", "spans", "rating", "text")
TEXT_LIMIT = 10_000
_CLASS = re.compile(r"[^\s,:=;][^,:=;]{0,62}[^\s,:=;]|[^\s,:=;]")
_SPAN = re.compile(r"(?P<label>[^\s:=]+)\s*(?::\s*(?P<start>\d+)\s*-\s*(?P<end>\d+)|=\s*(?P<quote>.+))")
KEYS = "1234567890"


@dataclass(frozen=True, slots=True)
class LabelSchema:
    """One question annotators answer about each item.

    Examples:
        >>> LabelSchema("classes", ("pos", "neg")).parse("neg")
        'neg'
        >>> LabelSchema("rating", scale=5).parse("4")
        4
    """

    kind: Kind
    classes: tuple[str, ...] = ()
    multi: bool = False
    scale: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"expected a label kind among {list(KINDS)}; got {self.kind!r}")
        if self.kind in ("classes", "spans"):
            if len(self.classes) < (2 if self.kind == "classes" else 1):
                need = "two classes" if self.kind == "classes" else "one span class"
                raise InputError(f"expected at least {need}; got {list(self.classes)}", hint="e.g. --classes a,b")
            bad = [c for c in self.classes if not _CLASS.fullmatch(c)]
            if bad:
                raise InputError(
                    f"expected class names of 1-64 characters without ',', ':', '=' or ';' and no edge spaces; "
                    f"got {bad[:3]}"
                )
            if len(set(self.classes)) != len(self.classes):
                raise InputError(f"expected distinct class names; got {list(self.classes)}")
        if self.kind == "rating" and not 2 <= self.scale <= 100:
            raise InputError(f"expected a rating scale from 2 to 100; got {self.scale}", hint="e.g. --rating 5")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (also the stored spec, with `kind`)."""
        return {"kind": self.kind, "classes": list(self.classes), "multi": self.multi, "scale": self.scale}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelSchema:
        """The schema `to_json` wrote."""
        return cls(data["kind"], tuple(data.get("classes", ())), bool(data.get("multi")), int(data.get("scale", 0)))

    def describe(self) -> str:
        """One line such as `classes (single): a, b` or `rating 1-5`."""
        if self.kind == "classes":
            return f"classes ({'multi' if self.multi else 'single'}): {', '.join(self.classes)}"
        if self.kind == "spans":
            return f"spans: {', '.join(self.classes)}"
        return f"rating 1-{self.scale}" if self.kind == "rating" else "free text"

    def keys(self) -> dict[str, str]:
        """The terminal's answer keys: `1`…`9`, `0` for the first ten classes or ratings."""
        if self.kind == "classes":
            return dict(zip(KEYS, self.classes, strict=False))
        if self.kind == "rating" and self.scale <= 9:
            return {str(r): str(r) for r in range(1, self.scale + 1)}
        return {}

    def parse(self, answer: object, text: str | None = None) -> Any:
        """The canonical value of an answer, or InputError saying what this schema accepts.

        Args:
            answer: A class name (or its key), names separated by commas for multi-label classes, a rating,
                free text, or spans as a list of `{start, end, label}` or text `LABEL:START-END; LABEL=quoted text`.
            text: The item's text: span offsets are checked against it and `LABEL=quoted text` found in it.

        Returns:
            A class name; a list of class names in schema order; a list of spans sorted by offset; an int; a str.
        """
        if self.kind == "classes":
            return self._parse_classes(answer)
        if self.kind == "rating":
            return self._parse_rating(answer)
        if self.kind == "spans":
            return self._parse_spans(answer, text)
        if not isinstance(answer, str) or not answer.strip() or len(answer) > TEXT_LIMIT:
            raise InputError(f"expected a non-empty text of at most {TEXT_LIMIT} characters; got {answer!r:.60}")
        return answer

    def _class_of(self, token: str) -> str:
        token = token.strip()
        if token in self.classes:
            return token
        keyed = self.keys().get(token)
        if keyed is not None:
            return keyed
        keys = "".join(self.keys())
        raise InputError(f"expected one of the classes {list(self.classes)} (or a key of {keys}); got {token!r:.60}")

    def _parse_classes(self, answer: object) -> str | list[str]:
        tokens: list[str]
        if isinstance(answer, str):
            tokens = [t for t in re.split(r"[,\s]+", answer.strip()) if t] if self.multi else [answer]
        elif isinstance(answer, list | tuple) and all(isinstance(t, str) for t in answer):
            tokens = list(answer)
        else:
            raise InputError(f"expected a class name (or a list of them); got {answer!r:.60}")
        chosen = {self._class_of(t) for t in tokens}
        if not self.multi:
            if len(tokens) != 1:
                raise InputError(f"expected one class (the schema is single-label); got {tokens}")
            return chosen.pop()
        if not chosen:
            raise InputError(f"expected at least one of the classes {list(self.classes)}; got none")
        return [c for c in self.classes if c in chosen]

    def _parse_rating(self, answer: object) -> int:
        value: object = answer
        if isinstance(answer, str) and answer.strip().isdigit():
            value = int(answer.strip())
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self.scale:
            raise InputError(f"expected a rating from 1 to {self.scale}; got {answer!r:.60}")
        return value

    def _parse_spans(self, answer: object, text: str | None) -> list[dict[str, Any]]:
        if isinstance(answer, str):
            stripped = answer.strip()
            if stripped.startswith("["):
                try:
                    answer = json.loads(stripped)
                except ValueError:
                    raise InputError(f"expected spans as a JSON list; got {stripped!r:.60}") from None
            else:
                answer = _spans_from_text(stripped, text)
        if not isinstance(answer, list):
            raise InputError(f"expected a list of spans {{start, end, label}}; got {answer!r:.60}")
        spans = []
        for span in answer:
            if not isinstance(span, dict) or set(span) - {"start", "end", "label", "text"}:
                raise InputError(f"expected each span as {{start, end, label}}; got {span!r:.80}")
            start, end, label = span.get("start"), span.get("end"), span.get("label")
            if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end:
                raise InputError(f"expected span offsets 0 <= start < end; got {start!r}, {end!r}")
            if text is not None and end > len(text):
                raise InputError(f"expected a span inside the item's {len(text)} characters; got {start}-{end}")
            if label not in self.classes:
                raise InputError(f"expected a span class among {list(self.classes)}; got {label!r:.40}")
            spans.append({"start": start, "end": end, "label": label})
        return sorted(spans, key=lambda s: (s["start"], s["end"], s["label"]))


def _spans_from_text(answer: str, text: str | None) -> list[dict[str, Any]]:
    """`PER:0-5; ORG=Acme Corp` → spans; `-` (or nothing) is the answer "no spans"."""
    if answer in ("", "-"):
        return []
    spans: list[dict[str, Any]] = []
    used: set[tuple[int, int]] = set()
    for part in (p.strip() for p in answer.split(";")):
        match = _SPAN.fullmatch(part)
        if match is None:
            raise InputError(
                f"expected spans as LABEL:START-END or LABEL=quoted text, separated by ';'; got {shown(part)}"
            )
        if match["quote"] is None:
            spans.append({"start": int(match["start"]), "end": int(match["end"]), "label": match["label"]})
            continue
        quote, start = match["quote"].strip(), -1
        while text is not None:  # the first occurrence not already taken by another span
            start = text.find(quote, start + 1)
            if start < 0 or (start, start + len(quote)) not in used:
                break
        if start < 0:
            raise InputError(f"expected {quote!r} to occur in the item's text; it does not")
        used.add((start, start + len(quote)))
        spans.append({"start": start, "end": start + len(quote), "label": match["label"]})
    return spans


def schema_resource(name: str) -> str:
    """The permission resource of a schema or queue source name: `dataset:NAME` or `deployment:NAME`."""
    if name.startswith("traces:"):
        return f"deployment:{name.removeprefix('traces:')}"
    return f"dataset:{name}"


def _check_schema_name(name: str) -> str:
    if name.startswith("traces:"):
        check_name(name.removeprefix("traces:"), "deployment")
    else:
        check_name(name, "dataset")
    return name


def set_schema(store: Store, name: str, schema: LabelSchema) -> LabelSchema:
    """Set the label schema of dataset `name` (or of `traces:DEPLOYMENT`); queues made later use it.

    Queues already made keep the schema they were made with: their labels stay valid.

    Raises:
        InputError: A malformed name.
        PermissionDeniedError: The principal may not `label.write` on the dataset or deployment.

    Examples:
        >>> set_schema(store, "tickets", LabelSchema("classes", ("billing", "bug", "other")))  # doctest: +SKIP
    """
    _check_schema_name(name)
    require(store, "label.write", schema_resource(name))
    row = {"kind": schema.kind, "spec": canonical_json(schema.to_json()), "updated_by": store.actor,
           "updated_at": store.clock()}  # fmt: skip
    with store.db.write() as conn:
        found = conn.scalar(select(label_schemas.c.name).where(label_schemas.c.name == name))
        if found is None:
            conn.execute(label_schemas.insert().values(name=name, **row))
        else:
            conn.execute(label_schemas.update().where(label_schemas.c.name == name).values(**row))
        store.audit(conn, "label.schema.set", f"label-schema:{name}", schema.to_json())
    return schema


def get_schema(store: Store, name: str) -> LabelSchema:
    """The label schema of dataset `name` (or `traces:DEPLOYMENT`).

    Raises:
        NotFoundError: None is set; the message says how to set one.
    """
    with store.db.read() as conn:
        spec = conn.scalar(select(label_schemas.c.spec).where(label_schemas.c.name == name))
    if spec is None:
        raise NotFoundError(
            f"no label schema for {name!r}",
            hint=f"set one with `keel label schema set {name} --classes a,b` (or --spans, --rating N, --text)",
        )
    return LabelSchema.from_json(json.loads(spec))


def list_schemas(store: Store) -> dict[str, LabelSchema]:
    """Every label schema, by dataset (or `traces:DEPLOYMENT`) name."""
    with store.db.read() as conn:
        rows = conn.execute(select(label_schemas.c.name, label_schemas.c.spec).order_by(label_schemas.c.name))
        return {row.name: LabelSchema.from_json(json.loads(row.spec)) for row in rows}
