"""Identifiers and content hashes: ULIDs for things that happen, sha256 for things that are.

Knows nothing of what the ids name; the store layer gives node ids their kinds.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ulid import ULID

from keel.core.errors import InputError

__all__ = ["canonical_json", "is_sha256", "new_ulid", "sha256_hex", "require_sha256"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


def new_ulid() -> str:
    """A new ULID string: unique, and sortable by creation time.

    Examples:
        >>> len(new_ulid())
        26
    """
    return str(ULID())


def sha256_hex(data: bytes | str) -> str:
    """The sha256 of `data` (UTF-8 for text) as 64 lowercase hex digits.

    Examples:
        >>> sha256_hex("")[:12]
        'e3b0c44298fc'
    """
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def canonical_json(value: Any) -> str:
    """Serialise `value` the same way every time (sorted keys, no spaces), for hashing.

    Examples:
        >>> canonical_json({"b": 1, "a": [1, "é"]})
        '{"a":[1,"é"],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def is_sha256(text: str) -> bool:
    """Whether `text` is 64 lowercase hex digits.

    Examples:
        >>> is_sha256("ab"), is_sha256("0" * 64)
        (False, True)
    """
    return _SHA256.fullmatch(text) is not None


def require_sha256(text: str, what: str = "digest") -> str:
    """Return `text` if it is a sha256 hex digest, else raise an `InputError` saying so."""
    if not is_sha256(text):
        raise InputError(f"expected a {what} of 64 lowercase hex digits (sha256); got {text!r}")
    return text
