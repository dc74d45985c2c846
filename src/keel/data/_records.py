"""The record every curation step sees: an Arrow row with `id`, `text`, `source` and `meta`.

Ids are stable: derived from where a record came from (source URI and position) and the sha256 of
its raw bytes, so re-reading the same input gives the same ids on any machine. This module knows
the shape of records, not where they are read from or what steps do to them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from keel.core.errors import InputError
from keel.core.ids import sha256_hex

__all__ = [
    "RECORD_SCHEMA",
    "SOURCE_TYPE",
    "make_record",
    "meta_json",
    "record_id",
    "records_to_table",
    "require_record_columns",
]

SOURCE_TYPE = pa.struct(
    [
        pa.field("uri", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
    ]
)

RECORD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("source", SOURCE_TYPE),
        pa.field("meta", pa.string(), metadata={b"doc": b"JSON object"}),
    ]
)


def record_id(uri: str, locator: str | int, raw_sha256: str) -> str:
    """A stable record id: 24 hex digits of sha256(uri, position, content hash).

    Examples:
        >>> record_id("file:///data/a.jsonl", 3, "ab" * 32)
        '…'  # doctest: +SKIP
    """
    return sha256_hex(f"{uri}\x00{locator}\x00{raw_sha256}")[:24]


# One encoder for every record's meta (the output of json.dumps(meta, sort_keys=True, ensure_ascii=False,
# default=str)): `json.dumps` with options builds a new encoder per call.
_META_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


def meta_json(meta: Mapping[str, Any] | None) -> str:
    """A record's `meta` column: its extra fields as JSON text with sorted keys (`{}` for none)."""
    return _META_ENCODER.encode(dict(meta)) if meta else "{}"


def make_record(
    text: str,
    uri: str,
    locator: str | int,
    raw: bytes,
    fetched_at: datetime,
    meta: Mapping[str, Any] | None = None,
    record_id_override: str | None = None,
) -> dict[str, Any]:
    """One record as a dict ready for `records_to_table`.

    Args:
        text: The document text.
        uri: Where it came from (file path as a URI, URL, WARC record URI).
        locator: Its position inside the source (line number, row, member name).
        raw: The raw bytes of the item, hashed into `source.sha256`.
        fetched_at: When the source was read (file mtime or fetch time).
        meta: Extra fields from the source, kept as a JSON object.
        record_id_override: An id the source supplied itself, used instead of the derived one.
    """
    raw_sha = sha256_hex(raw)
    return {
        "id": record_id_override or record_id(uri, locator, raw_sha),
        "text": text,
        "source": {"uri": uri, "sha256": raw_sha, "fetched_at": fetched_at.astimezone(UTC)},
        "meta": meta_json(meta),
    }


def records_to_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Build an Arrow table with the record schema from record dicts."""
    return pa.Table.from_pylist(list(records), schema=RECORD_SCHEMA)


def require_record_columns(table: pa.Table, where: str) -> None:
    """Raise `InputError` naming what is missing when `table` lacks the required record columns."""
    missing = [name for name in RECORD_SCHEMA.names if name not in table.column_names]
    if missing:
        raise InputError(
            f"expected records with columns {', '.join(RECORD_SCHEMA.names)} in {where}; "
            f"missing {', '.join(missing)} (found {', '.join(table.column_names)})"
        )
