r"""Checks a JSON line must pass before Keel stores it: what would be changed, lost or unreadable later.

Valid JSON is not always storable: `NaN` and `Infinity` are not JSON numbers (exports would not parse),
`1e400` overflows a float, integers beyond 64 bits would become floats in Arrow, a lone surrogate
escape (`"\ud800"`) is not Unicode, and deep nesting overflows recursive parsers (Python's `json`,
pyarrow) or makes Parquet files no reader opens. Each check first tests the raw bytes at C speed,
never missing a bad line (a line nests at most as deep as it has `[` and `{`); only lines it flags
get the exact check. Knows nothing of files, records or datasets.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np

# `unique_pairs` refuses a repeated key: the parsed value keeps only its last value, so a check of it
# (`parsed_line_issue`) could miss what the first one held (`{"a": NaN, "a": 1}`); such lines go to the byte check.
from keel.core.ids import DuplicateKeyError, unique_pairs

__all__ = [
    "MAX_JSON_DEPTH",
    "DuplicateKeyError",
    "JsonIssue",
    "JsonLineReason",
    "json_depth",
    "json_line_issue",
    "may_have_issue",
    "parsed_line_issue",
    "unique_pairs",
]

MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects a line may have (the top-level object is level 1).

Stored shards must be readable by any Parquet reader, and pyarrow's refuses schemas more than 100
levels deep, where a list takes two levels and a struct one: 32 JSON levels stay under 64. For
comparison, Elasticsearch limits mappings to 20 levels and BigQuery records to 15.
"""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Anything that could be one of the problems below. Sound, not exact: an int64 overflow has >= 19
# digits, a float overflow >= 19 digits or a 3-digit exponent, a lone surrogate a \uD8..-\uDF.. escape.
SUSPECT = re.compile(rb"\d{19}|[eE][+-]?\d{3}|NaN|Infinity|\\u[dD][89a-fA-F]")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string literal, escapes included (unrolled loop)
_NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_OPEN, _CLOSE = (ord("["), ord("{")), (ord("]"), ord("}"))
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JsonLineReason(StrEnum):
    """Why a JSON line cannot be stored as it is."""

    TOO_DEEP = "too_deep"
    NON_FINITE_NUMBER = "non_finite_number"
    INTEGER_OUT_OF_RANGE = "integer_out_of_range"
    INVALID_UNICODE = "invalid_unicode"


class JsonIssue(NamedTuple):
    """Why a line cannot be stored, and a sentence saying what was found."""

    reason: JsonLineReason
    detail: str


def json_depth(line: bytes) -> int:
    """How deep arrays and objects nest in one JSON text (brackets inside strings do not count).

    Examples:
        >>> json_depth(b'{"a": [[1], "]]]"]}')
        3
    """
    skeleton = np.frombuffer(_STRING.sub(b'""', line), dtype=np.uint8)
    if not len(skeleton):
        return 0
    steps = np.isin(skeleton, _OPEN).astype(np.int64) - np.isin(skeleton, _CLOSE).astype(np.int64)
    return int(max(np.cumsum(steps).max(), 0))


