"""The steps that need no model or word list: `normalize`, `length`, `exact_dedup`, `blocklist`.

Each is small and vectorised with pyarrow compute where that is the fast path; per-document Python
runs only where Unicode repair or list matching needs it.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field, model_validator

from keel.core.errors import InputError
from keel.core.settings import read_text_file
from keel.curate._step import GlobalStep, Step, StepParams, StepResult
from keel.curate._words import replace_at, text_buffer

__all__ = [
    "BlocklistStep",
    "ExactDedupStep",
    "LengthStep",
    "NormalizeStep",
    "may_be_mojibake",
    "may_be_mojibake_many",
    "normalize_entities",
]

_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_MONEY = re.compile(
    r"(?:[$€£¥]\s?\d[\d,.]*(?:\s?(?:k|m|bn|million|billion))?)"
    r"|(?:\b\d[\d,.]*\s?(?:usd|eur|gbp|jpy|chf|dollars?|euros?|pounds?)\b)",
    re.IGNORECASE,
)
_DATE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"
    rf"|\b\d{{1,2}}\s{_MONTHS}\s\d{{4}}\b|\b{_MONTHS}\s\d{{1,2}},?\s\d{{4}}\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")
# Horizontal whitespace other than the plain space (RE2 syntax). A run needing a rewrite starts with
# one of these or with a space followed by more; matching every single space instead (as
# `[\s--\n]+` would) rewrites each one and is 10x slower (27 vs 258 MB/s) for the same output.
_OTHER_SPACE = r"\t\x0b\x0c\r\x85\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
_WHITESPACE_RUN = rf"[{_OTHER_SPACE}][ {_OTHER_SPACE}]*| [ {_OTHER_SPACE}]+"


# ftfy's badness heuristic (`ftfy.badness.is_bad`) runs at ~2.4 MB/s on documentation text, as slow as the
# repair itself. Every alternative of its regex matches at most 6 characters, and (below) each match holds a
# place `_MAY_BE_BAD` finds; `re.finditer` reports a match overlapping every such place. So every match of ftfy's
# regex lies within 5 characters of a `_MAY_BE_BAD` match, and `_is_bad` asks ftfy only about those stretches
# (6 characters on either side of each, joined by a NUL): on the real-text corpus that is 1.7% of the suspect
# texts' characters, 0.04 CPU-s where cutting their long ASCII runs left 16% and cost 0.13 (measured).
# The NUL separator makes no match: it is never within 6 characters of a C1 control, Â, Ã, Œ, œ or a non-ASCII pair,
# and only `[Œœ][^A-Za-z]` and `ГўВЂВ.` (both right after such characters) could read it. A leading NUL when the
# first stretch does not start the text keeps ftfy's `^[ÃÂ][ ]` to the real start (its only anchor).
_BADNESS_MARGIN = 6
# The check first made: in ftfy 6.3's patterns, an alternative holding one non-ASCII character needs a C1 control, Â, Ã,
# Œ or œ; every other alternative holds two non-ASCII characters at most 2 characters apart. A text with
# neither (most documentation: a lone "’", "—" or "¶" between words) cannot be bad: 88% of the real-text
# corpus is settled by this one search (tests/unit/curate/test_real_text.py checks it agrees with is_bad).
_MAY_BE_BAD = re.compile(r"[\x80-\x9f\u00c2\u00c3\u0152\u0153]|[^\x00-\x7f][\x00-\x7f]{0,2}[^\x00-\x7f]")
# The same search in RE2 syntax, run by Arrow over a whole batch: `re` tries the second alternative at every
# position of a text (no literal to skip to), 0.2 CPU-s of the step's 0.4 on the 14.8 MB real-text corpus.
_MAY_BE_BAD_RE2 = r"[\x{80}-\x{9f}\x{c2}\x{c3}\x{152}\x{153}]|[^\x00-\x7f][\x00-\x7f]{0,2}[^\x00-\x7f]"
_TERMINAL_ESCAPE = r"\x1b\[[0-9;?]*[A-Za-z]"  # colour and cursor codes: their letters would stay behind otherwise


def may_be_mojibake(text: str) -> bool:
    """Whether ftfy's badness heuristic flags `text`, checked only around its non-ASCII characters.

    Examples:
        >>> may_be_mojibake("The caf\u00c3\u00a9 is open"), may_be_mojibake("The caf\u00e9 is open")
        (True, False)
    """
    if text.isascii() or _MAY_BE_BAD.search(text) is None:
        return False
    return _is_bad(text)


def _is_bad(text: str) -> bool:
    """What ftfy's `is_bad` says of `text`, asked only about the stretches around `_MAY_BE_BAD`'s matches."""
    from ftfy.badness import is_bad

    first = _MAY_BE_BAD.search(text)
    if first is None:  # no place a match could hold: not bad (what `may_be_mojibake` says without asking)
        return False
    stretches = [""] if first.start() > _BADNESS_MARGIN else []  # an empty first stretch: a leading NUL
    start, end = max(first.start() - _BADNESS_MARGIN, 0), first.end() + _BADNESS_MARGIN
    for m in _MAY_BE_BAD.finditer(text, first.end()):
        if m.start() - _BADNESS_MARGIN > end:  # apart from the stretch so far: close it, open the next
            stretches.append(text[start:end])
            start = m.start() - _BADNESS_MARGIN
        end = m.end() + _BADNESS_MARGIN
    stretches.append(text[start:end])
    return is_bad("\x00".join(stretches))


def may_be_mojibake_many(texts: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """`may_be_mojibake` of each text of a string array without nulls, the first search run in RE2 over all.

    Examples:
        >>> may_be_mojibake_many(pa.array(["The caf\u00c3\u00a9 is open", "The caf\u00e9 is open", ""])).tolist()
        [True, False, False]
    """
    suspect = np.flatnonzero(pc.match_substring_regex(texts, _MAY_BE_BAD_RE2).to_numpy(zero_copy_only=False))
    bad = np.zeros(len(texts), dtype=np.bool_)
    for i, text in zip(suspect.tolist(), texts.take(pa.array(suspect)).to_pylist(), strict=True):
        bad[i] = _is_bad(text)
    return bad


class NormalizeParams(StepParams):
    """Parameters of `normalize`: conservative by default (text, whitespace and code stay as they are)."""

    fix_unicode: bool = Field(
        True, description="Repair mojibake with ftfy, in texts where ftfy's badness heuristic finds some."
    )
    form: str = Field("NFC", pattern="^NF(K?)(C|D)$", description="Unicode normalisation form.")
    strip_control: bool = Field(
        True, description="Remove control characters other than newline, tab and carriage return, and terminal escapes."
    )
    collapse_whitespace: bool = Field(
        False, description="Opt-in: runs of spaces/tabs to one space, 3+ newlines to 2, trimmed (flattens code)."
    )
    fold_quotes: bool = Field(False, description="Opt-in: curly quotes and apostrophes to ASCII ' and \".")
    lowercase: bool = Field(False, description="Lowercase the text.")
    normalized_column: bool = Field(
        False,
        description="Also add `text_normalized`: lowercase, amounts as <MONEY>, dates as <DATE>, numbers as <NUM> "
        "(for matching and dedup keys; `text` is unchanged by this).",
    )


def normalize_entities(text: str) -> str:
    """Lowercase, then replace money amounts, dates and remaining numbers by placeholders.

    Examples:
        >>> normalize_entities("Paid $1,200.50 on 2026-03-01 for 3 anvils")
        'paid <MONEY> on <DATE> for <NUM> anvils'
    """
    text = _MONEY.sub("<MONEY>", text.lower())
    return _NUMBER.sub("<NUM>", _DATE.sub("<DATE>", text))


class NormalizeStep(Step):
    """Mojibake repair (ftfy, where needed), normalisation form and control characters; whitespace on request.

    By default a text changes only where it is broken: line breaks, indentation, quotes, HTML entities and
    full-width or ligature characters are left as they are, so code blocks come out byte-identical.
    """

    name = "normalize"
    Params = NormalizeParams
    requires = ("ftfy",)

    def _repair(self, text: str, mojibake: bool) -> str:
        p: NormalizeParams = self.params  # type: ignore[assignment]
        if mojibake:
            import ftfy

            self.count("mojibake_repaired")
            # Only ftfy's encoding repairs: its other fixes (quotes, widths, ligatures, line breaks, HTML
            # entities) rewrite text that is not broken.
            text = ftfy.fix_text(text, _conservative_ftfy())
        if p.fold_quotes:
            from ftfy.fixes import uncurl_quotes

            text = uncurl_quotes(text)
        if not unicodedata.is_normalized(p.form, text):  # type: ignore[arg-type]
            text = unicodedata.normalize(p.form, text)  # type: ignore[arg-type]
        return text

    def apply(self, table: pa.Table) -> StepResult:
        """Normalise every text; a text that becomes empty is dropped as `empty_after_normalize`."""
        p: NormalizeParams = self.params  # type: ignore[assignment]
        before = table.column("text").combine_chunks()
        # Unicode repair, quotes and normal forms need Python per text, but pure ASCII has none of them: only
        # non-ASCII texts pay for it (the mojibake search runs over the batch first), only the texts that
        # change are written back, and control characters and whitespace run as Arrow (RE2) kernels.
        todo = np.flatnonzero(~pc.string_is_ascii(before).to_numpy(zero_copy_only=False))
        arr = before
        if len(todo):
            subset = before.take(pa.array(todo))
            mojibake = may_be_mojibake_many(subset) if p.fix_unicode else np.zeros(len(todo), dtype=np.bool_)
            changed: list[int] = []
            repaired: list[str] = []
            for i, (text, bad) in enumerate(zip(subset.to_pylist(), mojibake.tolist(), strict=True)):
                fixed = self._repair(text, bad)
                if fixed != text:
                    changed.append(int(todo[i]))
                    repaired.append(fixed)
            if changed:
                arr = replace_at(before, changed, pa.array(repaired, before.type))
        arr = _clean_spaces(arr, p)
        if p.lowercase:
            arr = pc.utf8_lower(arr)
        self.count("changed", int(pc.sum(pc.not_equal(arr, before)).as_py() or 0))
        table = table.set_column(table.schema.get_field_index("text"), "text", arr)
        if p.normalized_column:
            table = table.append_column("text_normalized", pa.array([normalize_entities(t) for t in arr.to_pylist()]))
        empty = pc.equal(pc.utf8_length(arr), 0).to_pylist()
        return StepResult(table, ["empty_after_normalize" if e else None for e in empty])


@lru_cache(maxsize=1)
def _conservative_ftfy() -> Any:
    from ftfy import TextFixerConfig

    return TextFixerConfig(
        unescape_html=False,
        remove_terminal_escapes=False,
        fix_latin_ligatures=False,
        fix_character_width=False,
        uncurl_quotes=False,
        fix_line_breaks=False,
        remove_control_chars=False,
        normalization=None,
    )


def _clean_spaces(arr: pa.StringArray, p: NormalizeParams) -> pa.StringArray:
    """Remove control characters, collapse whitespace runs and blank-line runs, trim.

    The regex kernels run only on texts holding a byte they could act on (found with numpy over the batch's
    bytes, a superset of what the regexes match): on ordinary text that skips ~90% of the step's time
    (measured on benchmarks/_corpus.py, where no text needs them), with the same output.
    """
    if p.strip_control or p.collapse_whitespace:
        todo = np.flatnonzero(_may_need_cleaning(arr, p))
        if len(todo):
            subset = arr.take(pa.array(todo))
            if p.strip_control:
                subset = pc.replace_substring_regex(subset, _TERMINAL_ESCAPE, "")
                subset = pc.replace_substring_regex(subset, r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "")
            if p.collapse_whitespace:
                subset = pc.replace_substring_regex(subset, _WHITESPACE_RUN, " ")
                subset = pc.replace_substring_regex(subset, r"\n{3,}", "\n\n")
            arr = replace_at(arr, todo, subset)
    return pc.utf8_trim_whitespace(arr) if p.collapse_whitespace else arr


def _may_need_cleaning(arr: pa.StringArray, p: NormalizeParams) -> npt.NDArray[np.bool_]:
    r"""Per text: whether it holds a control character (and with collapsing, odd spaces, "  " or "\n\n\n")."""
    data, offsets = text_buffer(arr)
    # Bytes below 0x20 other than "\n" are the control characters, "\t" and "\r"; 0xC2 and 0xE1-0xE3 lead
    # every non-ASCII space (U+0085, U+00A0, U+1680, U+2000-U+205F, U+3000).
    if p.collapse_whitespace:
        hit = ((data < 0x20) & (data != 0x0A)) | (data == 0x7F) | (data == 0xC2) | ((data >= 0xE1) & (data <= 0xE3))
    else:  # only control characters: everything below 0x20 but tab, newline and carriage return, and DEL
        hit = ((data < 0x20) & (data != 0x0A) & (data != 0x09) & (data != 0x0D)) | (data == 0x7F)
    if p.collapse_whitespace:
        hit[:-1] |= (data[:-1] == 0x20) & (data[1:] == 0x20)
        hit[:-2] |= (data[:-2] == 0x0A) & (data[1:-1] == 0x0A) & (data[2:] == 0x0A)
    texts = np.searchsorted(offsets, np.flatnonzero(hit), side="right") - 1
    needed = np.zeros(len(arr), dtype=np.bool_)
    needed[texts] = True
    return needed


class LengthParams(StepParams):
    """Parameters of `length`."""

    min_chars: int = Field(1, ge=0, description="Drop texts shorter than this many characters.")
    max_chars: int | None = Field(None, ge=1, description="Drop texts longer than this many characters.")


class LengthStep(Step):
    """Keep texts whose length in characters is within bounds."""

    name = "length"
    Params = LengthParams

    def apply(self, table: pa.Table) -> StepResult:
        """Drop as `too_short` or `too_long`."""
        p: LengthParams = self.params  # type: ignore[assignment]
        lengths = pc.utf8_length(table.column("text")).to_pylist()
        reasons: list[str | None] = [
            "too_short" if n < p.min_chars else "too_long" if p.max_chars is not None and n > p.max_chars else None
            for n in lengths
        ]
        return StepResult(table, reasons)


class ExactDedupParams(StepParams):
    """Parameters of `exact_dedup`."""

    normalize: bool = Field(True, description="Hash lowercased text with whitespace collapsed, not the raw text.")


class DedupReason(StrEnum):
    """Drop reasons of the dedup steps."""

    EXACT_DUPLICATE = "exact_duplicate"


def _exact_keys(texts: pa.ChunkedArray, normalize: bool) -> list[int]:
    """64-bit hashes of the texts; normalised = lowercased, whitespace runs as one space, trimmed."""
    if normalize:
        # Arrow kernels over the batch instead of a Python lower/split/join per text.
        any_space = rf"[\n{_OTHER_SPACE}][ \n{_OTHER_SPACE}]*| [ \n{_OTHER_SPACE}]+"
        texts = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(texts), any_space, " "))
    return [xxhash.xxh3_64_intdigest(raw) for raw in pc.cast(texts, pa.binary()).to_pylist()]


class ExactDedupStep(GlobalStep):
    """Drop every record whose (normalised) text already appeared; the first in input order is kept."""

    name = "exact_dedup"
    Params = ExactDedupParams
    requires = ("xxhash",)

    def observe(self, table: pa.Table) -> Any:
        """The 64-bit text hash of every row, in order (8 bytes per record)."""
        p: ExactDedupParams = self.params  # type: ignore[assignment]
        return _exact_keys(table.column("text"), p.normalize)

    def decide(self, observations: list[Any]) -> Any:
        """For each shard, the row positions to drop: all but the first occurrence of each hash."""
        seen: set[int] = set()
        drops: list[set[int]] = []
        for keys in observations:  # shards arrive in input order, so "first" is deterministic
            shard_drops = set()
            for position, key in enumerate(keys):
                if key in seen:
                    shard_drops.add(position)
                else:
                    seen.add(key)
            drops.append(shard_drops)
        return drops

    def apply_decision(self, table: pa.Table, decision: Any) -> StepResult:
        """Drop the rows the decision names as `exact_duplicate`."""
        drop: set[int] = decision
        return StepResult(table, [DedupReason.EXACT_DUPLICATE if i in drop else None for i in range(table.num_rows)])

    def report(self, decision: Any) -> dict[str, Any]:
        """How many duplicates were found."""
        return {"duplicates": sum(len(d) for d in decision)}


class BlocklistParams(StepParams):
    """Parameters of `blocklist`."""

    words: list[str] = Field(
        default_factory=list, description="Words or phrases; matched whole-word, case-insensitive."
    )
    words_file: Path | None = Field(None, description="A file with one word or phrase per line.")
    domains: list[str] = Field(default_factory=list, description="Drop records whose source URI or text links here.")
    max_hits: int = Field(0, ge=0, description="Drop a record with more than this many word hits.")

    @model_validator(mode="after")
    def _something_to_block(self) -> BlocklistParams:
        if not (self.words or self.words_file or self.domains):
            raise ValueError("give at least one of words, words_file or domains")
        return self


class BlocklistStep(Step):
    """Drop records that contain blocked words or phrases, or link to blocked domains."""

    name = "blocklist"
    Params = BlocklistParams

    def __init__(self, params: StepParams) -> None:
        super().__init__(params)
        p: BlocklistParams = params  # type: ignore[assignment]
        words = list(p.words)
        if p.words_file is not None:
            text = read_text_file(p.words_file, "blocklist words_file", error=InputError)
            words += [w.strip() for w in text.splitlines() if w.strip()]
        self._words = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE) if words else None
        domains = [re.escape(d.lower().lstrip(".")) for d in p.domains]
        self._domains = re.compile(r"(?:^|[/.@])(?:" + "|".join(domains) + r")(?:[/:?#]|$)") if domains else None

    def _reason(self, text: str, uri: str) -> str | None:
        p: BlocklistParams = self.params  # type: ignore[assignment]
        if self._domains is not None and (self._domains.search(uri.lower()) or self._domains.search(text.lower())):
            return "blocked_domain"
        if self._words is not None and len(self._words.findall(text)) > p.max_hits:
            return "blocked_words"
        return None

    def apply(self, table: pa.Table) -> StepResult:
        """Drop as `blocked_domain` or `blocked_words`."""
        texts = table.column("text").to_pylist()
        uris = pc.struct_field(table.column("source"), "uri").to_pylist()
        return StepResult(table, [self._reason(t, u or "") for t, u in zip(texts, uris, strict=True)])
