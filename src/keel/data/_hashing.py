"""Content hashes of table rows, computed column by column with numpy.

Dataset versions need one 64-bit hash per record to tell unchanged records from changed ones
between versions. No library gives a row hash over Arrow data with nested types (pandas'
`hash_pandas_object` stringifies lists and structs row by row, ~10x slower on curation output
with `source`, `quality_signals` and `pii_spans` columns), so this module hashes each column
into a uint64 vector — strings with xxh3, fixed-width values and nested children with a
vectorised splitmix64 mix — and folds the columns together. The hash is a function of the
column names, types' logical values and order of list elements; it is stable across processes,
platforms and pyarrow versions.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import xxhash

from keel.core.ids import stable_json

__all__ = ["column_hashes", "row_hashes"]

_U64 = np.uint64
_NULL = np.array([0x6E756C6C6E756C6C], dtype=_U64)  # "nullnull"
_GOLDEN = np.array([0x9E3779B97F4A7C15], dtype=_U64)
_M1 = np.array([0xBF58476D1CE4E5B9], dtype=_U64)
_M2 = np.array([0x94D049BB133111EB], dtype=_U64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 vector (wrapping arithmetic, no warnings on arrays)."""
    z = x + _GOLDEN
    z = (z ^ (z >> _U64(30))) * _M1
    z = (z ^ (z >> _U64(27))) * _M2
    return z ^ (z >> _U64(31))


def _salt(text: str) -> np.ndarray:
    return np.array([xxhash.xxh3_64_intdigest(text.encode())], dtype=_U64)


def _with_nulls(values: np.ndarray, array: pa.Array) -> np.ndarray:
    if array.null_count:
        valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        values = np.where(valid, values, _NULL)
    return values


def _strings(array: pa.Array) -> np.ndarray:
    # Hash the UTF-8 bytes Arrow already holds: a binary view avoids decoding to str and encoding back.
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        array = array.cast(pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary())
    values = array.fill_null(b"").to_pylist() if array.null_count else array.to_pylist()
    hashed = np.fromiter(map(xxhash.xxh3_64_intdigest, values), dtype=_U64, count=len(values))
    return _with_nulls(hashed, array)


def _fixed_width(array: pa.Array) -> np.ndarray:
    kind = array.type
    if pa.types.is_boolean(kind):
        values = np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=_U64)
    elif pa.types.is_floating(kind):
        floats = np.asarray(array.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.float64)
        floats = np.where(floats == 0.0, 0.0, floats)  # -0.0 and 0.0 are the same value
        values = floats.view(_U64)
    else:  # integers, dates, times, timestamps, durations: their integer representation
        storage = array
        if not pa.types.is_integer(kind):
            storage = array.view(pa.int64() if kind.bit_width == 64 else pa.int32())
        values = np.asarray(storage.fill_null(0).to_numpy(zero_copy_only=False)).astype(np.int64).view(_U64)
    return _with_nulls(_mix(values), array)


