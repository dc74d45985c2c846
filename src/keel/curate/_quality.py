"""Heuristic text-quality signals (Gopher, C4, FineWeb) and the rules that turn them into drop reasons.

Signals are exact numbers computed once per document and kept, so a user can see why a document
was dropped and re-tune thresholds without recomputing. A batch is measured column-wise with Arrow
string kernels and numpy, never word by word in Python. This module knows nothing of steps, record
batches or storage: the curation engine wraps it. It does not detect language or remove bad words.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keel.core.echo import shown
from keel.core.errors import InputError
from keel.curate._quality_signals import (
    BULLETS,
    DUP_NGRAMS,
    FINEWEB_END_CHARS,
    FINEWEB_SHORT_LINE_CHARS,
    GOPHER_NGRAMS,
    SENTENCE_END_CHARS,
    STOP_WORDS,
    as_text_array,
    signal_columns,
)
from keel.curate._quality_signals import _sorted_groups as _sorted_groups  # re-exported for tests

__all__ = [
    "BULLETS",
    "C4_END_MARKS",
    "C4_POLICY_SUBSTRINGS",
    "FINEWEB_END_CHARS",
    "FINEWEB_SHORT_LINE_CHARS",
    "SENTENCE_END_CHARS",
    "SIGNAL_NAMES",
    "STOP_WORDS",
    "C4LineReason",
    "QUALITY_PRESETS",
    "QualityPreset",
    "QualityReason",
    "QualityThresholds",
    "RuleCheck",
    "explain_rules",
    "c4_clean_lines",
    "failed_rules",
    "quality_signal_columns",
    "quality_signals",
    "quality_signals_many",
    "rule_failures",
    "thresholds_from_params",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

C4_END_MARKS = (".", "?", "!", '"', "\u201d")
"""Line endings C4 keeps: the tfds reference's four marks plus the typographic closing quote."""

C4_POLICY_SUBSTRINGS = (
    "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"
)  # fmt: skip


class QualityReason(StrEnum):
    """Why a document is dropped: each value is the `QualityThresholds` field whose rule it failed."""

    MIN_CHARS = "min_chars"
    MAX_CHARS = "max_chars"
    GOPHER_MIN_WORDS = "gopher_min_words"
    GOPHER_MAX_WORDS = "gopher_max_words"
    GOPHER_MIN_MEAN_WORD_LENGTH = "gopher_min_mean_word_length"
    GOPHER_MAX_MEAN_WORD_LENGTH = "gopher_max_mean_word_length"
    GOPHER_MAX_HASH_RATIO = "gopher_max_hash_ratio"
    GOPHER_MAX_ELLIPSIS_RATIO = "gopher_max_ellipsis_ratio"
    GOPHER_MAX_BULLET_LINE_FRACTION = "gopher_max_bullet_line_fraction"
    GOPHER_MAX_ELLIPSIS_LINE_FRACTION = "gopher_max_ellipsis_line_fraction"
    GOPHER_MIN_ALPHA_WORD_FRACTION = "gopher_min_alpha_word_fraction"
    GOPHER_MIN_STOP_WORDS = "gopher_min_stop_words"
    GOPHER_MAX_DUP_LINE_FRACTION = "gopher_max_dup_line_fraction"
    GOPHER_MAX_DUP_PARAGRAPH_FRACTION = "gopher_max_dup_paragraph_fraction"
    GOPHER_MAX_DUP_LINE_CHAR_FRACTION = "gopher_max_dup_line_char_fraction"
    GOPHER_MAX_DUP_PARAGRAPH_CHAR_FRACTION = "gopher_max_dup_paragraph_char_fraction"
    GOPHER_MAX_TOP_2GRAM_CHAR_FRACTION = "gopher_max_top_2gram_char_fraction"
    GOPHER_MAX_TOP_3GRAM_CHAR_FRACTION = "gopher_max_top_3gram_char_fraction"
    GOPHER_MAX_TOP_4GRAM_CHAR_FRACTION = "gopher_max_top_4gram_char_fraction"
    GOPHER_MAX_DUP_5GRAM_CHAR_FRACTION = "gopher_max_dup_5gram_char_fraction"
    GOPHER_MAX_DUP_6GRAM_CHAR_FRACTION = "gopher_max_dup_6gram_char_fraction"
    GOPHER_MAX_DUP_7GRAM_CHAR_FRACTION = "gopher_max_dup_7gram_char_fraction"
    GOPHER_MAX_DUP_8GRAM_CHAR_FRACTION = "gopher_max_dup_8gram_char_fraction"
    GOPHER_MAX_DUP_9GRAM_CHAR_FRACTION = "gopher_max_dup_9gram_char_fraction"
    GOPHER_MAX_DUP_10GRAM_CHAR_FRACTION = "gopher_max_dup_10gram_char_fraction"
    C4_MIN_SENTENCES = "c4_min_sentences"
    C4_MAX_WORD_LENGTH = "c4_max_word_length"
    C4_NO_LOREM_IPSUM = "c4_no_lorem_ipsum"
    C4_NO_CURLY_BRACKET = "c4_no_curly_bracket"
    FINEWEB_MIN_LINE_PUNCT_RATIO = "fineweb_min_line_punct_ratio"
    FINEWEB_MAX_SHORT_LINE_RATIO = "fineweb_max_short_line_ratio"
    FINEWEB_MAX_CHAR_DUP_RATIO = "fineweb_max_char_dup_ratio"
    FINEWEB_MAX_LIST_RATIO = "fineweb_max_list_ratio"