def may_have_issue(line: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """A fast test that is True for every line `json_line_issue` would refuse (and for a few it accepts)."""
    return line.count(b"[") + line.count(b"{") > max_depth or SUSPECT.search(line) is not None


def json_line_issue(line: bytes, *, max_depth: int = MAX_JSON_DEPTH, exact_integers: bool = True) -> JsonIssue | None:
    """What keeps one JSON line (valid UTF-8) from being stored unchanged, or None if nothing does.

    Args:
        line: The line's bytes.
        max_depth: The deepest nesting allowed.
        exact_integers: Refuse integers outside int64 (they would become floats in an Arrow column).
            Curation keeps fields other than text and id as JSON text, where they stay exact.

    Examples:
        >>> json_line_issue(b'{"n": NaN}').reason
        <JsonLineReason.NON_FINITE_NUMBER: 'non_finite_number'>
        >>> json_line_issue(b'{"n": 1}') is None
        True
    """
    if not may_have_issue(line, max_depth=max_depth):
        return None
    skeleton = _STRING.sub(b'""', line)  # numbers and literals outside strings only
    depth = json_depth(line)
    if depth > max_depth:
        detail = f"arrays and objects nest {depth} levels deep; at most {max_depth} are allowed"
        return JsonIssue(JsonLineReason.TOO_DEEP, detail)
    literal = re.search(rb"-?(NaN|Infinity)", skeleton)
    if literal:
        return JsonIssue(JsonLineReason.NON_FINITE_NUMBER, f"{literal.group().decode()} is not a JSON number")
    for match in _NUMBER.finditer(skeleton):
        token = match.group()
        if match.group(1) is None and match.group(2) is None:
            # More than 19 digits is out of range: no int() of it (Python refuses over 4,300 digits).
            digits = len(token.lstrip(b"-"))
            if exact_integers and (digits > 19 or not _INT64_MIN <= int(token) <= _INT64_MAX):
                shown = token.decode() if len(token) <= 40 else f"{token[:20].decode()}… ({len(token)} digits)"
                detail = f"integer {shown} does not fit in 64 bits (int64)"
                return JsonIssue(JsonLineReason.INTEGER_OUT_OF_RANGE, detail)
        elif float(token) in (float("inf"), float("-inf")):
            shown = token.decode() if len(token) <= 40 else f"{token[:20].decode()}…"
            return JsonIssue(JsonLineReason.NON_FINITE_NUMBER, f"{shown} overflows a 64-bit float")
    if _SURROGATE_ESCAPE.search(line):
        try:
            json.dumps(json.loads(line), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return JsonIssue(JsonLineReason.INVALID_UNICODE, "a \\uD800-\\uDFFF escape is not part of a pair")
        except ValueError:
            return None  # not JSON at all: the caller's parser says so
    return None


def _may_have_issue_parsed(value: Any, max_depth: int, exact_integers: bool) -> bool:
    """True for every parsed value whose line `json_line_issue` refuses, bar lone surrogates (checked on the bytes).

    Such a line nests deeper than `max_depth`, holds NaN or an infinity (a literal, or a float that overflows),
    or (with `exact_integers`) an integer outside int64: all visible in the parsed value, since the parser
    reads numbers with the same `float`/`int` and, without repeated keys, drops nothing.
    """
    if max_depth >= 1 and type(value) is dict and all(type(item) is str for item in value.values()):
        return False  # the usual record, {"id": ..., "text": ...}: one level of strings, nothing to walk
    todo: list[tuple[Any, int]] = [([value], 0)]  # containers and their depth; the value itself sits in a list
    while todo:
        container, depth = todo.pop()
        if depth > max_depth:
            return True
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue
            if kind is float:
                if not math.isfinite(item):
                    return True
            elif kind is int:
                if exact_integers and not _INT64_MIN <= item <= _INT64_MAX:
                    return True
            else:  # a dict or a list: one level deeper
                todo.append((item, depth + 1))
    return False


def parsed_line_issue(
    line: bytes, value: Any, *, max_depth: int = MAX_JSON_DEPTH, exact_integers: bool = True
) -> JsonIssue | None:
    r"""`json_line_issue(line, ...)` for a line already parsed (`json.loads(line, object_pairs_hook=unique_pairs)`).

    The same answer, found from the parsed value: only a line whose value may have an issue (or whose bytes
    hold a `\uD800`-`\uDFFF` escape) is checked byte by byte. Written by hand for speed: on documentation text
    `may_have_issue`'s pattern matches prose and code ("NaN", "e100", brackets) in 15% of the lines, and then
    the byte checks re-scan them; the curation reader read the 14,717 lines of benchmarks/real_text_corpus.py
    in 1.01 CPU-s checking bytes first, 0.23 parsing first (best of 5, with its other per-line savings).

    Examples:
        >>> parsed_line_issue(b'{"n": NaN}', json.loads(b'{"n": NaN}')).reason
        <JsonLineReason.NON_FINITE_NUMBER: 'non_finite_number'>
        >>> parsed_line_issue(b'{"s": "NaN in [[text]]"}', {"s": "NaN in [[text]]"}) is None
        True
    """
    if _may_have_issue_parsed(value, max_depth, exact_integers) or _SURROGATE_ESCAPE.search(line):
        return json_line_issue(line, max_depth=max_depth, exact_integers=exact_integers)
    return None
