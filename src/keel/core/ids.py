"""Identifiers and content hashes: ULIDs for things that happen, sha256 for things that are.

Knows nothing of what the ids name; the store layer gives node ids their kinds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

from keel.core.echo import shown
from keel.core.errors import InputError

__all__ = [
    "DuplicateKeyError",
    "canonical_json",
    "is_sha256",
    "new_ulid",
    "sha256_hex",
    "require_sha256",
    "stable_json",
    "unique_pairs",
]

_SHA256 = re.compile(r"[0-9a-f]{64}")


# ULIDs are made here rather than by python-ulid: importing it reads its own package metadata
# (importlib.metadata, email parsing), ~0.07 CPU-s on every command that records anything, for what is
# 48 bits of milliseconds and 80 random bits in Crockford's base32. As python-ulid's default generator does,
# ids made in the same millisecond by this process increase by one in their random part (strictly sortable).
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_LOCK = threading.Lock()
_ulid_last = [0, 0]  # the millisecond and random part of the last ULID made by this process


def _reset_after_fork() -> None:
    """Start a forked child's ULIDs afresh.

    From its parent's last ULID both would count up to the same ids in that millisecond (curation's workers and
    `keel serve --workers` fork), and a lock held by another thread at the fork would never be released in the child.
    """
    global _ULID_LOCK
    _ULID_LOCK = threading.Lock()
    _ulid_last[:] = 0, 0


os.register_at_fork(after_in_child=_reset_after_fork)


def new_ulid() -> str:
    """A new ULID string: unique, and sortable by creation time (also within a millisecond, in one process).

    Examples:
        >>> len(new_ulid())
        26
    """
    with _ULID_LOCK:
        millis = time.time_ns() // 1_000_000
        if millis <= _ulid_last[0] and _ulid_last[1] < (1 << 80) - 1:
            millis, random = _ulid_last[0], _ulid_last[1] + 1
        else:
            random = int.from_bytes(os.urandom(10), "big")
        _ulid_last[:] = millis, random
    value = (millis << 80) | random
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def sha256_hex(data: bytes | str) -> str:
    """The sha256 of `data` (UTF-8 for text) as 64 lowercase hex digits.

    Examples:
        >>> sha256_hex("")[:12]
        'e3b0c44298fc'
    """
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def canonical_json(value: Any) -> str:
    """Serialise `value` the same way every time (sorted keys, no spaces), for hashing.

    Values nested deeper than Python's recursion limit are serialised too, to the same text.

    Raises:
        InputError: `value` holds NaN or an infinity, which JSON cannot represent.

    Examples:
        >>> canonical_json({"b": 1, "a": [1, "é"]})
        '{"a":[1,"é"],"b":1}'
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:
        pass  # too deep for the C encoder's recursion: the same text, built with an explicit stack
    except ValueError as exc:
        if not str(exc).startswith("Out of range float"):
            raise
        raise InputError(
            "expected finite numbers; found NaN or an infinity, which JSON cannot represent",
            hint="replace it with null or a string",
        ) from None
    try:
        return _dumps_iteratively(value, (",", ":"), ensure_ascii=False, allow_nan=False, default=None)
    except ValueError:
        raise InputError(
            "expected finite numbers; found NaN or an infinity, which JSON cannot represent",
            hint="replace it with null or a string",
        ) from None


def stable_json(value: Any) -> str:
    r"""`json.dumps(value, sort_keys=True, default=str)`, also for values nested beyond the recursion limit.

    The text content hashes of Arrow values without a vectorised hash were always made from.

    Examples:
        >>> stable_json({"b": [1.5, None], "a": "é"})
        '{"a": "\\u00e9", "b": [1.5, null]}'
    """
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except RecursionError:
        return _dumps_iteratively(value, (", ", ": "), ensure_ascii=True, allow_nan=True, default=str)


def _float_text(value: float, allow_nan: bool) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        if not allow_nan:
            raise ValueError("Out of range float values are not JSON compliant")
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return float.__repr__(value)


def _key_text(key: Any, allow_nan: bool) -> str:
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, float):
        return _float_text(key, allow_nan)
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _scalar_text(item: Any, quote: Callable[[str], str], allow_nan: bool) -> str | None:
    """The JSON text of a value without children, or None for a list, tuple, dict or other object."""
    if item is None or item is True or item is False:
        return "null" if item is None else ("true" if item else "false")
    if isinstance(item, str):
        return quote(item)
    if isinstance(item, int):
        return int.__repr__(item)
    if isinstance(item, float):
        return _float_text(item, allow_nan)
    return None


def _dumps_iteratively(
    value: Any,
    separators: tuple[str, str],
    *,
    ensure_ascii: bool,
    allow_nan: bool,
    default: Callable[[Any], Any] | None,
) -> str:
    """What `json.dumps(value, sort_keys=True, ...)` returns, with an explicit stack instead of recursion.

    Hand-written because no JSON library both matches `json.dumps` byte for byte and has no depth
    limit; it runs only for values the C encoder cannot take, so its speed does not matter.
    """
    item_sep, key_sep = separators
    quote = encode_basestring_ascii if ensure_ascii else encode_basestring
    out: list[str] = []
    # Frames: the container's id, an iterator over its items, whether it is a dict, whether nothing is written yet.
    stack: list[tuple[int, Iterator[Any], bool, list[bool]]] = []
    open_ids: set[int] = set()  # the containers on the stack, to refuse a cycle as json.dumps does

    def emit(item: Any) -> None:
        text = _scalar_text(item, quote, allow_nan)
        while text is None and not isinstance(item, list | tuple | dict):
            if default is None:
                raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")
            item = default(item)
            text = _scalar_text(item, quote, allow_nan)
        if text is not None:
            out.append(text)
        elif not item:
            out.append("{}" if isinstance(item, dict) else "[]")
        else:
            if id(item) in open_ids:
                raise ValueError("Circular reference detected")
            open_ids.add(id(item))
            is_dict = isinstance(item, dict)
            out.append("{" if is_dict else "[")
            stack.append((id(item), iter(sorted(item.items())) if is_dict else iter(item), is_dict, [True]))

    emit(value)
    done: Any = object()
    while stack:
        ident, items, is_dict, first = stack[-1]
        entry: Any = next(items, done)
        if entry is done:
            out.append("}" if is_dict else "]")
            open_ids.discard(ident)
            stack.pop()
            continue
        if not first[0]:
            out.append(item_sep)
        first[0] = False
        if is_dict:
            out += [quote(_key_text(entry[0], allow_nan)), key_sep]
            entry = entry[1]
        emit(entry)
    return "".join(out)


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


class DuplicateKeyError(ValueError):
    """A JSON object or YAML mapping repeats a key: parsers keep the last value and drop the first unsaid."""


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads`' `object_pairs_hook` that builds the same dict, or raises `DuplicateKeyError` naming the key.

    Examples:
        >>> unique_pairs([("a", 1), ("b", 2)])
        {'a': 1, 'b': 2}
        >>> unique_pairs([("a", 1), ("a", 2)])
        Traceback (most recent call last):
        ...
        keel.core.ids.DuplicateKeyError: key 'a' appears twice in one object
    """
    value = dict(pairs)
    if len(value) != len(pairs):  # the common case costs one length check; the key is found only on a repeat
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise DuplicateKeyError(f"key {shown(repeated)} appears twice in one object")
    return value
