"""Word tokenisation over UTF-8 byte buffers with numpy: word boundaries and exact word ids, no Python per word.

Quality signals split a batch of texts into words and need, for every word, an integer id that is equal
exactly when the words' bytes are equal (MinHash, which splits at ASCII whitespace only, numbers its words
with Arrow's `ascii_split_whitespace` and `dictionary_encode` instead, and lowers text with
`lower_like_python`). Here a word costs a few vectorised passes:
boundaries from a per-byte separator mask, then ids from the word's first 15 bytes packed into two 64-bit
integers (exact, with its length), hashed into one and grouped by one sort, and checked against a
representative so that a hash collision falls back to exact 16-byte keys; words longer than 15 bytes (rare)
get ids from their bytes. On 2,000-document shards of benchmarks/_corpus.py (1.7M words, best of 5 on a
loaded 2-vCPU VM) that took ~15-30% less CPU than Arrow's `utf8_split_whitespace` plus `dictionary_encode`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "Words",
    "ascii_whitespace",
    "lower_like_python",
    "replace_at",
    "split_words",
    "text_buffer",
    "unicode_whitespace",
    "utf8_encodable",
]

IntArray = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
ByteArray = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

# Python's str.isspace() (and Arrow's utf8_split_whitespace, checked equal over every code point) holds the
# ASCII whitespace, "\x1c"-"\x1f", and U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F and
# U+3000, whose UTF-8 forms start with 0xC2, 0xE1, 0xE2 or 0xE3.
_SHORT = 15  # bytes of a word packed into its exact 16-byte key (the 16th byte holds the length)

_HASH_ODD = np.uint64(0x9E3779B97F4A7C15)
# By word length 0..15: the masks keeping its first 8 bytes and its next 7, and the length in the 16th byte.
_LOW_MASK = np.array([(1 << 8 * min(n, 8)) - 1 for n in range(_SHORT + 1)], dtype=np.uint64)
_HIGH_MASK = np.array([(1 << 8 * max(n - 8, 0)) - 1 for n in range(_SHORT + 1)], dtype=np.uint64)
_LENGTH_BITS = np.array([n << 56 for n in range(_SHORT + 1)], dtype=np.uint64)


def text_buffer(texts: pa.Array) -> tuple[ByteArray, IntArray]:
    """The UTF-8 bytes of a string array and each text's byte offsets into them (zero-copy where possible)."""
    if not pa.types.is_large_string(texts.type) and not pa.types.is_large_binary(texts.type):
        texts = texts.cast(pa.large_binary() if pa.types.is_binary(texts.type) else pa.large_string())
    _, offsets_buffer, data_buffer = texts.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    first, last = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
    return data[first:last], offsets - first


def ascii_whitespace(data: ByteArray, *, separators: bool = True) -> BoolArray:
    r"""Per byte: whether it is ASCII whitespace (" \t\n\v\f\r", where `bytes.split()` splits).

    With `separators`, "\x1c" to "\x1f" count too, as in `str.split()`. Comparisons rather than a 256-entry
    lookup table: numpy's byte-indexed gather is ~4x slower (measured).
    """
    space: BoolArray = (data == 0x20) | ((data >= 0x09) & (data <= 0x0D))
    if separators:
        space |= (data >= 0x1C) & (data <= 0x1F)
    return space


def unicode_whitespace(data: ByteArray) -> BoolArray:
    """Per byte of UTF-8 text: whether it belongs to a character for which `str.isspace()` is true."""
    space = ascii_whitespace(data)
    lead = np.flatnonzero((data == 0xC2) | ((data >= 0xE1) & (data <= 0xE3)))
    if len(lead):
        padded = np.concatenate((data, np.zeros(2, dtype=np.uint8)))
        b0, b1, b2 = padded[lead], padded[lead + 1], padded[lead + 2]
        two = (b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))
        general = (b0 == 0xE2) & (b1 == 0x80) & (((b2 >= 0x80) & (b2 <= 0x8A)) | np.isin(b2, (0xA8, 0xA9, 0xAF)))
        three = (
            general
            | ((b0 == 0xE2) & (b1 == 0x81) & (b2 == 0x9F))
            | ((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80))
            | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80))
        )
        for k, hit in ((0, two | three), (1, two | three), (2, three)):
            space[lead[hit] + k] = True
    return space


