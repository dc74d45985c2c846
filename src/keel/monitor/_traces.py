"""Traces: one row per served request, made storable before they are written, and read back.

Every string of a trace may come from a request (a deployment name, a header), so `storable`
escapes what no database can hold (lone surrogates, NUL) and cuts each to its column's length.
Writing happens in `keel.monitor._writer`; this module only knows the row and the queries.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from keel.core.clock import format_time
from keel.core.errors import NotFoundError
from keel.core.ids import canonical_json
from keel.store import Store
from keel.store.schema import traces

__all__ = ["Trace", "get_trace", "list_traces", "storable"]

# Column lengths of `traces` (store/schema.py): PostgreSQL refuses longer values.
_LIMITS = {"deployment": 128, "model_version": 160, "prompt_version": 160, "key_id": 26, "operation": 32, "error": 64}
_MAX_FLAGS, _FLAG_LENGTH = 32, 64


def storable(text: str, limit: int = 256) -> str:
    r"""`text` as any database, JSON encoder and Prometheus label can hold it, at most `limit` characters.

    Lone surrogates (which UTF-8 cannot encode) and other undecodable code points become their
    backslash escapes, NUL becomes `\x00` (PostgreSQL text refuses it), and a longer text is cut
    and ends with `…`.

    Examples:
        >>> storable("\ud800 ok")
        '\\ud800 ok'
        >>> storable("x" * 10, limit=4)
        'xxx…'
    """
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


@dataclass(slots=True)
class Trace:
    """One served request."""

    id: str
    at: datetime
    deployment: str
    operation: str
    status: int
    latency_ms: float
    model_version: str | None = None
    prompt_version: str | None = None
    key_id: str | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    ttft_ms: float | None = None
    cost: float = 0.0
    cache_hit: bool = False
    flags: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        """The trace's lineage node id."""
        return f"trace:{self.id}"

    def storable(self) -> Trace:
        """This trace with every string made storable (see `storable`) and cut to its column's length."""
        changes: dict[str, Any] = {}
        for name, limit in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, str):
                fixed = storable(value, limit)
                if fixed is not value:
                    changes[name] = fixed
        flags = [storable(str(f), _FLAG_LENGTH) for f in self.flags[:_MAX_FLAGS]]
        if flags != self.flags:
            changes["flags"] = flags
        return replace(self, **changes) if changes else self

    def to_row(self) -> dict[str, Any]:
        """The `traces` row."""
        row = asdict(self)
        row["cache_hit"] = int(self.cache_hit)
        row["flags"] = canonical_json(self.flags)
        return row

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "at": format_time(self.at)}


def trace_from_json(data: dict[str, Any]) -> Trace:
    """The trace `Trace.to_json` made (as spill files hold them)."""
    return Trace(**{**data, "at": datetime.fromisoformat(data["at"].replace("Z", "+00:00"))})


def _from_row(row: Any) -> Trace:
    values = dict(row._mapping)
    values["cache_hit"] = bool(values["cache_hit"])
    values["flags"] = json.loads(values["flags"])
    return Trace(**values)


def list_traces(
    store: Store, *, deployment: str | None = None, errors_only: bool = False, limit: int = 50
) -> list[Trace]:
    """The newest traces first, optionally of one deployment or only failed ones."""
    query = select(traces).order_by(traces.c.at.desc(), traces.c.id.desc()).limit(limit)
    if deployment is not None:
        query = query.where(traces.c.deployment == deployment)
    if errors_only:
        query = query.where(traces.c.status >= 400)
    with store.db.read() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def get_trace(store: Store, trace_id: str) -> Trace:
    """One trace by id.

    Raises:
        NotFoundError: No trace has this id.
    """
    with store.db.read() as conn:
        row = conn.execute(select(traces).where(traces.c.id == trace_id)).first()
    if row is None:
        raise NotFoundError(f"no trace with id {trace_id!r}", hint="see `keel trace list`")
    return _from_row(row)