class C4LineReason(StrEnum):
    """Why `c4_clean_lines` removed a line, checked in this order (the C4 reference's order)."""

    TOO_LONG_WORD = "c4_line_too_long_word"
    NO_TERMINAL_PUNCT = "c4_line_no_terminal_punct"
    TOO_FEW_WORDS = "c4_line_too_few_words"
    JAVASCRIPT = "c4_line_javascript"
    POLICY = "c4_line_policy"


def _limit(default: float | None, doc: str) -> float | None:
    return Field(default, ge=0, description=doc)


def _count(default: int | None, doc: str) -> int | None:
    return Field(default, ge=0, description=doc)


class QualityThresholds(BaseModel):
    """Every threshold of every rule; `None` (or `False`) switches a rule off.

    A pydantic model rather than a dataclass because thresholds arrive as step parameters from
    YAML: `extra="forbid"` turns a misspelt name into an error instead of a silently ignored
    knob, and numbers written as strings or ints are checked and converted in one place.
    A document fails a `min` rule when its signal is below the limit and a `max` rule when above.

    Examples:
        >>> QualityThresholds(gopher_min_words=20).gopher_min_words
        20
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_chars: int | None = _count(None, "Fewest characters (code points) a document may have.")
    max_chars: int | None = _count(None, "Most characters (code points) a document may have.")
    gopher_min_words: int | None = _count(50, "Fewest words (tokens with a non-punctuation character); Gopher 50.")
    gopher_max_words: int | None = _count(100_000, "Most words; Gopher 100,000.")
    gopher_min_mean_word_length: float | None = _limit(3.0, "Shortest mean word length in characters; Gopher 3.")
    gopher_max_mean_word_length: float | None = _limit(10.0, "Longest mean word length in characters; Gopher 10.")
    gopher_max_hash_ratio: float | None = _limit(0.1, "Most '#' per word; Gopher 0.1.")
    gopher_max_ellipsis_ratio: float | None = _limit(0.1, "Most '...' or '…' per word; Gopher 0.1.")
    gopher_max_bullet_line_fraction: float | None = _limit(0.9, "Most non-blank lines opening with a bullet; 0.9.")
    gopher_max_ellipsis_line_fraction: float | None = _limit(0.3, "Most non-blank lines ending in an ellipsis; 0.3.")
    gopher_min_alpha_word_fraction: float | None = _limit(
        0.8, "Least share of tokens with a letter; Gopher 0.8 (datatrove: max_non_alpha_words_ratio)."
    )
    gopher_min_stop_words: int | None = _count(2, "Fewest occurrences of the Gopher stop words; Gopher 2.")
    gopher_max_dup_line_fraction: float | None = _limit(0.3, "Most repeated lines per non-blank line; 0.3.")
    gopher_max_dup_paragraph_fraction: float | None = _limit(0.3, "Most repeated paragraphs per paragraph; 0.3.")
    gopher_max_dup_line_char_fraction: float | None = _limit(0.2, "Most characters in repeated lines; 0.2.")
    gopher_max_dup_paragraph_char_fraction: float | None = _limit(0.2, "Most characters in repeated paragraphs; 0.2.")
    gopher_max_top_2gram_char_fraction: float | None = _limit(0.20, "Most word chars in the top 2-gram; 0.20.")
    gopher_max_top_3gram_char_fraction: float | None = _limit(0.18, "Most word chars in the top 3-gram; 0.18.")
    gopher_max_top_4gram_char_fraction: float | None = _limit(0.16, "Most word chars in the top 4-gram; 0.16.")
    gopher_max_dup_5gram_char_fraction: float | None = _limit(0.15, "Most word chars in repeated 5-grams; 0.15.")
    gopher_max_dup_6gram_char_fraction: float | None = _limit(0.14, "Most word chars in repeated 6-grams; 0.14.")
    gopher_max_dup_7gram_char_fraction: float | None = _limit(0.13, "Most word chars in repeated 7-grams; 0.13.")
    gopher_max_dup_8gram_char_fraction: float | None = _limit(0.12, "Most word chars in repeated 8-grams; 0.12.")
    gopher_max_dup_9gram_char_fraction: float | None = _limit(0.11, "Most word chars in repeated 9-grams; 0.11.")
    gopher_max_dup_10gram_char_fraction: float | None = _limit(0.10, "Most word chars in repeated 10-grams; 0.10.")
    c4_min_sentences: int | None = _count(3, "Fewest sentences; C4 reference code 3 (datatrove 5).")
    c4_max_word_length: int | None = _count(1000, "Longest word in characters, per document and per line; C4 1000.")
    c4_no_lorem_ipsum: bool = Field(True, description="Drop documents containing 'lorem ipsum' (any case); C4.")
    c4_no_curly_bracket: bool = Field(True, description="Drop documents containing '{'; C4.")
    c4_min_words_per_line: int | None = _count(5, "Line cleaner: fewest words in a kept line; C4 code 5 (datatrove 3).")
    c4_drop_no_terminal_punct_lines: bool = Field(True, description='Line cleaner: drop lines not ending in . ? ! "')
    c4_drop_javascript_lines: bool = Field(True, description="Line cleaner: drop lines mentioning 'javascript'.")
    c4_drop_policy_lines: bool = Field(True, description="Line cleaner: drop terms-of-use / privacy / cookie lines.")
    fineweb_min_line_punct_ratio: float | None = _limit(0.12, "Least share of lines ending in punctuation; 0.12.")
    fineweb_max_short_line_ratio: float | None = _limit(0.67, "Most share of lines of <= 30 characters; 0.67.")
    fineweb_max_char_dup_ratio: float | None = _limit(0.01, "Most share of characters in repeated lines; 0.01.")
    fineweb_max_list_ratio: float | None = _limit(0.3, "Most newlines per word; 0.3.")


QualityPreset = Literal["web", "documents"]

QUALITY_PRESETS: dict[str, dict[str, object]] = {
    # Today's Gopher, C4 and FineWeb rules, for web crawls: they drop ~75% of python3-doc's pages.
    "web": {},
    # Organisational text (manuals, policies, tickets, code docs): code braces, short texts, lists, tables,
    # non-English and repeated headings are normal there; empty, placeholder, keyboard-mash and boilerplate
    # texts are still dropped. Keeps 99% of python3-doc's 498 pages (tests/unit/curate/test_real_text.py).
    "documents": {
        "gopher_min_words": 10,
        "gopher_max_words": 1_000_000,
        "gopher_min_mean_word_length": 2.0,
        "gopher_max_mean_word_length": 15.0,
        "gopher_max_hash_ratio": 0.5,
        "gopher_max_ellipsis_ratio": 0.3,
        "gopher_max_ellipsis_line_fraction": 0.5,
        "gopher_max_bullet_line_fraction": None,  # a manual's list section is all bullets
        "gopher_min_alpha_word_fraction": 0.5,
        "gopher_min_stop_words": None,
        "gopher_max_dup_line_fraction": 0.6,
        "gopher_max_dup_paragraph_fraction": 0.6,
        "gopher_max_dup_line_char_fraction": 0.5,
        "gopher_max_dup_paragraph_char_fraction": 0.5,
        "gopher_max_top_2gram_char_fraction": 0.4,
        "gopher_max_top_3gram_char_fraction": 0.36,
        "gopher_max_top_4gram_char_fraction": 0.32,
        **{f"gopher_max_dup_{n}gram_char_fraction": round(0.5 - (n - 5) * 0.01, 2) for n in DUP_NGRAMS},
        "c4_min_sentences": None,
        "c4_no_curly_bracket": False,
        "fineweb_min_line_punct_ratio": None,
        "fineweb_max_short_line_ratio": None,
        "fineweb_max_char_dup_ratio": None,
        "fineweb_max_list_ratio": None,
    },
}
"""Threshold sets by name: a recipe's `quality: {preset: documents, ...}` starts from one and overrides fields."""


