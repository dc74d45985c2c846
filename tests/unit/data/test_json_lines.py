"""The checks a JSON line passes before it is stored: exact on what they refuse, and never missing one."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.data._json_lines import (
    MAX_JSON_DEPTH,
    DuplicateKeyError,
    JsonLineReason,
    json_depth,
    json_line_issue,
    may_have_issue,
    parsed_line_issue,
    unique_pairs,
)

INT64 = (-(2**63), 2**63 - 1)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=10)
    | st.sampled_from(["[", "]]", "{{", "}", '"', "\\", "NaN", "Infinity", "\\ud800", "12345678901234567890"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=25,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def _ints(value: object) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [i for v in value for i in _ints(v)]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints(v)]
    return []


@settings(max_examples=200, deadline=None)
@given(json_values, st.booleans())
def test_the_checks_refuse_exactly_what_cannot_be_stored(value: object, ascii_only: bool) -> None:
    line = json.dumps({"v": value}, ensure_ascii=ascii_only).encode()
    depth = _depth({"v": value})
    assert json_depth(line) == depth  # brackets inside strings do not count
    wide = [i for i in _ints(value) if not INT64[0] <= i <= INT64[1]]
    issue = json_line_issue(line, max_depth=4)
    if depth > 4:
        assert issue is not None and issue.reason is JsonLineReason.TOO_DEEP
    elif wide:
        assert issue is not None and issue.reason is JsonLineReason.INTEGER_OUT_OF_RANGE
        assert json_line_issue(line, max_depth=4, exact_integers=False) is None
    else:
        assert issue is None
    if issue is not None:
        assert may_have_issue(line, max_depth=4)  # the fast test never misses a line the exact one refuses


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"n": NaN}', JsonLineReason.NON_FINITE_NUMBER),
        (b'{"n": [1, -Infinity]}', JsonLineReason.NON_FINITE_NUMBER),
        (b'{"n": 1e400}', JsonLineReason.NON_FINITE_NUMBER),
        (b'{"n": -2.5E+309}', JsonLineReason.NON_FINITE_NUMBER),
        (b'{"n": 9223372036854775808}', JsonLineReason.INTEGER_OUT_OF_RANGE),
        (b'{"n": -9223372036854775809}', JsonLineReason.INTEGER_OUT_OF_RANGE),
        (b'{"n": ' + b"7" * 5000 + b"}", JsonLineReason.INTEGER_OUT_OF_RANGE),  # past int()'s digit limit
        (b'{"s": "\\ud800"}', JsonLineReason.INVALID_UNICODE),
        (b'{"s": "a\\udfff"}', JsonLineReason.INVALID_UNICODE),
        (b'{"n": ' + b"[" * 40_000 + b"]" * 40_000 + b"}", JsonLineReason.TOO_DEEP),
    ],
)
def test_each_kind_of_line_that_cannot_be_stored(line: bytes, reason: JsonLineReason) -> None:
    issue = json_line_issue(line)
    assert issue is not None and issue.reason is reason and issue.detail


@pytest.mark.parametrize(
    "line",
    [
        b'{"n": 9223372036854775807, "m": -9223372036854775808}',
        b'{"s": "NaN and Infinity and 1e400 and 99999999999999999999 in text"}',
        b'{"s": "\\ud83d\\ude00", "t": "\\\\ud800 is an escaped backslash"}',
        b'{"n": 1e308, "m": 1.5e-400}',
        b'{"a": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}",
        b'{"s": "' + b"[" * 1000 + b'"}',
    ],
)
def test_lines_that_only_look_suspect_pass(line: bytes) -> None:
    assert json_line_issue(line) is None


@settings(max_examples=200, deadline=None)
@given(json_values, st.booleans(), st.booleans())
def test_the_check_of_a_parsed_value_answers_as_the_check_of_its_bytes(
    value: object, ascii_only: bool, exact_integers: bool
) -> None:
    line = json.dumps({"v": value}, ensure_ascii=ascii_only).encode()
    parsed = json.loads(line, object_pairs_hook=unique_pairs)
    options = {"max_depth": 4, "exact_integers": exact_integers}
    assert parsed_line_issue(line, parsed, **options) == json_line_issue(line, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line",
    [b'{"n": NaN}', b'{"n": [1, -Infinity]}', b'{"n": 1e400}', b'{"n": 9223372036854775808}', b'{"s": "\\ud800"}'],
)
def test_a_parsed_value_with_an_issue_gets_the_byte_checks_answer(line: bytes) -> None:
    issue = parsed_line_issue(line, json.loads(line))
    assert issue is not None and issue == json_line_issue(line)


def test_a_repeated_key_is_refused_by_the_pairs_hook() -> None:
    with pytest.raises(DuplicateKeyError):
        json.loads(b'{"a": NaN, "a": 1}', object_pairs_hook=unique_pairs)
    assert json.loads(b'{"a": {"b": 1}, "c": 2}', object_pairs_hook=unique_pairs) == {"a": {"b": 1}, "c": 2}
