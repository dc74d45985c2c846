"""Per-column statistics of a dataset version, kept in its manifest and compared by `diff`."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["column_stats", "merge_stats", "stats_changes"]


def _scalar(value: pa.Scalar) -> Any:
    out = value.as_py()
    if isinstance(out, float):
        # NaN and infinities (a Parquet input may hold them) as text: the manifest is strict JSON.
        return round(out, 6) if math.isfinite(out) else str(out)
    return out if isinstance(out, int | str | bool) or out is None else str(out)


def _one(column: pa.ChunkedArray) -> dict[str, Any]:
    kind = column.type
    stats: dict[str, Any] = {"type": str(kind), "nulls": column.null_count}
    valid = len(column) - column.null_count
    if valid == 0:
        return stats
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        lengths = pc.utf8_length(column)
        stats |= {
            "min_length": _scalar(pc.min(lengths)),
            "max_length": _scalar(pc.max(lengths)),
            "mean_length": _scalar(pc.mean(lengths)),
            # a typed zero: pyarrow infers a bare int's type through code that imports dateutil (~0.015 CPU-s)
            "empty": int(pc.sum(pc.equal(lengths, pa.scalar(0, lengths.type))).as_py() or 0),
        }
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        stats |= {"min": _scalar(pc.min(column)), "max": _scalar(pc.max(column)), "mean": _scalar(pc.mean(column))}
    elif pa.types.is_boolean(kind):
        stats["true"] = int(pc.sum(column).as_py() or 0)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.list_value_length(column)
        stats |= {"mean_items": _scalar(pc.mean(lengths)), "max_items": _scalar(pc.max(lengths))}
    elif pa.types.is_temporal(kind):
        stats |= {"min": _scalar(pc.min(column)), "max": _scalar(pc.max(column))}
    return stats


def column_stats(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Type, null count and a few summary numbers for each column.

    Examples:
        >>> import pyarrow as pa
        >>> column_stats(pa.table({"text": ["ab", "", None]}))["text"]
        {'type': 'string', 'nulls': 1, 'min_length': 0, 'max_length': 2, 'mean_length': 1.0, 'empty': 1}
    """
    return {name: _one(table.column(name)) for name in table.column_names}


def stats_changes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each column in both, the statistics whose value changed, as {stat: [before, after]}."""
    changes: dict[str, dict[str, Any]] = {}
    for name in sorted(set(before) & set(after)):
        diff = {
            key: [before[name].get(key), after[name].get(key)]
            for key in sorted(set(before[name]) | set(after[name]))
            if key != "type" and before[name].get(key) != after[name].get(key)
        }
        if diff:
            changes[name] = diff
    return changes


_SUMS = ("nulls", "empty", "true")
_MINS = ("min_length", "min")
_MAXS = ("max_length", "max", "max_items")
_MEANS = ("mean_length", "mean", "mean_items")


def merge_stats(parts: list[tuple[dict[str, dict[str, Any]], int]]) -> dict[str, dict[str, Any]]:
    """The statistics of the rows of several tables, from each table's `column_stats` and row count.

    What an erasure uses to describe a new version from its shards' statistics (each computed once)
    instead of decoding every version whole: sums add, minima and maxima combine, means are weighted
    by the non-null values. Means agree with `column_stats` of the concatenation to rounding.

    Examples:
        >>> import pyarrow as pa
        >>> a, b = pa.table({"n": [1, 2]}), pa.table({"n": [None, 6]})
        >>> merge_stats([(column_stats(a), 2), (column_stats(b), 2)]) == column_stats(pa.concat_tables([a, b]))
        True
    """
    if not parts:
        return {}
    merged: dict[str, dict[str, Any]] = {}
    for name in parts[0][0]:
        columns = [(stats[name], rows) for stats, rows in parts]
        out: dict[str, Any] = {"type": columns[0][0]["type"], "nulls": sum(s.get("nulls", 0) for s, _ in columns)}
        valid = [(s, rows - s.get("nulls", 0)) for s, rows in columns if rows - s.get("nulls", 0) > 0]
        total = sum(v for _, v in valid)
        if total:
            keys = [k for k in valid[0][0] if k not in ("type", "nulls")]
            for key in keys:
                values = [(s[key], v) for s, v in valid if key in s]
                numbers = [x for x, _ in values if isinstance(x, int | float) and not isinstance(x, bool)]
                if key in _SUMS:
                    out[key] = sum(int(x) for x, _ in values)
                elif key in _MINS and len(numbers) == len(values):
                    out[key] = min(numbers)
                elif key in _MAXS and len(numbers) == len(values):
                    out[key] = max(numbers)
                elif key in _MEANS and len(numbers) == len(values):
                    out[key] = _scalar(pa.scalar(sum(x * v for x, v in values) / sum(v for _, v in values)))
                elif key in _MINS:  # timestamps kept as text: ISO strings order as times
                    out[key] = min(str(x) for x, _ in values)
                elif key in _MAXS:
                    out[key] = max(str(x) for x, _ in values)
        merged[name] = out
    return merged