class Words(NamedTuple):
    """A batch's words: byte bounds into the buffer, per-text ranges, and exact ids."""

    starts: IntArray  # per word: first byte
    ends: IntArray  # per word: one past its last byte
    offsets: IntArray  # text d owns words offsets[d]:offsets[d + 1]
    ids: IntArray  # per word: 0..len(first)-1, equal exactly when the bytes are
    first: IntArray  # per id: one word (its earliest) with that id

    def vocabulary(self, data: ByteArray, separator: bytes = b"") -> tuple[bytes, IntArray]:
        """The distinct words' bytes, each followed by `separator`, and their start offsets (one past the end too)."""
        starts, ends = self.starts[self.first], self.ends[self.first]
        return _gather(data, starts, ends, separator)


def split_words(data: ByteArray, offsets: IntArray, separator: BoolArray, *, first_seen: bool = False) -> Words:
    """Split each text (`data[offsets[d]:offsets[d + 1]]`) at runs of separator bytes, like `str.split()`.

    Args:
        data: The texts' bytes.
        offsets: Byte offsets of the texts (len = texts + 1).
        separator: Per byte, whether it separates words (e.g. `unicode_whitespace(data)`).
        first_seen: Number the ids through a hash table (mostly in order of first occurrence) instead of
            sorting the words: equal exactly when the bytes are, as always, and cheaper, but numbered
            otherwise; for callers that only compare ids or map them through the vocabulary (quality signals).

    Returns:
        The words, with exact ids.
    """
    starts, ends, word_offsets = _word_bounds(data, offsets, separator)
    ids, first = _word_ids(data, starts, ends, _first_seen_short_ids if first_seen else _short_ids)
    return Words(starts, ends, word_offsets, ids, first)


def _word_bounds(data: ByteArray, offsets: IntArray, separator: BoolArray) -> tuple[IntArray, IntArray, IntArray]:
    """Each word's first byte and one past its last, and per text its words (text d owns `[d]:[d + 1]`)."""
    n = len(data)
    inside = ~separator
    before = np.ones(n, dtype=np.bool_)  # the byte before is a separator or outside the text
    after = np.ones(n, dtype=np.bool_)
    if n:
        before[1:] = separator[:-1]
        after[:-1] = separator[1:]
        text_starts, text_ends = offsets[:-1], offsets[1:]
        before[text_starts[text_starts < n]] = True
        after[text_ends[text_ends > 0] - 1] = True
    starts = np.flatnonzero(inside & before)
    ends = np.flatnonzero(inside & after) + 1
    return starts, ends, np.searchsorted(starts, offsets).astype(np.int64)


def _gather(data: ByteArray, starts: IntArray, ends: IntArray, separator: bytes = b"") -> tuple[bytes, IntArray]:
    """The byte ranges `starts[i]:ends[i]` of `data` concatenated (each followed by `separator`), and offsets."""
    sizes = ends - starts + len(separator)
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    index = np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(starts - offsets[:-1], sizes)
    out = data[np.minimum(index, max(len(data) - 1, 0))] if len(data) else np.zeros(len(index), np.uint8)
    if separator:
        for k, byte in enumerate(separator):
            out[offsets[1:] - len(separator) + k] = byte
    return out.tobytes(), offsets


def _first_of(ids: IntArray, count: int) -> IntArray:
    """Per id in 0..count-1: the earliest position holding it.

    Arrow numbers dictionary entries in order of first occurrence, so the first occurrences are where the running
    maximum of the ids grows; that is checked, and a stable sort (~10x slower) answers if it ever does not hold.
    """
    grows = np.ones(len(ids), dtype=np.bool_)
    if len(ids):
        running = np.maximum.accumulate(ids)
        grows[1:] = running[1:] > running[:-1]
    first = np.flatnonzero(grows)
    if len(first) == count and np.array_equal(ids[first], np.arange(count)):
        return first
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    group_starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    return np.asarray(order[group_starts], dtype=np.int64)


def _short_keys(data: ByteArray, starts: IntArray, lengths: IntArray) -> tuple[U64, U64]:
    """Each word of at most 15 bytes as two integers that determine its bytes and length exactly.

    Bytes are read as aligned little-endian 64-bit words and shifted into place: ~10x faster than gathering
    through an unaligned (1-byte strided) uint64 view, which numpy copies element by element (measured).
    """
    padded = np.zeros((len(data) + 31) // 8 * 8, dtype=np.uint8)
    padded[: len(data)] = data
    aligned = padded.view("<u8")
    word, shift = starts >> 3, ((starts & 7) * 8).astype(np.uint64)
    a, b, c = aligned[word], aligned[word + 1], aligned[word + 2]
    back = np.uint64(63) - shift  # x << (64 - shift) as (x << 1) << (63 - shift): 0 when shift is 0, no overshift
    one = np.uint64(1)
    low = ((a >> shift) | ((b << one) << back)) & _LOW_MASK[lengths]
    high = ((b >> shift) | ((c << one) << back)) & _HIGH_MASK[lengths]
    high |= _LENGTH_BITS[lengths]
    return low, high


def _encode(values: pa.Array) -> tuple[IntArray, int]:
    encoded = pc.dictionary_encode(values)
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64), len(encoded.dictionary)


