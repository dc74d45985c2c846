"""How the quality signals of keel.curate._quality are measured: a batch at a time, with Arrow and numpy.

Words are split and numbered once per batch over the texts' UTF-8 bytes (keel.curate._words), each distinct
word's features are computed once, and repetition (duplicate lines, paragraphs and word n-grams) is found
by sorting integer keys, so every signal is exact and no Python runs per word. The thresholds and rules that
read these signals live in keel.curate._quality.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from keel.core.errors import InputError
from keel.curate._words import _encode, _first_of, split_words, text_buffer, unicode_whitespace, utf8_encodable

__all__ = [
    "BULLETS",
    "FINEWEB_END_CHARS",
    "FINEWEB_SHORT_LINE_CHARS",
    "GOPHER_NGRAMS",
    "DUP_NGRAMS",
    "SENTENCE_END_CHARS",
    "STOP_WORDS",
    "as_text_array",
    "signal_columns",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
"""Gopher's English stop words; a document needs `gopher_min_stop_words` occurrences of them."""

FINEWEB_SHORT_LINE_CHARS = 30
"""A FineWeb "short" line has at most this many characters (after surrounding whitespace is removed)."""

BULLETS = ("\u2022", "\u2023", "\u25e6", "\u25cf", "\u25cb", "\u25aa", "\u25ab", "\u25a0", "\u25a1", "\u2013", "-", "*")
"""Characters that open a Gopher bullet line (datatrove checks only "\u2022" and "-")."""

FINEWEB_END_CHARS = (".", "'", '"', "!", "?")
"""Line endings FineWeb counts as punctuation."""

SENTENCE_END_CHARS = (".", "!", "?", "\u2026", "\u3002", "\uff01", "\uff1f")
"""A token ending in one of these (then optional closing quotes or brackets) ends a sentence."""

_SENTENCE_CLOSERS = "\"'\u201d\u2019)]"
GOPHER_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)


def _segment_sum(values: npt.NDArray[np.int64] | BoolArray, offsets: IntArray) -> IntArray:
    """Exact sums over the last axis of `values`, segment d being offsets[d]:offsets[d + 1] (maybe empty)."""
    out = np.zeros((*values.shape[:-1], len(offsets) - 1), dtype=np.int64)
    nonempty = offsets[1:] > offsets[:-1]
    if nonempty.any():
        out[..., nonempty] = np.add.reduceat(values, offsets[:-1][nonempty], axis=-1, dtype=np.int64)
    return out


def _ratio(num: npt.ArrayLike, den: npt.ArrayLike) -> FloatArray:
    """Divide, with 0 for an empty denominator, so every signal of an empty text is a finite 0."""
    return np.asarray(num, dtype=np.float64) / np.maximum(np.asarray(den, dtype=np.float64), 1.0)


def _ints(array: pa.Array | pa.ChunkedArray) -> IntArray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


def _flags(array: pa.Array | pa.ChunkedArray) -> BoolArray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.bool_)


