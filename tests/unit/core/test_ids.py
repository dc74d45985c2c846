from __future__ import annotations

import pytest

from keel.core.errors import InputError
from keel.core.ids import canonical_json, is_sha256, new_ulid, require_sha256, sha256_hex


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
