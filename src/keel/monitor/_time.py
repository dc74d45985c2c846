"""Durations and moments as people type them: `5m`, `1h`, `7d`, or an ISO-8601 time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from keel.core.errors import InputError

__all__ = ["parse_duration", "parse_since"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """A positive duration written as a number and a unit (s, m, h, d, w).

    Raises:
        InputError: Anything else.

    Examples:
        >>> parse_duration("5m")
        datetime.timedelta(seconds=300)
    """
    found = _DURATION.fullmatch(text.strip().lower())
    seconds = float(found.group(1)) * _UNITS[found.group(2)] if found else 0.0
    if seconds <= 0:
        raise InputError(f"expected a duration such as 30s, 5m, 1h, 7d or 2w; got {text!r}")
    return timedelta(seconds=seconds)


def parse_since(text: str, now: datetime) -> datetime:
    """A moment: a duration back from `now` (`7d`) or an ISO-8601 date or time (UTC when no zone is given).

    Raises:
        InputError: Neither.

    Examples:
        >>> parse_since("2026-12-01", datetime(2026, 12, 6, tzinfo=UTC)).isoformat()
        '2026-12-01T00:00:00+00:00'
    """
    if _DURATION.fullmatch(text.strip().lower()):
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"expected a duration such as 7d or an ISO date such as 2026-12-01; got {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