def _sorted_ids(keys: U64) -> tuple[IntArray, IntArray] | None:
    """Ids numbering equal keys, and each id's first position, by one sort of keys packed with positions.

    A plain sort of 64-bit integers is ~10x faster than an argsort or a hash table here (measured: 22 vs 290 ms
    for argsort and 64-180 ms for Arrow's dictionary_encode on 1.7M keys); None if positions leave too few bits.
    """
    n = len(keys)
    bits = max(1, (n - 1).bit_length())
    if bits > 32:
        return None
    packed = np.sort(((keys >> np.uint64(bits + 1)) << np.uint64(bits)) | np.arange(n, dtype=np.uint64))
    position = (packed & np.uint64((1 << bits) - 1)).astype(np.int64)
    top = packed >> np.uint64(bits)
    new = np.ones(n, dtype=np.bool_)
    new[1:] = top[1:] != top[:-1]
    ids = np.empty(n, dtype=np.int64)
    ids[position] = np.cumsum(new) - 1
    return ids, position[new]


def _short_ids(low: U64, high: U64) -> tuple[IntArray, IntArray]:
    """Exact ids (and first positions) of packed short words: group a 64-bit hash, verify, fall back on a collision."""
    hashed = _mix(low * _HASH_ODD + high)
    grouped = _sorted_ids(hashed)
    if grouped is not None:
        ids, first = grouped
        if np.array_equal(low[first][ids], low) and np.array_equal(high[first][ids], high):
            return ids, first
    keys = np.empty((len(low), 2), dtype=np.uint64)  # a hash collision: encode the exact 16-byte keys instead
    keys[:, 0], keys[:, 1] = low, high
    ids, count = _encode(pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(keys), [None, pa.py_buffer(keys)]))
    return ids, _first_of(ids, count)