def as_text_array(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    """The texts as one Arrow large_string array, or an `InputError` saying which item is not a text."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)) or texts.null_count:
            raise InputError(
                f"expected a string array without nulls, found {texts.type} with {texts.null_count} nulls",
                hint="fill or filter nulls before measuring quality",
            )
        return texts.cast(pa.large_string())
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise InputError(
            f"expected a sequence of str, found {type(texts[bad]).__name__} at index {bad}",
            hint="pass decoded text (str), one item per document",
        )
    try:
        return pa.array(texts, type=pa.large_string())
    except UnicodeEncodeError as exc:
        bad = next(i for i, t in enumerate(texts) if not utf8_encodable(t))
        raise InputError(
            f"expected text that encodes as UTF-8, found {exc.reason} in the text at index {bad}",
            hint="repair the text first (e.g. the normalize step, or str.encode(errors='replace'))",
        ) from None


def signal_columns(arr: pa.LargeStringArray) -> dict[str, FloatArray]:
    """Every quality signal of a batch of texts, one float64 array per signal (in no particular order)."""
    chars = _ints(pc.utf8_length(arr))
    tokens = _Tokens.of(arr)
    word_groups = tokens.word_groups()
    words = _word_counts(tokens, word_groups)
    lines = _lines(arr)
    n_tokens = np.diff(tokens.offsets)
    n_words = words["word"]
    out: dict[str, FloatArray] = {
        "char_count": chars.astype(np.float64),
        "gopher_word_count": n_words.astype(np.float64),
        "gopher_mean_word_length": _ratio(words["word_chars"], n_words),
        "gopher_hash_ratio": _ratio(words["hash"], n_words),
        "gopher_ellipsis_ratio": _ratio(words["ellipsis"], n_words),
        "gopher_bullet_line_fraction": _ratio(lines.bullet, lines.nonblank),
        "gopher_ellipsis_line_fraction": _ratio(lines.ellipsis_end, lines.nonblank),
        "gopher_alpha_word_fraction": _ratio(words["alpha"], n_tokens),
        "gopher_stop_word_count": words["stop"].astype(np.float64),
        "gopher_dup_line_fraction": _ratio(lines.dup_lines, lines.nonblank),
        "gopher_dup_paragraph_fraction": _ratio(lines.dup_paragraphs, lines.paragraphs),
        "gopher_dup_line_char_fraction": _ratio(lines.dup_line_chars, chars),
        "gopher_dup_paragraph_char_fraction": _ratio(lines.dup_paragraph_chars, chars),
        "c4_sentence_count": words["sentence_end"].astype(np.float64),
        "c4_max_word_length": words["longest"].astype(np.float64),
        "c4_has_lorem_ipsum": _flags(pc.match_substring(arr, "lorem ipsum", ignore_case=True)).astype(np.float64),
        "c4_has_curly_bracket": (words["curly"] > 0).astype(np.float64),
        "fineweb_line_punct_ratio": _ratio(lines.punct_end, lines.nonblank),
        "fineweb_short_line_ratio": _ratio(lines.short, lines.nonblank),
        "fineweb_char_dup_ratio": _ratio(lines.dup_line_chars, chars - lines.newlines),
        "fineweb_list_ratio": _ratio(lines.newlines, n_tokens),
    }
    out.update(_ngram_signals(tokens, word_groups))
    return out


# --- words ---------------------------------------------------------------------------------------------


class _UnicodeClasses:
    r"""Per BMP code point: 1 letter (str.isalpha), 2 punctuation or symbol, 0 other; and the P* characters.

    numpy lookups over the distinct words replace Arrow's `\pL`-style regexes, whose RE2 compilation
    alone costs ~2 ms per call (measured), which made one-document calls 30x slower than needed. A code
    point is classified the first time a batch holds it: all 65,536 up front cost ~0.25 s per process.
    """

    _UNKNOWN = 255

    def __init__(self) -> None:
        self.table = np.full(0x10000, self._UNKNOWN, dtype=np.uint8)
        self.punctuation = ""  # the P* characters classified so far: enough to trim any word seen so far

    def of(self, code_points: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
        """The class of each code point (astral ones, rare, one by one)."""
        bmp = np.minimum(code_points, 0xFFFF)
        classes = self.table[bmp]
        unknown = np.flatnonzero(classes == self._UNKNOWN)
        if len(unknown):
            for cp in np.unique(bmp[unknown]).tolist():
                category = unicodedata.category(chr(cp))
                self.table[cp] = _class_of(category)
                if category[0] == "P":
                    self.punctuation += chr(cp)
            classes = self.table[bmp]
        for i in np.flatnonzero(code_points > 0xFFFF):
            classes[i] = _class_of(unicodedata.category(chr(int(code_points[i]))))
        return classes


def _class_of(category: str) -> int:
    return 1 if category[0] == "L" else 2 if category[0] in "PS" else 0


@functools.cache
def _unicode_classes() -> _UnicodeClasses:
    return _UnicodeClasses()


class _Tokens(NamedTuple):
    """A batch's whitespace tokens (Python's `str.split()` words), each as the id of its distinct word."""

    ids: IntArray  # per token: index into the batch's vocabulary
    offsets: IntArray  # document d owns tokens offsets[d]:offsets[d + 1]
    doc_of: IntArray  # per token: its document
    vocab: pa.Array  # the distinct words, each followed by "\n" (so that one gather makes both this and code_points)
    lengths: IntArray  # per distinct word: characters
    code_points: npt.NDArray[np.uint32]  # the distinct words' characters, each word followed by "\n"

    @classmethod
    def of(cls, arr: pa.LargeStringArray) -> _Tokens:
        data, text_offsets = text_buffer(arr)
        # Ids numbered through a hash table (first_seen): every signal only compares ids or maps them through the
        # vocabulary, so the numbering is free, and it cost ~0.01 CPU-s less per 2 MB than sorting (measured).
        words = split_words(data, text_offsets, unicode_whitespace(data), first_seen=True)
        joined, bounds = words.vocabulary(data, b"\n")
        # Decoding the distinct words once is ~5x cheaper than Arrow's utf8_length and to_pylist on them.
        code_points = np.frombuffer(joined.decode("utf-8").encode("utf-32-le"), dtype=np.uint32)
        ends = np.flatnonzero(code_points == ord("\n"))  # a word never holds whitespace
        lengths = np.diff(ends, prepend=-1) - 1
        vocab = pa.LargeStringArray.from_buffers(len(words.first), pa.py_buffer(bounds), pa.py_buffer(joined))
        doc_of = np.repeat(np.arange(len(arr), dtype=np.int64), np.diff(words.offsets))
        return cls(words.ids, words.offsets, doc_of, vocab, lengths.astype(np.int64), code_points)

    def word_groups(self) -> _HashedGroups:
        """Tokens grouped by (document, word), numbered in key order (so groups come ordered by document)."""
        return _ordered_groups(self.doc_of * len(self.vocab) + self.ids)


_WORD_FEATURES = ("word", "word_chars", "alpha", "stop", "hash", "ellipsis", "sentence_end", "curly")


# Characters a word feature looks for, as bits of a table by code point (none of them is astral).
_HASH, _CURLY, _ELLIPSIS, _DOT, _CLOSER, _SENTENCE_END = 1, 2, 4, 8, 16, 32
_MARKS = np.zeros(0x10000, dtype=np.uint8)
for _chars, _bit in (("#", _HASH), ("{", _CURLY), ("\u2026", _ELLIPSIS), (".", _DOT), (_SENTENCE_CLOSERS, _CLOSER),
                     ("".join(SENTENCE_END_CHARS), _SENTENCE_END)):  # fmt: skip
    for _char in _chars:
        _MARKS[ord(_char)] |= _bit
# By character class (_UnicodeClasses): letters count in the low 32 bits, punctuation and symbols in the high.
_CLASS_COUNTS = np.zeros(256, dtype=np.int64)
_CLASS_COUNTS[1], _CLASS_COUNTS[2] = 1, 1 << 32


def _vocab_features(tokens: _Tokens) -> npt.NDArray[np.int32]:
    """One row per `_WORD_FEATURES` entry, one column per distinct word.

    Marked characters ("#", "{", dots, closers, sentence ends) are rare, so they are found once and counted per
    word where they are, rather than compared and summed over every character once per feature.
    """
    vocab, lengths, code_points = tokens.vocab, tokens.lengths, tokens.code_points
    n_words = len(vocab)
    if not n_words:
        return np.zeros((len(_WORD_FEATURES), 0), dtype=np.int32)
    # Each word is followed by "\n" (class 0, and no feature's character), so word i is starts[i]:starts[i + 1].
    starts = np.zeros(n_words + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=starts[1:])
    unicode_classes = _unicode_classes()
    counts = np.add.reduceat(_CLASS_COUNTS[unicode_classes.of(code_points)], starts[:-1])  # no word is empty
    letters, punctuation = counts & 0xFFFFFFFF, counts >> 32
    is_word = punctuation < lengths  # some character is not punctuation or symbol
    marks = _MARKS[np.minimum(code_points, 0xFFFF)]  # an astral code point reads U+FFFF, which is no mark
    at = np.flatnonzero(marks)
    word_of, marked = np.searchsorted(starts, at, side="right") - 1, marks[at]

    def count(bit: int) -> IntArray:
        return np.bincount(word_of[(marked & bit) != 0], minlength=n_words)

    columns = [
        is_word,
        lengths * is_word,
        letters > 0,
        _stop_words(vocab, letters, unicode_classes.punctuation),
        count(_HASH),
        _dot_triples(at[(marked & _DOT) != 0], word_of[(marked & _DOT) != 0], n_words) + count(_ELLIPSIS),
        _ends_sentence(marks, starts),
        count(_CURLY) > 0,
    ]
    return np.stack(columns).astype(np.int32)  # int32: the gather below moves half the bytes


def _stop_words(vocab: pa.Array, letters: IntArray, punctuation: str) -> BoolArray:
    r"""Per word: lowercased and trimmed of punctuation, it is one of `STOP_WORDS`.

    Only words of 2 to 4 letters can be (lowercasing keeps the letter count, trimming removes no letter), so
    only those are lowered and trimmed. Lowering makes no punctuation, so the P* characters seen so far are all
    the trim needs; with the "\n" each word ends with (never inside a word, never punctuation), the trim gives
    what it gives the bare word.
    """
    out = np.zeros(len(vocab), dtype=np.bool_)
    maybe = np.flatnonzero((letters >= 2) & (letters <= 4))
    if len(maybe):
        bare = pc.utf8_trim(pc.utf8_lower(vocab.take(pa.array(maybe))), characters=punctuation + "\n")
        out[maybe] = _flags(pc.is_in(bare, value_set=pa.array(STOP_WORDS)))
    return out


def _dot_triples(dots: IntArray, word_of: IntArray, n_words: int) -> IntArray:
    r"""Per word: non-overlapping "..." in it, as `str.count("...")` (a run of k dots holds k // 3).

    Args:
        dots: Positions of the dots, ascending (runs never span two words: a "\n" ends each).
        word_of: The word of each dot.
        n_words: Words in the vocabulary.
    """
    if not len(dots):
        return np.zeros(n_words, dtype=np.int64)
    run_start = np.flatnonzero(np.diff(dots, prepend=-2) != 1)
    run_length = np.diff(np.append(run_start, len(dots)))
    return np.bincount(word_of[run_start], weights=run_length // 3, minlength=n_words).astype(np.int64)


def _ends_sentence(marks: npt.NDArray[np.uint8], starts: IntArray) -> BoolArray:
    """Per word: its last character other than closing quotes and brackets ends a sentence."""
    first, last = starts[:-1], starts[1:] - 2  # last: the character before the word's "\n"
    pending = np.flatnonzero(marks[last] & _CLOSER)
    while len(pending):  # step back over closers, word by word (most words end in none)
        last[pending] -= 1
        pending = pending[last[pending] >= first[pending]]
        pending = pending[(marks[last[pending]] & _CLOSER) != 0]
    ends: BoolArray = (last >= first) & ((marks[np.maximum(last, 0)] & _SENTENCE_END) != 0)
    return ends


def _word_counts(tokens: _Tokens, groups: _HashedGroups) -> dict[str, IntArray]:
    """Per document: each `_WORD_FEATURES` summed over its tokens, and its longest token ("longest").

    Sums run over distinct (document, word) pairs weighted by their counts: about half as many rows
    as tokens on prose, and none of Python's per-word cost.
    """
    n_docs = len(tokens.offsets) - 1
    word = tokens.ids[groups.first]
    group_doc = tokens.doc_of[groups.first]
    bounds = np.searchsorted(group_doc, np.arange(n_docs + 1))  # groups are ordered by document
    # Gathering columns of a feature-major table is ~3x faster than gathering rows (measured).
    per_group = np.take(_vocab_features(tokens), word, axis=1) * groups.sizes
    out = dict(zip(_WORD_FEATURES, _segment_sum(per_group, bounds), strict=True))
    longest = np.zeros(n_docs, dtype=np.int64)
    has_words = bounds[1:] > bounds[:-1]
    if has_words.any():
        longest[has_words] = np.maximum.reduceat(tokens.lengths[word], bounds[:-1][has_words])
    out["longest"] = longest
    return out


# --- lines and paragraphs ------------------------------------------------------------------------------


class _Edges(NamedTuple):
    """The first and last three UTF-8 bytes of each string (garbage past a short string's length)."""

    head: npt.NDArray[np.uint8]  # (3, n): head[i] is byte i
    tail: npt.NDArray[np.uint8]  # (3, n): tail[2] is the last byte
    size: IntArray  # bytes per string

    @classmethod
    def of(cls, strings: pa.Array) -> _Edges:
        if not pa.types.is_large_string(strings.type):
            strings = strings.cast(pa.large_string())
        _, offsets_buffer, data_buffer = strings.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[strings.offset : strings.offset + len(strings) + 1]
        data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
        data = data if len(data) else np.zeros(1, dtype=np.uint8)  # all strings empty: any byte will do
        last = len(data) - 1
        begin, end = offsets[:-1], offsets[1:]
        head = np.stack([data[np.minimum(begin + i, last)] for i in range(3)])
        tail = np.stack([data[np.clip(end - 3 + i, 0, last)] for i in range(3)])
        return cls(head, tail, end - begin)

    def affixed(self, affixes: Sequence[str], *, at_end: bool) -> BoolArray:
        """Per string: whether it starts (or ends) with one of `affixes` (each at most 3 UTF-8 bytes).

        Comparing edge bytes in numpy is ~10x faster than `utf8_slice_codeunits` plus `is_in`, and
        ~15x faster than an anchored regex (measured on 60k lines).
        """
        found = np.zeros(len(self.size), dtype=np.bool_)
        for affix in affixes:
            encoded = affix.encode()
            match = self.size >= len(encoded)
            for i, byte in enumerate(encoded):
                match &= (self.tail[3 - len(encoded) + i] if at_end else self.head[i]) == byte
            found |= match
        return found


class _Lines(NamedTuple):
    """Per-document line and paragraph counts."""

    newlines: IntArray
    nonblank: IntArray  # "\n"-separated lines with a non-whitespace character
    bullet: IntArray
    ellipsis_end: IntArray
    punct_end: IntArray
    short: IntArray
    dup_lines: IntArray  # non-blank lines equal (stripped) to an earlier line of the document
    dup_line_chars: IntArray
    paragraphs: IntArray  # runs of non-blank lines
    dup_paragraphs: IntArray
    dup_paragraph_chars: IntArray


def _lines(arr: pa.LargeStringArray) -> _Lines:
    split = pc.split_pattern(arr, "\n")
    line_offsets = _ints(split.offsets)
    stripped = pc.utf8_trim_whitespace(split.flatten())
    stripped_len = _ints(pc.utf8_length(stripped))
    nonblank = stripped_len > 0
    doc_of_line = np.repeat(np.arange(len(arr), dtype=np.int64), np.diff(line_offsets))
    nb = np.flatnonzero(nonblank)
    line_id = _ints(pc.dictionary_encode(stripped).indices)[nb]
    groups = _sorted_groups(doc_of_line[nb] * (int(line_id.max(initial=0)) + 1) + line_id, np.arange(len(nb)))
    dup = np.zeros(len(nonblank), dtype=np.bool_)
    dup[nb] = True
    dup[nb[groups.first]] = False
    repeated = np.zeros(len(nb), dtype=np.bool_)  # the line occurs twice or more in its document
    repeated[groups.pos[np.repeat(groups.sizes >= 2, groups.sizes)]] = True
    paras = _Paragraphs.of(nonblank, line_offsets)
    para_count, dup_paras, dup_para_chars = _paragraph_repeats(paras, stripped, nb, line_id, repeated, stripped_len)

    def per_doc(values: npt.NDArray[np.int64] | BoolArray) -> IntArray:
        return _segment_sum(values, line_offsets)

    edges = _Edges.of(stripped)

    return _Lines(
        newlines=np.diff(line_offsets) - 1,
        nonblank=per_doc(nonblank),
        bullet=per_doc(edges.affixed(BULLETS, at_end=False)),
        ellipsis_end=per_doc(edges.affixed(("...", "\u2026"), at_end=True)),
        punct_end=per_doc(edges.affixed(FINEWEB_END_CHARS, at_end=True)),
        short=per_doc(nonblank & (stripped_len <= FINEWEB_SHORT_LINE_CHARS)),
        dup_lines=per_doc(dup),
        dup_line_chars=per_doc(stripped_len * dup),
        paragraphs=para_count,
        dup_paragraphs=dup_paras,
        dup_paragraph_chars=dup_para_chars,
    )


class _Paragraphs(NamedTuple):
    offsets: IntArray  # over the non-blank lines: paragraph p is lines offsets[p]:offsets[p + 1]
    doc: IntArray  # per paragraph: its document
    per_doc: IntArray  # per document: its paragraphs

    @classmethod
    def of(cls, nonblank: BoolArray, line_offsets: IntArray) -> _Paragraphs:
        """Paragraphs are runs of non-blank lines, i.e. blocks separated by blank lines."""
        opens = nonblank.copy()
        opens[1:] &= ~nonblank[:-1]
        opens[line_offsets[:-1]] = nonblank[line_offsets[:-1]]  # every document has at least one line
        doc_of_line = np.repeat(np.arange(len(line_offsets) - 1, dtype=np.int64), np.diff(line_offsets))
        nb_opens = opens[nonblank]
        offsets = np.append(np.flatnonzero(nb_opens), len(nb_opens))
        doc = doc_of_line[nonblank][offsets[:-1]]
        return cls(offsets, doc, np.bincount(doc, minlength=len(line_offsets) - 1))


def _paragraph_repeats(
    paras: _Paragraphs, stripped: pa.Array, nb: IntArray, line_id: IntArray, repeated: BoolArray, line_len: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """Per document: paragraphs, repeated paragraphs, and the characters of the repeated ones.

    Only a paragraph made entirely of repeated lines can repeat, so only those are joined into
    strings and compared (on ordinary text, almost none); a one-line paragraph is its line's id.

    Args:
        paras: The paragraphs.
        stripped: Every line, stripped.
        nb: Indices of the non-blank lines in `stripped`.
        line_id: Per non-blank line, the id of its text.
        repeated: Per non-blank line, whether its text occurs twice or more in its document.
        line_len: Per line, its stripped length.
    """
    n_docs = len(paras.per_doc)
    n_lines = np.diff(paras.offsets)
    base = int(line_id.max(initial=0)) + 1
    key = base + len(nb) + np.arange(len(n_lines), dtype=np.int64)  # unique, unless replaced below
    single = n_lines == 1
    key[single] = line_id[paras.offsets[:-1][single]]
    candidate = (n_lines > 1) & (_segment_sum(~repeated, paras.offsets) == 0)
    if candidate.any():
        list_offsets = np.zeros(int(candidate.sum()) + 1, dtype=np.int32)
        np.cumsum(n_lines[candidate], out=list_offsets[1:])
        lines = stripped.take(pa.array(nb[np.repeat(candidate, n_lines)]))
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(list_offsets), lines), pa.scalar("\n", lines.type))
        key[candidate] = base + _ints(pc.dictionary_encode(joined).indices)
    dup = _repeats(paras.doc, key)
    chars = _segment_sum(line_len[nb], paras.offsets) + n_lines - 1
    dup_chars = np.bincount(paras.doc[dup], weights=chars[dup], minlength=n_docs).astype(np.int64)
    return paras.per_doc, np.bincount(paras.doc[dup], minlength=n_docs), dup_chars


# --- repetition: exact grouping by sorting integer keys ------------------------------------------------


class _Groups(NamedTuple):
    pos: IntArray  # the positions, reordered so that equal keys are contiguous (ascending within a group)
    first: IntArray  # per group: its earliest position
    sizes: IntArray  # per group: how many positions share its key


class _HashedGroups(NamedTuple):
    ids: IntArray  # per position: its group, groups numbered in order of first occurrence (or of key)
    first: IntArray  # per group: its earliest position (ascending)
    sizes: IntArray  # per group: how many positions share its key


def _hashed_groups(keys: IntArray) -> _HashedGroups:
    """Group equal keys, numbering groups in order of first occurrence, through Arrow's hash table.

    `_ordered_groups`' way for keys (or batches) too wide to pack with their positions into 63 bits; positions
    in document order give groups in document order, which is all the level-1 groups' users need.
    """
    ids, count = _encode(pa.Array.from_buffers(pa.int64(), len(keys), [None, pa.py_buffer(keys)]))
    first = _first_of(ids, count)
    if np.any(first[1:] < first[:-1]):  # Arrow did not number by first occurrence: renumber
        order = np.argsort(first)
        rank = np.empty(count, dtype=np.int64)
        rank[order] = np.arange(count, dtype=np.int64)
        ids, first = rank[ids], first[order]
    return _HashedGroups(ids, first, np.bincount(ids, minlength=count).astype(np.int64))


def _ordered_groups(keys: IntArray) -> _HashedGroups:
    """Group equal non-negative keys, numbering groups in ascending key order, by one sort of keys and positions.

    For the level-1 (document, word) groups, keyed document first, so groups come ordered by document as with
    `_hashed_groups`, and every signal built on them is the same (they only compare group ids, and read each
    group's earliest position and size). numpy's sort of the packed 64-bit integers (x86-simd-sort on this
    machine's AVX-512) took 0.03-0.04 CPU-s over the 2.2M tokens of benchmarks/real_text_corpus.py in shards of
    2,000 documents, against 0.10-0.12 for `_hashed_groups` (whose hash table of ~150k distinct pairs a shard
    misses the cache); keys and positions too wide to pack in 63 bits go through `_hashed_groups`.
    """
    n = len(keys)
    bits = max(1, (n - 1).bit_length())
    if not n or int(keys.min()) < 0 or int(keys.max()) >= 1 << (63 - bits):
        return _hashed_groups(keys)
    packed = np.sort((keys << bits) | np.arange(n, dtype=np.int64))
    position = packed & ((1 << bits) - 1)
    packed >>= bits
    new = np.empty(n, dtype=np.bool_)
    new[0] = True
    np.not_equal(packed[1:], packed[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ids = np.empty(n, dtype=np.int64)
    ids[position] = np.cumsum(new) - 1
    return _HashedGroups(ids, position[starts], np.diff(np.append(starts, n)))


def _sorted_groups(keys: IntArray, pos: IntArray) -> _Groups:
    """Group equal keys: `pos` reordered so groups are contiguous, each group's first `pos`, and group sizes.

    Within a group `pos` stays ascending, so a group's first entry is its earliest occurrence. Packing
    `pos` into the low bits of the key and calling `np.sort` is ~3x faster than a stable argsort and
    ~6x faster than `np.unique(..., return_inverse=True)` on 160k keys (measured); the lexsort path is
    the fallback when the packed value would not fit in 63 bits (batches of many millions of words).
    """
    m = len(keys)
    if not m:
        return _Groups(pos, pos, pos)
    bits = max(1, int(pos.max()).bit_length())
    if int(keys.max()) < (1 << (63 - bits)):
        packed = np.sort((keys << bits) | pos)
        sorted_keys, sorted_pos = packed >> bits, packed & ((1 << bits) - 1)
    else:
        order = np.lexsort((pos, keys))
        sorted_keys, sorted_pos = keys[order], pos[order]
    new = np.ones(m, dtype=np.bool_)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    starts = np.flatnonzero(new)
    return _Groups(sorted_pos, sorted_pos[starts], np.diff(np.append(starts, m)))


def _repeats(doc: IntArray, item: IntArray) -> BoolArray:
    """For each (document, item) pair in order: whether an equal pair came earlier."""
    repeat = np.zeros(len(doc), dtype=np.bool_)
    if len(doc):
        repeat[:] = True
        repeat[_sorted_groups(doc * (int(item.max()) + 1) + item, np.arange(len(doc), dtype=np.int64))[1]] = False
    return repeat


def _ngram_signals(tokens: _Tokens, words: _HashedGroups) -> dict[str, FloatArray]:
    """Gopher's top n-gram (n=2..4) and duplicate n-gram (n=5..10) character fractions, exactly.

    An n-gram can only occur twice where both its (n-1)-gram prefix and its (n-1)-gram suffix do,
    so level n groups only those positions: on ordinary prose a few percent of the words at n = 2
    and almost none by n = 4, while staying exact. A key is the group number of the (n-1)-gram
    times the vocabulary size plus the n-th word, so there is no hashing and no collision.

    Args:
        tokens: The batch's tokens.
        words: The tokens grouped by (document, word), i.e. level 1.
    """
    n_docs, n_tokens = len(tokens.offsets) - 1, len(tokens.ids)
    out = {f"gopher_top_{n}gram_char_fraction": np.zeros(n_docs) for n in GOPHER_NGRAMS}
    out.update({f"gopher_dup_{n}gram_char_fraction": np.zeros(n_docs) for n in DUP_NGRAMS})
    cum = np.zeros(n_tokens + 1, dtype=np.int64)
    np.cumsum(tokens.lengths[tokens.ids], out=cum[1:])
    total = cum[tokens.offsets[1:]] - cum[tokens.offsets[:-1]]
    group_of = words.ids.copy()  # per position: its (n-1)-gram's group (valid where repeated)
    repeated = words.sizes[words.ids] >= 2  # per position: its (n-1)-gram occurs twice or more in the document
    next_in_doc = tokens.doc_of[:-1] == tokens.doc_of[1:]
    for n in range(2, max(DUP_NGRAMS) + 1):
        # Both (n-1)-grams repeat and start in the same document, so the n-gram lies inside it.
        pos = np.flatnonzero(repeated[:-1] & repeated[1:] & next_in_doc)
        if not len(pos):
            break
        groups = _sorted_groups(group_of[pos] * len(tokens.vocab) + tokens.ids[pos + n - 1], pos)
        if n in GOPHER_NGRAMS:
            top = _top_chars(groups.first, groups.sizes, n, cum, tokens.doc_of, n_docs)
            out[f"gopher_top_{n}gram_char_fraction"] = _ratio(top, total)
        if n in DUP_NGRAMS:
            later = np.zeros(n_tokens, dtype=np.bool_)
            later[groups.pos] = True
            later[groups.first] = False
            covered = _covered_chars(np.flatnonzero(later), n, cum, tokens.doc_of, n_docs)
            out[f"gopher_dup_{n}gram_char_fraction"] = _ratio(covered, total)
        twice = groups.sizes >= 2  # the repeated n-grams, which level n + 1 builds on
        at = groups.pos[np.repeat(twice, groups.sizes)]
        group_of[at] = np.repeat(np.flatnonzero(twice), groups.sizes[twice])
        repeated = np.zeros(n_tokens, dtype=np.bool_)
        repeated[at] = True
    return out


def _top_chars(first: IntArray, sizes: IntArray, n: int, cum: IntArray, doc_of: IntArray, n_docs: int) -> IntArray:
    """Per document: count x characters of its most frequent repeated n-gram (ties: the longest).

    Groups come ordered by document (every level's keys start with the level-1 key, which starts
    with the document), so a per-document maximum is a segmented reduction, not `np.maximum.at`.
    """
    repeated = sizes >= 2
    starts, counts = first[repeated], sizes[repeated]
    chars = cum[starts + n] - cum[starts]
    scale = int(cum[-1]) + 1  # score = count * scale + chars orders by count, then by length
    bounds = np.searchsorted(doc_of[starts], np.arange(n_docs + 1))
    best = np.zeros(n_docs, dtype=np.int64)
    has = bounds[1:] > bounds[:-1]
    if has.any():
        best[has] = np.maximum.reduceat(counts * scale + chars, bounds[:-1][has])
    return (best // scale) * (best % scale)


def _covered_chars(starts: IntArray, n: int, cum: IntArray, doc_of: IntArray, n_docs: int) -> IntArray:
    """Per document: characters of the words inside at least one of the n-grams beginning at `starts`.

    `starts` is ascending and every window has length n, so each window adds only the part past the
    previous window's end; windows never cross documents, so no correction is needed at boundaries.
    """
    if not len(starts):
        return np.zeros(n_docs, dtype=np.int64)
    begin = starts.copy()
    begin[1:] = np.maximum(starts[1:], starts[:-1] + n)
    added = cum[starts + n] - cum[begin]
    return np.bincount(doc_of[starts], weights=added, minlength=n_docs).astype(np.int64)
