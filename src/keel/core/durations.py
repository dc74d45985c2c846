"""Durations as people type them: `500ms`, `30s`, `5m`, `1h`, `7d`, `2w` — one parser for every command and file."""

from __future__ import annotations

import re
from datetime import timedelta

from keel.core.errors import InputError

__all__ = ["looks_like_duration", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.ASCII)  # ASCII digits only
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def looks_like_duration(text: str) -> bool:
    """Whether `text` is a number followed by a unit (case and surrounding spaces ignored).

    Examples:
        >>> looks_like_duration("7d"), looks_like_duration("2026-12-01")
        (True, False)
    """
    return _DURATION.fullmatch(str(text).strip().lower()) is not None


def parse_duration(text: str, *, allow_zero: bool = False, bare_seconds: bool = False) -> timedelta:
    """A duration written as a number and a unit (ms, s, m, h, d, w).

    Args:
        text: What the user wrote.
        allow_zero: Accept `0s` (a rule's `for: 0s`, a garbage collector's zero grace).
        bare_seconds: Read a plain number as seconds (`--grace 90`).

    Raises:
        InputError: Anything else, or zero when `allow_zero` is off; the message shows what was expected.

    Examples:
        >>> parse_duration("5m")
        datetime.timedelta(seconds=300)
        >>> parse_duration("90", bare_seconds=True).total_seconds()
        90.0
    """
    cleaned = str(text).strip().lower()
    found = _DURATION.fullmatch(cleaned)
    seconds = -1.0
    if found is not None:
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    elif bare_seconds and re.fullmatch(r"\d+(?:\.\d+)?", cleaned, re.ASCII):
        seconds = float(cleaned)
    if seconds < 0 or (seconds == 0 and not allow_zero):
        examples = "30s, 5m, 1h, 7d or 2w" + (" (or a number of seconds)" if bare_seconds else "")
        positive = "" if allow_zero else ", more than zero"
        raise InputError(f"expected a duration such as {examples}{positive}; got {text!r}")
    return timedelta(seconds=seconds)