def thresholds_from_params(
    params: Mapping[str, object] | None = None, preset: QualityPreset = "web"
) -> QualityThresholds:
    """Build thresholds from step parameters (e.g. YAML `quality: {gopher_min_words: 20}`).

    Args:
        params: Field names of `QualityThresholds` and their values; missing fields keep the preset's.
        preset: The threshold set to start from (`QUALITY_PRESETS`).

    Returns:
        The validated thresholds.

    Raises:
        InputError: Listing every unknown name (with the closest known one) and every bad value.

    Examples:
        >>> thresholds_from_params({"gopher_min_words": 20}).gopher_min_words
        20
    """
    try:
        return QualityThresholds.model_validate({**QUALITY_PRESETS[preset], **dict(params or {})})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"])
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(name, QualityThresholds.model_fields, n=1)
                problems.append(f"unknown threshold {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            else:
                problems.append(f"{name}: {err['msg']} (got {shown(err['input'])})")
        raise InputError(
            "expected quality thresholds named as in docs/quality-rules.md, found: " + "; ".join(problems),
            hint="fix or remove those keys; use null to switch a rule off",
        ) from None


class _Rule(NamedTuple):
    reason: QualityReason
    signal: str
    bound: Literal["min", "max", "flag"]


_RULES: tuple[_Rule, ...] = (
    _Rule(QualityReason.MIN_CHARS, "char_count", "min"),
    _Rule(QualityReason.MAX_CHARS, "char_count", "max"),
    _Rule(QualityReason.GOPHER_MIN_WORDS, "gopher_word_count", "min"),
    _Rule(QualityReason.GOPHER_MAX_WORDS, "gopher_word_count", "max"),
    _Rule(QualityReason.GOPHER_MIN_MEAN_WORD_LENGTH, "gopher_mean_word_length", "min"),
    _Rule(QualityReason.GOPHER_MAX_MEAN_WORD_LENGTH, "gopher_mean_word_length", "max"),
    _Rule(QualityReason.GOPHER_MAX_HASH_RATIO, "gopher_hash_ratio", "max"),
    _Rule(QualityReason.GOPHER_MAX_ELLIPSIS_RATIO, "gopher_ellipsis_ratio", "max"),
    _Rule(QualityReason.GOPHER_MAX_BULLET_LINE_FRACTION, "gopher_bullet_line_fraction", "max"),
    _Rule(QualityReason.GOPHER_MAX_ELLIPSIS_LINE_FRACTION, "gopher_ellipsis_line_fraction", "max"),
    _Rule(QualityReason.GOPHER_MIN_ALPHA_WORD_FRACTION, "gopher_alpha_word_fraction", "min"),
    _Rule(QualityReason.GOPHER_MIN_STOP_WORDS, "gopher_stop_word_count", "min"),
    _Rule(QualityReason.GOPHER_MAX_DUP_LINE_FRACTION, "gopher_dup_line_fraction", "max"),
    _Rule(QualityReason.GOPHER_MAX_DUP_PARAGRAPH_FRACTION, "gopher_dup_paragraph_fraction", "max"),
    _Rule(QualityReason.GOPHER_MAX_DUP_LINE_CHAR_FRACTION, "gopher_dup_line_char_fraction", "max"),
    _Rule(QualityReason.GOPHER_MAX_DUP_PARAGRAPH_CHAR_FRACTION, "gopher_dup_paragraph_char_fraction", "max"),
    *(_Rule(QualityReason(f"gopher_max_top_{n}gram_char_fraction"), f"gopher_top_{n}gram_char_fraction", "max")
      for n in GOPHER_NGRAMS),
    *(_Rule(QualityReason(f"gopher_max_dup_{n}gram_char_fraction"), f"gopher_dup_{n}gram_char_fraction", "max")
      for n in DUP_NGRAMS),
    _Rule(QualityReason.C4_MIN_SENTENCES, "c4_sentence_count", "min"),
    _Rule(QualityReason.C4_MAX_WORD_LENGTH, "c4_max_word_length", "max"),
    _Rule(QualityReason.C4_NO_LOREM_IPSUM, "c4_has_lorem_ipsum", "flag"),
    _Rule(QualityReason.C4_NO_CURLY_BRACKET, "c4_has_curly_bracket", "flag"),
    _Rule(QualityReason.FINEWEB_MIN_LINE_PUNCT_RATIO, "fineweb_line_punct_ratio", "min"),
    _Rule(QualityReason.FINEWEB_MAX_SHORT_LINE_RATIO, "fineweb_short_line_ratio", "max"),
    _Rule(QualityReason.FINEWEB_MAX_CHAR_DUP_RATIO, "fineweb_char_dup_ratio", "max"),
    _Rule(QualityReason.FINEWEB_MAX_LIST_RATIO, "fineweb_list_ratio", "max"),
)  # fmt: skip

SIGNAL_NAMES: tuple[str, ...] = tuple(dict.fromkeys(rule.signal for rule in _RULES))
"""Every signal `quality_signals` returns, in a stable order; the names are column names."""


def _check_signals(names: Sequence[str] | Mapping[str, object], thresholds: QualityThresholds) -> None:
    missing = [r.signal for r in _RULES if getattr(thresholds, r.reason.value) not in (None, False)
               and r.signal not in names]  # fmt: skip
    if missing:
        raise InputError(
            f"expected every signal the enabled rules read, found none for {sorted(set(missing))}",
            hint="compute them with quality_signals / quality_signal_columns, or switch those rules off",
        )


def failed_rules(signals: Mapping[str, float], thresholds: QualityThresholds) -> list[QualityReason]:
    """The rules a document fails, in a stable order; an empty list means keep it.

    Args:
        signals: One document's signals, as returned by `quality_signals`.
        thresholds: The limits; rules whose limit is `None` or `False` are skipped.

    Returns:
        The reasons (`QualityReason`, which are `str`), in `QualityReason` order.

    Raises:
        InputError: When an enabled rule's signal is missing from `signals`.

    Examples:
        >>> [str(reason) for reason in failed_rules(quality_signals("Too short."), QualityThresholds())][:2]
        ['gopher_min_words', 'gopher_min_stop_words']
    """
    _check_signals(signals, thresholds)
    failed = []
    for rule in _RULES:
        limit = getattr(thresholds, rule.reason.value)
        if limit is None or limit is False:
            continue
        value = signals[rule.signal]
        if (rule.bound == "min" and value < limit) or (rule.bound == "max" and value > limit):
            failed.append(rule.reason)
        elif rule.bound == "flag" and value > 0:
            failed.append(rule.reason)
    return failed


def rule_failures(
    columns: Mapping[str, npt.ArrayLike], thresholds: QualityThresholds
) -> dict[QualityReason, BoolArray]:
    """Vectorised `failed_rules`: for each enabled rule, which documents of a batch fail it.

    Args:
        columns: Signal columns, as returned by `quality_signal_columns`.
        thresholds: The limits; rules switched off are absent from the result.

    Returns:
        One boolean array per enabled rule, `True` where the document fails; a document is kept when
        no array is `True` at its index.

    Raises:
        InputError: When an enabled rule's signal column is missing.
    """
    _check_signals(columns, thresholds)
    out: dict[QualityReason, BoolArray] = {}
    for rule in _RULES:
        limit = getattr(thresholds, rule.reason.value)
        if limit is None or limit is False:
            continue
        values = np.asarray(columns[rule.signal], dtype=np.float64)
        if rule.bound == "min":
            out[rule.reason] = values < limit
        elif rule.bound == "max":
            out[rule.reason] = values > limit
        else:
            out[rule.reason] = values > 0
    return out


class RuleCheck(NamedTuple):
    """One enabled rule checked against one document: the measured signal against the rule's limit."""

    reason: str
    signal: str
    value: float
    bound: Literal["min", "max", "flag"]
    limit: float | bool
    failed: bool


def explain_rules(signals: Mapping[str, float], thresholds: QualityThresholds) -> list[RuleCheck]:
    """Every enabled rule with the document's measured value, its limit and whether it failed, in rule order.

    Examples:
        >>> [c.reason for c in explain_rules(quality_signals("Too short."), QualityThresholds()) if c.failed][:1]
        ['gopher_min_words']
    """
    failed = set(failed_rules(signals, thresholds))
    checks = []
    for rule in _RULES:
        limit = getattr(thresholds, rule.reason.value)
        if limit is None or limit is False:
            continue
        value = float(signals[rule.signal])
        checks.append(RuleCheck(rule.reason.value, rule.signal, value, rule.bound, limit, rule.reason in failed))
    return checks


def quality_signals(text: str) -> dict[str, float]:
    r"""Every quality signal of one document (see `SIGNAL_NAMES` and docs/quality-rules.md).

    Each call has a fixed cost of a few milliseconds (measured ~2.5 ms), so for many documents
    call `quality_signals_many` or `quality_signal_columns` with batches of hundreds.

    Args:
        text: The document.

    Returns:
        Signal name -> exact value; the signals of an empty text are all 0.0.

    Examples:
        >>> quality_signals("One line.\nOne line.")["gopher_dup_line_fraction"]
        0.5
    """
    return quality_signals_many([text])[0]


def quality_signals_many(texts: Sequence[str]) -> list[dict[str, float]]:
    """`quality_signals` for each text, computed as one vectorised batch.

    Args:
        texts: The documents.

    Returns:
        One signal dict per text, in order.
    """
    columns = quality_signal_columns(texts)
    rows = np.column_stack([columns[name] for name in SIGNAL_NAMES]).tolist() if len(texts) else []
    return [dict(zip(SIGNAL_NAMES, row, strict=True)) for row in rows]


def quality_signal_columns(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> dict[str, FloatArray]:
    """Every quality signal of a batch, as one float64 column per signal (the engine's fast path).

    Args:
        texts: The documents, as Python strings or an Arrow string array without nulls.

    Returns:
        Signal name -> array with one value per document, keys in `SIGNAL_NAMES` order.

    Raises:
        InputError: When an item is not a string (or the Arrow array holds nulls).
    """
    columns = signal_columns(as_text_array(texts))
    return {name: columns[name] for name in SIGNAL_NAMES}


# --- C4 line cleaning ----------------------------------------------------------------------------------


def c4_clean_lines(text: str, thresholds: QualityThresholds | None = None) -> tuple[str, dict[str, int]]:
    r"""Remove the lines C4 removes; the document-level C4 rules are left to `failed_rules`.

    Lines are stripped, checked in `C4LineReason` order (the first failed check is counted), and
    the kept ones joined with "\n". Blank lines are dropped without being counted.

    Args:
        text: The document.
        thresholds: `c4_max_word_length`, `c4_min_words_per_line` and the `c4_drop_*_lines` switches.

    Returns:
        The cleaned text and, for every `C4LineReason` value, how many lines it removed.

    Examples:
        >>> text, removed = c4_clean_lines("Please enable JavaScript to see this.\nThe cat sat on the mat.")
        >>> text, removed["c4_line_javascript"]
        ('The cat sat on the mat.', 1)
    """
    th = thresholds or _DEFAULT_THRESHOLDS
    removed = dict.fromkeys(C4LineReason, 0)
    kept = []
    for raw in text.split("\n"):
        line = raw.strip()
        if line:
            reason = _c4_line_reason(line, th)
            if reason is None:
                kept.append(line)
            else:
                removed[reason] += 1
    return "\n".join(kept), {reason.value: count for reason, count in removed.items()}


def _c4_line_reason(line: str, th: QualityThresholds) -> C4LineReason | None:
    words = line.split()
    if th.c4_max_word_length is not None and len(line) > th.c4_max_word_length:
        if max(map(len, words)) > th.c4_max_word_length:
            return C4LineReason.TOO_LONG_WORD
    if th.c4_drop_no_terminal_punct_lines and (not line.endswith(C4_END_MARKS) or line.endswith("...")):
        return C4LineReason.NO_TERMINAL_PUNCT
    if th.c4_min_words_per_line is not None and len(words) < th.c4_min_words_per_line:
        return C4LineReason.TOO_FEW_WORDS
    lowered = line.lower()
    if th.c4_drop_javascript_lines and "javascript" in lowered:
        return C4LineReason.JAVASCRIPT
    if th.c4_drop_policy_lines and any(p in lowered for p in C4_POLICY_SUBSTRINGS):
        return C4LineReason.POLICY
    return None


_DEFAULT_THRESHOLDS = QualityThresholds()
