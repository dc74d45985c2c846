"""Row and column hashes: stable values, and no recursion however deep a column nests."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.data._hashing import column_hashes, row_hashes

# Values computed by the recursive implementation this one replaced: stored versions' key files
# hold these hashes, so a new commit must compute the same ones to recognise unchanged rows.
PINNED_ROWS = [8369124371585248044, 13787369123837993349, 7366450595878028700]
PINNED_COLUMNS = {
    "l": [8381840763553009216, 12035550249420947055, 7959387129412676716],
    "s": [147011236005810680, 7959387129412676716, 11400822653090380774],
    "m": [17579456215282977191, 7959387129412676716, 9444422325801888874],
    "d": [1000067187423537442, 17799399886596605716, 1000067187423537442],
}


def _table() -> pa.Table:
    return pa.table(
        {
            "id": ["a", "b", "c"],
            "text": ["x", None, "é"],
            "n": [1, None, -5],
            "f": [0.5, -0.0, None],
            "l": [[1, 2], [], None],
            "s": [{"a": [["x"]], "b": True}, None, {"a": [], "b": None}],
            "m": pa.array([[("k", 1)], None, []], type=pa.map_(pa.string(), pa.int64())),
            "d": pa.array(["u", "v", "u"]).dictionary_encode(),
        }
    )


def test_hashes_are_the_ones_stored_versions_hold() -> None:
    table = _table()
    assert row_hashes(table).tolist() == PINNED_ROWS
    for name, expected in PINNED_COLUMNS.items():
        assert column_hashes(table.column(name)).tolist() == expected


def _nested_list(depth: int) -> pa.Array:
    array = pa.array([1, 2, 3])
    for _ in range(depth):
        array = pa.ListArray.from_arrays(pa.array([0, 1, len(array)], type=pa.int32()), array)
    return array


def test_a_column_nested_past_the_recursion_limit_hashes() -> None:
    """The recursive version raised RecursionError from about 700 levels."""
    deep = column_hashes(_nested_list(1500))
    assert len(deep) == 2 and deep[0] != deep[1]
    struct = pa.array([1, 2])
    for level in range(1200):
        struct = pa.StructArray.from_arrays([struct], names=[f"f{level % 3}"])
    assert len(set(column_hashes(struct).tolist())) == 2


json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4) | st.none(), min_size=1, max_size=6))
def test_equal_lists_hash_equal_and_order_matters(values: list[list[int] | None]) -> None:
    hashes = column_hashes(pa.array(values + values, type=pa.list_(pa.int64()))).tolist()
    assert hashes[: len(values)] == hashes[len(values) :]
    for value, hashed in zip(values, hashes, strict=False):
        if value is not None and value != value[::-1]:
            flipped = column_hashes(pa.array([value[::-1]], type=pa.list_(pa.int64()))).tolist()[0]
            assert flipped != hashed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({"a": json_scalars.filter(lambda v: not isinstance(v, bool))}), min_size=1))
def test_chunking_does_not_change_hashes(rows: list[dict[str, object]]) -> None:
    whole = pa.array([{"v": str(r["a"])} for r in rows])
    chunked = pa.chunked_array([whole.slice(0, len(rows) // 2), whole.slice(len(rows) // 2)])
    assert column_hashes(whole).tolist() == column_hashes(chunked).tolist()
