from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.core.errors import InputError
from keel.core.ids import (
    _dumps_iteratively,
    canonical_json,
    is_sha256,
    new_ulid,
    require_sha256,
    sha256_hex,
    stable_json,
)


def test_ulids_are_unique_and_sortable() -> None:
    ids = [new_ulid() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 26 for i in ids)


def test_hashing_and_canonical_json() -> None:
    assert sha256_hex("abc") == sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert canonical_json({"b": [1, {"d": 1, "c": 2}], "a": "é"}) == '{"a":"é","b":[1,{"c":2,"d":1}]}'
    with pytest.raises(InputError, match="expected finite numbers; found NaN"):
        canonical_json({"x": float("nan")})


def test_digest_checks() -> None:
    assert is_sha256("a" * 64) and not is_sha256("A" * 64) and not is_sha256("a" * 63)
    with pytest.raises(InputError, match="expected a blob digest of 64 lowercase hex digits"):
        require_sha256("xyz", "blob digest")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_the_iterative_encoder_writes_what_json_dumps_writes(value: object) -> None:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert _dumps_iteratively(value, (",", ":"), ensure_ascii=False, allow_nan=False, default=None) == canonical
    stable = json.dumps(value, sort_keys=True, default=str)
    assert _dumps_iteratively(value, (", ", ": "), ensure_ascii=True, allow_nan=True, default=str) == stable
    assert canonical_json(value) == canonical and stable_json(value) == stable


def test_values_nested_past_the_recursion_limit_serialise() -> None:
    """json.dumps raises RecursionError here; canonical and stable JSON give the same text iteratively."""
    deep: list[object] = []
    inner = deep
    for _ in range(5000):
        inner.append({"k": []})
        inner = inner[0]["k"]  # type: ignore[index]
    text = canonical_json(deep)
    assert text == '[{"k":' * 5000 + "[]" + "}]" * 5000
    assert stable_json({"a": deep}) == '{"a": ' + '[{"k": ' * 5000 + "[]" + "}]" * 5000 + "}"


def test_a_forked_child_does_not_repeat_its_parents_ulids_in_the_same_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import time

    import keel.core.ids

    frozen = time.time_ns()
    monkeypatch.setattr(keel.core.ids.time, "time_ns", lambda: frozen)  # parent and child in one millisecond
    read, write = os.pipe()
    parent_ids = [new_ulid() for _ in range(50)]  # the counter is now past a fresh random part
    pid = os.fork()
    if pid == 0:  # the child: its ids start from new random bits, not from the parent's last id + 1
        os.close(read)
        os.write(write, "\n".join(new_ulid() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    more_parent_ids = [new_ulid() for _ in range(50)]
    with os.fdopen(read) as pipe:
        child_ids = pipe.read().split("\n")
    os.waitpid(pid, 0)
    assert len(child_ids) == 50
    assert not set(child_ids) & set(parent_ids + more_parent_ids)
