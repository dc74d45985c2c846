"""The records an index is built from: a dataset version (by reference) or an in-memory Arrow table.

Only `id` and `text` are required; `source` (uri, sha256, fetched_at), `meta` (JSON) and any
other scalar columns (`lang`, …) are carried onto each chunk so hits trace back and filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from keel.core.errors import InputError
from keel.store import Store

__all__ = ["DatasetInput", "resolve_dataset"]

# Columns of the chunk table that dataset columns must not overwrite.
RESERVED = frozenset({"chunk_id", "record_id", "ordinal", "text", "start", "end", "record_sha256", "source", "meta"})


@dataclass(frozen=True)
class DatasetInput:
    """The records to index, and the dataset version they are (None for an in-memory table)."""

    table: pa.Table
    ref: str | None = None
    digest: str | None = None
    node: str | None = None


def resolve_dataset(store: Store, dataset: str | pa.Table) -> DatasetInput:
    """Load a dataset version by reference (`docs`, `docs@v3`, `docs@latest`), or check a table.

    Raises:
        InputError: The records lack `id` or `text`, or ids repeat.
        NotFoundError: No such dataset version.
    """
    if isinstance(dataset, pa.Table):
        return DatasetInput(_check(dataset, "the given table"))
    from keel.data import get_version, load_version

    version = get_version(store, dataset)
    table = load_version(store, version.ref)
    return DatasetInput(_check(table, version.ref), ref=version.ref, digest=version.digest, node=version.node)


def _check(table: pa.Table, what: str) -> pa.Table:
    missing = [c for c in ("id", "text") if c not in table.column_names]
    if missing:
        raise InputError(
            f"expected records with columns 'id' and 'text' to index; {what} has {table.column_names}",
            hint="curate the data into a dataset version first (`keel data commit`)",
        )
    ids = table.column("id")
    if ids.null_count or pc.count_distinct(ids).as_py() != len(ids):
        raise InputError(f"expected unique, non-null record ids to index; {what} repeats or omits some")
    return table


def extra_columns(table: pa.Table) -> list[str]:
    """Dataset columns of scalar type copied onto each chunk for filtering (e.g. `lang`)."""
    names = []
    for field in table.schema:
        if field.name in RESERVED or field.name == "id":
            continue
        t = field.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
            names.append(field.name)
        elif pa.types.is_floating(t):
            names.append(field.name)
    return names