def _mix(x: U64) -> U64:
    """Splitmix64's finaliser, so the top bits kept by `_sorted_ids` depend on every input bit."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _first_seen_short_ids(low: U64, high: U64) -> tuple[IntArray, IntArray]:
    """`_short_ids`, numbered in order of first occurrence: the packed words' 64-bit hash through a hash table.

    Arrow's dictionary_encode of the uint64 hashes took 3 ms where `_sorted_ids`' sort took 13 (290k words of
    benchmarks/real_text_corpus.py, ~30k distinct); the table stays in cache while the sort moves every word.
    """
    hashed = _mix(low * _HASH_ODD + high)
    # from_buffers, not pa.array(hashed): that imports numpy.ma (~0.01 CPU-s) to check for a masked array
    ids, count = _encode(pa.Array.from_buffers(pa.uint64(), len(hashed), [None, pa.py_buffer(hashed)]))
    first = _first_of(ids, count)
    if np.array_equal(low[first][ids], low) and np.array_equal(high[first][ids], high):
        return ids, first
    return _short_ids(low, high)  # a hash collision: exact keys (numbered otherwise, which callers allow)


_ShortIds = Callable[[U64, U64], tuple[IntArray, IntArray]]


def _word_ids(
    data: ByteArray, starts: IntArray, ends: IntArray, short_ids: _ShortIds = _short_ids
) -> tuple[IntArray, IntArray]:
    lengths = ends - starts
    long = lengths > _SHORT
    if not long.any():
        return short_ids(*_short_keys(data, starts, lengths))
    short_at, long_at = np.flatnonzero(~long), np.flatnonzero(long)
    ids = np.empty(len(starts), dtype=np.int64)
    ids[short_at], short_first = short_ids(*_short_keys(data, starts[short_at], lengths[short_at]))
    joined, bounds = _gather(data, starts[long_at], ends[long_at])
    buffers = [None, pa.py_buffer(bounds), pa.py_buffer(joined)]
    long_ids, long_count = _encode(pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(long_at), buffers))
    ids[long_at] = long_ids + len(short_first)
    first = np.concatenate((short_at[short_first], long_at[_first_of(long_ids, long_count)]))
    return ids, first


def replace_at(arr: pa.Array, positions: Sequence[int] | IntArray, values: pa.Array) -> pa.Array:
    """`arr` with its items at `positions` (ascending) replaced by `values`, in that order, in one Arrow kernel.

    Steps that rewrite a few texts of a batch write back only those: the rest of the column is not converted.

    Examples:
        >>> replace_at(pa.array(["a", "b", "c"]), [0, 2], pa.array(["x", "z"])).to_pylist()
        ['x', 'b', 'z']
    """
    mask = np.zeros(len(arr), dtype=np.bool_)
    mask[np.asarray(positions, dtype=np.int64)] = True
    return pc.replace_with_mask(arr, pa.array(mask), values)


def utf8_encodable(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (False for a lone surrogate, which Arrow and fastText refuse)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# Python lowers these two by more than one code point's mapping: U+0130 (İ) to two characters, U+03A3 (Σ) to
# a final sigma by context. Arrow's utf8_lower (utf8proc) maps every code point on its own.
_CONTEXTUAL_LOWER = (0x130, 0x3A3)
_COMPARED_BELOW = 0x20000  # code points past the first two planes (CJK extensions, tags, private use) are not compared


@lru_cache(maxsize=1)
def _arrow_lower_differs() -> tuple[BoolArray, int]:
    """Per UTF-8 character prefix (first byte << 8 | second byte): whether Arrow may lower it unlike `str.lower`.

    Found by lowering every code point of the first two planes both ways, in this process (so a pyarrow or
    Python whose Unicode tables differ is caught): the characters lowered differently (on pyarrow 26 and
    Python 3.11, 75 letters Unicode added after 14.0), the two context-dependent ones, and everything past
    the planes compared, by the prefixes their UTF-8 starts with (a prefix covers 64 to 4,096 code points,
    so this errs towards Python). Also the smallest first byte of such a prefix. 5-9 ms once per process.
    """
    points = np.arange(_COMPARED_BELOW, dtype=np.uint32)
    points = points[((points < 0xD800) | (points > 0xDFFF)) & ~np.isin(points, _CONTEXTUAL_LOWER)]
    text = points.astype("<u4").tobytes().decode("utf-32-le")
    python = text.lower()
    arrow = pc.utf8_lower(pa.array([text], pa.large_string()))[0].as_py()
    differs = np.zeros(0x10000, dtype=np.bool_)
    if len(python) != len(text) or len(arrow) != len(text):  # not one code point for one: never trust Arrow
        differs[0xC000:] = True
        return differs, 0xC0
    mine = np.frombuffer(python.encode("utf-32-le"), dtype="<u4") != np.frombuffer(arrow.encode("utf-32-le"), "<u4")
    for point in [*points[mine].tolist(), *_CONTEXTUAL_LOWER]:
        encoded = chr(point).encode("utf-8")
        if len(encoded) == 1:  # an ASCII letter: every prefix it starts
            differs[encoded[0] << 8 : (encoded[0] + 1) << 8] = True
        else:
            differs[encoded[0] << 8 | encoded[1]] = True
    differs[0xF0A0:0xF100] = True  # U+20000-U+3FFFF (F0 A0-BF ...), not compared
    differs[0xF100:] = True  # U+40000 and up
    return differs, int(np.flatnonzero(differs)[0] >> 8)


def lower_like_python(texts: pa.Array) -> pa.Array:
    """`[t.lower() for t in texts]` as a large_string array, by Arrow's `utf8_lower` where that gives the same.

    Written by hand for speed: Python's `str.lower` took 0.063 CPU-s for the 14.6M characters of
    benchmarks/real_text_corpus.py, Arrow's 0.0095. Arrow maps each code point on its own by its Unicode
    tables; a text holding a character it may lower otherwise (`_arrow_lower_differs`) is lowered by Python.
    Nulls stay null.

    Examples:
        >>> lower_like_python(pa.array(["ΟΔΟΣ İs", "ABC"])).to_pylist() == ["ΟΔΟΣ İs".lower(), "abc"]
        True
    """
    if not pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.large_string())
    lowered = pc.utf8_lower(texts)
    data, offsets = text_buffer(texts)
    differs, first = _arrow_lower_differs()
    lead = np.flatnonzero(data >= first)  # first >= 0xC0: only the first byte of a character qualifies
    if len(lead):
        prefix = (data[lead].astype(np.intp) << 8) | data[np.minimum(lead + 1, len(data) - 1)]
        hit = lead[differs[prefix]]
        if len(hit):
            rows = np.searchsorted(offsets, hit, side="right") - 1
            rows = rows[np.concatenate(([True], rows[1:] != rows[:-1]))]  # hits are ascending: rows too
            python = [None if t is None else t.lower() for t in texts.take(pa.array(rows)).to_pylist()]
            lowered = replace_at(lowered, rows, pa.array(python, pa.large_string()))
    return lowered