def _list_children(array: pa.Array) -> list[pa.Array]:
    offsets = np.asarray(array.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    return [array.values.slice(offsets[0], offsets[-1] - offsets[0])]


def _list(array: pa.Array, child: np.ndarray) -> np.ndarray:
    offsets = np.asarray(array.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    # Position inside its list, so [a, b] and [b, a] differ.
    position = np.arange(len(child), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    mixed = _mix(child ^ _mix(position.astype(_U64)))
    total = np.concatenate([np.zeros(1, dtype=_U64), np.cumsum(mixed, dtype=_U64)])
    sums = total[offsets[1:]] - total[offsets[:-1]]  # wrapping differences: empty lists give 0
    return _with_nulls(_mix(sums ^ _mix(lengths.astype(_U64))), array)


def _struct(array: pa.StructArray, fields: list[np.ndarray]) -> np.ndarray:
    acc = np.zeros(len(array), dtype=_U64)
    for i, hashed in enumerate(fields):
        acc = _mix(acc ^ _salt(array.type.field(i).name)) + hashed
    return _with_nulls(_mix(acc), array)


def _fallback(array: pa.Array) -> np.ndarray:
    """Types without a vectorised path (maps, decimals, unions): JSON text of each value.

    `json.dumps` as it always was (so hashes stay the same), through `stable_json` for values
    nested too deep for its recursion.
    """
    digest = xxhash.xxh3_64_intdigest
    values = (_NULL[0] if v is None else digest(stable_json(v).encode()) for v in array.to_pylist())
    return np.fromiter(values, dtype=_U64, count=len(array))


def _plain(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One chunk, dictionaries decoded, string views as large strings: the forms hashed below."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    while pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_string_view(array.type):
        array = array.cast(pa.large_string())
    return array


def _leaf(array: pa.Array) -> np.ndarray | None:
    """The hashes of a value without children, or None for a list or struct."""
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _strings(array)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _strings(array)
    if pa.types.is_null(kind):
        return np.full(len(array), _NULL[0], dtype=_U64)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_struct(kind):
        return None
    if (
        pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_temporal(kind)
    ):
        return _fixed_width(array)
    return _fallback(array)


def column_hashes(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One uint64 hash per value of `array`, equal for equal values of the same logical type.

    Nested lists and structs are walked with an explicit stack, not recursion, so a column nested
    deeper than Python's recursion limit still hashes.

    Examples:
        >>> import pyarrow as pa
        >>> h = column_hashes(pa.array(["a", "b", "a", None]))
        >>> bool(h[0] == h[2]), bool(h[0] == h[1]), h.dtype.name
        (True, False, 'uint64')
    """
    # Pre-order list of (array, child indices): a child always comes after its parent, so
    # walking the list backwards hashes children before the lists and structs that hold them.
    nodes: list[tuple[pa.Array, list[int]]] = []
    todo: list[tuple[pa.Array | pa.ChunkedArray, int]] = [(array, -1)]
    while todo:
        current, parent = todo.pop()
        plain = _plain(current)
        nodes.append((plain, []))
        if parent >= 0:
            nodes[parent][1].append(len(nodes) - 1)
        kind = plain.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            children = _list_children(plain)
        elif pa.types.is_struct(kind):
            children = [plain.field(i) for i in range(kind.num_fields)]
        else:
            children = []
        # Pushed in reverse so children are visited (and listed in `nodes[parent][1]`) in field order.
        todo += [(child, len(nodes) - 1) for child in reversed(children)]
    hashes: list[np.ndarray | None] = [None] * len(nodes)
    for index in range(len(nodes) - 1, -1, -1):
        plain, children_at = nodes[index]
        parts = [hashes[i] for i in children_at]
        for i in children_at:
            hashes[i] = None  # free memory as soon as the parent has its children's hashes
        leaf = _leaf(plain)
        if leaf is not None:
            hashes[index] = leaf
        elif pa.types.is_struct(plain.type):
            hashes[index] = _struct(plain, parts)  # type: ignore[arg-type]
        else:
            hashes[index] = _list(plain, parts[0])  # type: ignore[arg-type]
    result = hashes[0]
    assert result is not None
    return result


def row_hashes(table: pa.Table, exclude: Iterable[str] = ("id",)) -> np.ndarray:
    """One uint64 content hash per row over every column but `exclude`, by column name.

    Column order does not matter; column names and values do.

    Examples:
        >>> import pyarrow as pa
        >>> t = pa.table({"id": ["1", "2", "3"], "text": ["x", "y", "x"], "n": [1, 2, 1]})
        >>> h = row_hashes(t)
        >>> bool(h[0] == h[2]), bool(h[0] == h[1])
        (True, False)
    """
    skip = set(exclude)
    acc = np.zeros(table.num_rows, dtype=_U64)
    for name in sorted(n for n in table.column_names if n not in skip):
        acc = acc + _mix(column_hashes(table.column(name)) ^ _salt(name))  # order-free fold over columns
    return _mix(acc)
