"""One duration parser for commands, alert files, rollouts and garbage collection."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keel.core.durations import looks_like_duration, parse_duration
from keel.core.errors import InputError
from keel.monitor import parse_duration as monitor_duration
from keel.monitor._alerts import _alert_duration
from keel.store import parse_duration as store_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1.5h", 5400), ("7d", 604800), ("2w", 1209600), (" 5M ", 300)],
)
def test_every_unit_is_read_the_same_everywhere(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert monitor_duration(text) == timedelta(seconds=seconds)
    assert _alert_duration(text) == timedelta(seconds=seconds)
    assert store_seconds(text) == seconds
    assert looks_like_duration(text)


def test_zero_and_bare_numbers_only_where_they_mean_something() -> None:
    with pytest.raises(InputError, match="expected a duration such as 30s.*more than zero"):
        monitor_duration("0s")  # a window or interval of nothing
    assert _alert_duration("0s") == timedelta(0)  # `for: 0s`: fire on the first breach
    assert store_seconds("0") == 0.0 and store_seconds("90") == 90.0  # `--grace 90`
    with pytest.raises(InputError, match="more than zero"):
        monitor_duration("90")  # a window without a unit is refused, not guessed


@pytest.mark.parametrize("text", ["", "5", "-5m", "5 minutes", "m", "1e3s", "5m5s", "nan", "inf", "５m", "5m\x00"])
def test_anything_else_is_refused_with_what_was_expected(text: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_duration(text, allow_zero=True)
    assert "expected a duration such as 30s, 5m, 1h, 7d or 2w" in str(raised.value)
    assert repr(text) in str(raised.value)
    assert not looks_like_duration(text)
