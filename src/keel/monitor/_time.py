"""Durations and moments as people type them: `5m`, `1h`, `7d`, or an ISO-8601 time."""

from __future__ import annotations

from datetime import UTC, datetime

from keel.core.durations import looks_like_duration, parse_duration
from keel.core.echo import shown
from keel.core.errors import InputError

__all__ = ["parse_duration", "parse_since"]


def parse_since(text: str, now: datetime) -> datetime:
    """A moment: a duration back from `now` (`7d`) or an ISO-8601 date or time (UTC when no zone is given).

    Raises:
        InputError: Neither.

    Examples:
        >>> parse_since("2026-12-01", datetime(2026, 12, 6, tzinfo=UTC)).isoformat()
        '2026-12-01T00:00:00+00:00'
    """
    if looks_like_duration(text):
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"expected a duration such as 7d or an ISO date such as 2026-12-01; got {shown(text)}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
