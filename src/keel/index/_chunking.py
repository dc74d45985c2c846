"""Chunking: split a record's text into overlapping passages that prefer paragraph and sentence ends.

Sizes count characters or tokens of the embedding model's tokenizer. A cut falls at the last
paragraph break that keeps a chunk at least half full, else the last sentence end, else the last
word; chunks cut inside a paragraph overlap the next one, clean paragraph ends need no overlap.
This module knows text and offsets only, not records, models or indexes.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from keel.core.errors import InputError

__all__ = ["ChunkSettings", "Span", "TokenOffsets", "chunk_text"]

ChunkBy = Literal["chars", "tokens"]
# Returns (start, end) character offsets of each token of `text`, without special tokens.
TokenOffsets = Callable[[str], Sequence[tuple[int, int]]]

_WORD = re.compile(r"\S+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


@dataclass(frozen=True, slots=True)
class ChunkSettings:
    """How to cut records into chunks.

    Args:
        size: The most characters (or tokens) in one chunk.
        overlap: How many characters (or tokens) a chunk cut inside a paragraph shares with the next.
        by: `chars` or `tokens` (the embedding model's tokenizer).

    Examples:
        >>> ChunkSettings(size=400, overlap=50).to_json()
        {'size': 400, 'overlap': 50, 'by': 'chars'}
    """

    size: int = 800
    overlap: int = 100
    by: ChunkBy = "chars"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise InputError(f"expected a chunk size of at least 1; got {self.size}")
        if not 0 <= self.overlap < self.size:
            raise InputError(
                f"expected an overlap from 0 to less than the chunk size {self.size}; got {self.overlap}",
                hint="lower --overlap or raise --chunk-size",
            )
        if self.by not in ("chars", "tokens"):
            raise InputError(f"expected chunking by 'chars' or 'tokens'; got {self.by!r}")

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (stored with each index version)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Span:
    """One chunk: its text and where it sits in the record's text (character offsets)."""

    start: int
    end: int
    text: str


class _Units:
    """The text as indivisible units (words or tokens) with their character spans and the breaks between."""

    def __init__(self, text: str, spans: Sequence[tuple[int, int]], by: ChunkBy) -> None:
        self.text = text
        self.starts = [s for s, _ in spans]
        self.ends = [e for _, e in spans]
        self.by = by
        n = len(spans)
        # paragraph[i] / sentence[i]: a paragraph break or sentence end lies just before unit i.
        self.paragraph = [False] * (n + 1)
        self.sentence = [False] * (n + 1)
        self.paragraph[n] = self.sentence[n] = True
        for i in range(1, n):
            gap = text[self.ends[i - 1] : self.starts[i]]
            self.paragraph[i] = _PARAGRAPH_BREAK.search(gap) is not None
            before = text[self.starts[i - 1] : self.ends[i - 1]]
            self.sentence[i] = self.paragraph[i] or (bool(gap) and _SENTENCE_END.search(before) is not None)

    def __len__(self) -> int:
        return len(self.starts)

    def size(self, first: int, stop: int) -> int:
        """The size of units [first, stop) in the chosen measure."""
        return stop - first if self.by == "tokens" else self.ends[stop - 1] - self.starts[first]

    def furthest(self, first: int, limit: int) -> int:
        """The largest stop such that units [first, stop) fit in `limit` (at least one unit)."""
        if self.by == "tokens":
            return min(len(self), first + limit)
        # ends are increasing: the last unit ending within starts[first] + limit.
        return max(first + 1, bisect_right(self.ends, self.starts[first] + limit, lo=first))

    def cut(self, first: int, stop: int, size: int) -> int:
        """Where to end a chunk starting at `first` that may reach `stop`: a clean break if one is half full."""
        if stop == len(self):
            return stop
        for breaks in (self.paragraph, self.sentence):
            for candidate in range(stop, first, -1):
                if breaks[candidate] and self.size(first, candidate) * 2 >= size:
                    return candidate
        return stop

    def back_off(self, first: int, stop: int, overlap: int) -> int:
        """The start of the next chunk: `overlap` back from `stop`, always after `first`."""
        if overlap == 0 or self.paragraph[stop]:
            return stop
        start = stop
        while start - 1 > first and self.size(start - 1, stop) <= overlap:
            start -= 1
        return start


def chunk_text(text: str, settings: ChunkSettings, token_offsets: TokenOffsets | None = None) -> list[Span]:
    r"""Cut `text` into chunks of at most `settings.size` characters or tokens.

    Args:
        text: The record's text.
        settings: Size, overlap and unit.
        token_offsets: For `by="tokens"`: the tokenizer, as a function giving each token's
            character span.

    Returns:
        The chunks in order; none for empty or whitespace-only text. A single word longer than
        the size becomes a chunk of its own.

    Examples:
        >>> [s.text for s in chunk_text("One two.\n\nThree four five.", ChunkSettings(size=12, overlap=0))]
        ['One two.', 'Three four', 'five.']
    """
    if settings.by == "tokens":
        if token_offsets is None:
            raise InputError("chunking by tokens needs the embedding model's tokenizer; none was given")
        spans = [(s, e) for s, e in token_offsets(text) if e > s]
    else:
        spans = [m.span() for m in _WORD.finditer(text)]
    units = _Units(text, spans, settings.by)
    chunks: list[Span] = []
    first = 0
    while first < len(units):
        stop = units.cut(first, units.furthest(first, settings.size), settings.size)
        start_char, end_char = units.starts[first], units.ends[stop - 1]
        chunks.append(Span(start_char, end_char, text[start_char:end_char]))
        if stop == len(units):
            break
        first = units.back_off(first, stop, settings.overlap)
    return chunks
