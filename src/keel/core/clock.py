"""Time as Keel records it: timezone-aware UTC, replaceable in tests for deterministic output."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "format_time", "system_clock"]

Clock = Callable[[], datetime]
"""A zero-argument callable returning an aware UTC `datetime`; injected where time is recorded."""


def system_clock() -> datetime:
    """The current time in UTC, microsecond precision.

    Examples:
        >>> system_clock().tzinfo is UTC
        True
    """
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a `Z`, the one textual form hashed and printed.

    Examples:
        >>> format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
        '2026-01-02T03:04:05.000000Z'
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
