"""MinHash-LSH near-duplicate detection over lists of strings: signatures, banding, clustering.

Signatures are pure functions of text and parameters (no Python `hash()`), so worker processes can
compute them for their shards and a single `NearDuplicateIndex` can collect them. The module knows
nothing about records, files or the curation engine: keys are opaque unique strings, and what to do
with the duplicates it names is the caller's business.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from keel.core.errors import InputError
from keel.curate._words import lower_like_python, text_buffer

__all__ = [
    "SMALL_GROUP",
    "MinHashParams",
    "NearDuplicateIndex",
    "band_keys",
    "cluster_report",
    "estimated_jaccard",
    "exact_jaccard",
    "keep_rank",
    "minhash_signatures",
    "minhash_sketches",
    "sketch_jaccard",
    "verified_similarity",
    "Sketches",
    "pairs_within_groups",
    "rep_similarities",
    "representatives",
    "similarity_summary",
]


def sorted_unique(values: npt.NDArray[Any], counts: bool = False) -> Any:
    """`np.unique(values)` (with `return_counts=True` when `counts`) by one sort and a comparison of neighbours.

    np.unique's first call imports numpy.ma (~0.03 CPU-s, to check for masked arrays) in every run; this is the
    same sorted array of distinct values (and how often each occurs), without it.
    """
    ordered = np.sort(values)
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    unique = ordered[first]
    if not counts:
        return unique
    starts = np.flatnonzero(first)
    return unique, np.diff(np.append(starts, len(ordered)))


U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
SIG = npt.NDArray[np.uint32]
F64 = npt.NDArray[np.float64]
Texts: TypeAlias = Sequence[str] | pa.Array | pa.ChunkedArray  # Python strings, or an Arrow string column

EMPTY = np.uint32(0xFFFFFFFF)  # every slot of a text with no shingles; such texts are never duplicates
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
# One permutation block is num_perm x (this / num_perm) uint64, 8 MB: best-of-4 on this machine, blocks of 0.9 / 3.7 /
# 7.3 / 15 MB gave 16.7 / 20.7 / 24.3 / 13.3 MB/s of text; smaller blocks pay numpy's per-call overhead more often.
_BLOCK_ELEMENTS = 1 << 20
_BATCH_CHARS = 2_000_000  # texts per signature batch, by length, so one batch's shingle arrays stay ~10-20 MB
SMALL_GROUP = 32  # bucket groups up to this size yield all pairs; larger ones (mass copies) pairs with their first 32
# ASCII punctuation becomes a word break; bytes.translate + bytes.split tokenise at ~100 MB/s, re.findall(r"\w+") at 19.
_PUNCT = bytes(32 if chr(i) in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" else i for i in range(256))


def _splitmix(state: int) -> int:
    z = (state + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _odd_constants(seed: int, count: int, salt: int) -> U64:
    """`count` odd 64-bit constants from a fixed integer recipe, identical on every machine and numpy version."""
    state = (seed * 0x2545F4914F6CDD1D + salt) & _MASK64
    values = []
    for _ in range(count):
        state = (state + _GOLDEN) & _MASK64
        values.append(_splitmix(state) | 1)
    return np.array(values, dtype=np.uint64)


def _mix64(x: U64) -> U64:
    """Splitmix64's finaliser, in place: n-gram sums become uniformly spread 64-bit hashes."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _candidate_probability(s: npt.NDArray[np.float64], bands: int, rows: int) -> npt.NDArray[np.float64]:
    return 1.0 - (1.0 - s**rows) ** bands


@lru_cache(maxsize=64)
def _choose_bands(threshold: float, num_perm: int, recall: float) -> tuple[int, int]:
    """The steepest bands x rows that still make a pair at `threshold` a candidate with probability >= `recall`.

    datasketch minimises the equally weighted false-positive + false-negative areas; at threshold 0.8 and 112
    permutations that picks 9 x 12, which finds a pair at Jaccard 0.8 only 47% of the time. Candidates here are
    verified afterwards, so a false positive costs a comparison while a false negative is a missed duplicate:
    bound the miss rate at the threshold and, within that, minimise the false-positive area below it.
    """
    below = np.linspace(0.0, threshold, 401)
    best: tuple[float, int, int, int] | None = None
    for rows in range(1, num_perm + 1):
        for bands in range(1, num_perm // rows + 1):
            p_at = float(_candidate_probability(np.array([threshold]), bands, rows)[0])
            if p_at < recall:
                continue
            fp_area = float(np.trapezoid(_candidate_probability(below, bands, rows), below))
            option = (round(fp_area, 12), bands * rows, bands, rows)
            if best is None or option < best:
                best = option
            break  # more bands only raise the curve: the first feasible count is the steepest for these rows
    if best is None:
        raise InputError(
            f"expected bands x rows <= num_perm={num_perm} that find pairs at Jaccard {threshold} with probability "
            f">= {recall}, found none",
            hint="raise num_perm or lower recall_at_threshold",
        )
    return best[2], best[3]


@dataclass(frozen=True, slots=True)
class MinHashParams:
    """How texts are shingled, hashed and banded, and when two texts count as near-duplicates.

    Texts are lower-cased; ASCII punctuation and whitespace (and no-break spaces) separate words, other
    characters belong to words (no Unicode normalisation or diacritic folding). With `unit="word"` a shingle
    is `ngram` consecutive words; a text with fewer words than that is one shingle. With `unit="char"` a
    shingle is `ngram` consecutive characters of the text with punctuation removed and whitespace collapsed.

    Give either `bands` and `rows` (with `bands * rows <= num_perm`), or a `threshold` from which they are
    chosen: the steepest S-curve for which a pair at Jaccard `threshold` becomes a candidate with
    probability at least `recall_at_threshold`.

    Args:
        ngram: Shingle length, in words or characters.
        unit: `"word"` or `"char"`.
        num_perm: MinHash permutations, i.e. signature length; the LSH uses the first `bands * rows`.
        bands: LSH bands; set together with `rows`.
        rows: Signature values per band.
        threshold: Jaccard similarity above which two texts are near-duplicates.
        seed: Picks the hash permutations; signatures from different seeds cannot be compared.
        verify: Check every candidate pair's Jaccard against `threshold` before one can drop the other.
        recall_at_threshold: Candidate probability required at `threshold` when choosing bands x rows.
        sketch: Shingles kept per text for verification (`minhash_sketches`): pairs of texts with fewer than
            this many distinct shingles are verified exactly, longer ones by a bottom-k estimate; 0 for none.

    Examples:
        >>> p = MinHashParams(threshold=0.8)
        >>> (p.bands, p.rows, p.num_perm)
        (16, 6, 112)
        >>> round(p.s_curve(points=3)[1][1], 3)
        0.223
    """

    ngram: int = 5
    unit: Literal["word", "char"] = "word"
    num_perm: int = 112
    bands: int | None = None
    rows: int | None = None
    threshold: float | None = 0.8
    seed: int = 1
    verify: bool = True
    recall_at_threshold: float = 0.99
    sketch: int = 384
    _multipliers: U64 = field(init=False, repr=False, compare=False)
    _gram_weights: U64 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate_scalars()
        if (self.bands is None) != (self.rows is None):
            raise InputError(
                f"expected both bands and rows or neither, found bands={self.bands}, rows={self.rows}",
                hint="set both, or leave both unset and give a threshold",
            )
        if self.bands is None or self.rows is None:
            if self.threshold is None:
                raise InputError("expected a threshold or bands and rows, found neither", hint="pass threshold=0.8")
            bands, rows = _choose_bands(self.threshold, self.num_perm, self.recall_at_threshold)
            object.__setattr__(self, "bands", bands)
            object.__setattr__(self, "rows", rows)
        elif self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm:
            raise InputError(
                f"expected bands >= 1, rows >= 1 and bands * rows <= num_perm={self.num_perm}, "
                f"found {self.bands} x {self.rows}",
                hint="lower bands or rows, or raise num_perm",
            )
        if self.verify and self.threshold is None:
            raise InputError(
                "expected a threshold to verify candidate pairs against, found None", hint="or pass verify=False"
            )
        object.__setattr__(self, "_multipliers", _odd_constants(self.seed, self.num_perm, salt=1))
        object.__setattr__(self, "_gram_weights", _odd_constants(self.seed, self.ngram, salt=2))

    def _validate_scalars(self) -> None:
        if self.unit not in ("word", "char"):
            raise InputError(f"expected unit 'word' or 'char', found {self.unit!r}")
        if not 1 <= self.ngram <= 64:
            raise InputError(f"expected 1 <= ngram <= 64, found {self.ngram}", hint="5 words or 9-24 characters")
        if not 1 <= self.num_perm <= 1024:
            raise InputError(f"expected 1 <= num_perm <= 1024, found {self.num_perm}", hint="112 to 256 is usual")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise InputError(f"expected 0 < threshold < 1, found {self.threshold}", hint="0.7-0.85 is usual")
        if not 0.0 < self.recall_at_threshold < 1.0:
            raise InputError(f"expected 0 < recall_at_threshold < 1, found {self.recall_at_threshold}")
        if not 0 <= self.sketch <= 4096:
            raise InputError(
                f"expected 0 <= sketch <= 4096, found {self.sketch}", hint="384 is the default; 0 for none"
            )
        if not 0 <= self.seed < 2**63:
            raise InputError(f"expected 0 <= seed < 2**63, found {self.seed}")

    def s_curve(self, points: int = 21) -> list[tuple[float, float]]:
        """`(jaccard, P(candidate))` at `points` evenly spaced similarities: 1 - (1 - s^rows)^bands."""
        s = np.linspace(0.0, 1.0, max(points, 2))
        p = _candidate_probability(s, int(self.bands or 0), int(self.rows or 0))
        return [(round(float(a), 4), round(float(b), 6)) for a, b in zip(s, p, strict=True)]


def _words(text: str) -> list[bytes]:
    lowered = text.lower().replace("\xa0", " ").encode("utf-8", "surrogatepass")
    return lowered.translate(_PUNCT).split()


def _chars(text: str) -> npt.NDArray[np.uint32]:
    cleaned = b" ".join(_words(text)).decode("utf-8", "surrogatepass")
    return np.frombuffer(cleaned.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _large_strings(texts: Texts) -> pa.Array | None:
    """`texts` as one large_string array (nulls as empty texts), or None for Python strings Arrow cannot hold."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.chunk(0) if texts.num_chunks == 1 else texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        try:
            texts = pa.array(texts, pa.large_string())
        except UnicodeEncodeError:  # a lone surrogate
            return None
    if not pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.large_string())
    return texts.fill_null("") if texts.null_count else texts


def _lowered_utf8(texts: Texts) -> tuple[bytearray, I64]:
    """Each text lowered exactly as `str.lower` lowers it, UTF-8 (surrogatepass), concatenated; and byte offsets."""
    array = _large_strings(texts)
    if array is None:
        encoded = [t.lower().encode("utf-8", "surrogatepass") for t in texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
        return bytearray(b"".join(encoded)), offsets
    data, offsets = text_buffer(lower_like_python(array))
    return bytearray(data), offsets


def _word_hashes(texts: Texts) -> tuple[U64, I64]:
    """xxh3 of every word of `_words(text)` for each text, concatenated, and the count per text.

    Lowered by Arrow where it lowers as `str.lower` does (`lower_like_python`), punctuation made spaces on the
    whole batch's bytes, split at ASCII whitespace and numbered by word with Arrow (`ascii_split_whitespace`,
    `dictionary_encode`), so each distinct word is hashed once. Measured on the shards of
    benchmarks/curation_vs_datatrove.py: 0.19 CPU-s where lowering and encoding text by text and splitting
    with numpy (keel.curate._words.split_words) took 0.35, for the same hashes (tests/unit/curate/test_minhash.py).
    """
    data, offsets = _lowered_utf8(texts)
    cleaned = data.translate(_PUNCT)
    # A no-break space is C2 A0 in UTF-8 (an A0 byte after C2 is never anything else): two spaces, one word break.
    view = np.frombuffer(cleaned, dtype=np.uint8)
    nbsp = np.flatnonzero(view[1:] == 0xA0) + 1
    nbsp = nbsp[view[nbsp - 1] == 0xC2]
    view[nbsp - 1] = view[nbsp] = 0x20
    count = len(offsets) - 1
    # Not validated as UTF-8 (surrogatepass bytes may be invalid): the ASCII split reads bytes only.
    strings = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(cleaned))
    split = pc.ascii_split_whitespace(strings)
    words = split.values
    per_text = np.asarray(split.offsets, dtype=np.int64)
    encoded = words.dictionary_encode()
    vocabulary = encoded.dictionary.cast(pa.large_binary()).to_pylist()
    distinct = np.fromiter(map(xxhash.xxh3_64_intdigest, vocabulary), dtype=np.uint64, count=len(vocabulary))
    ids = np.asarray(encoded.indices)
    # Leading and trailing whitespace give empty "words" (and an empty text one): drop them, as bytes.split does
    # (their ids, not the words: a quarter of the copying).
    bounds = np.frombuffer(words.buffers()[1], dtype=np.int64)[words.offset : words.offset + len(words) + 1]
    empty = bounds[1:] == bounds[:-1]
    if empty.any():
        ids = ids[~empty]
        before = np.zeros(len(empty) + 1, dtype=np.int64)
        np.cumsum(empty, out=before[1:])
        per_text = per_text - before[per_text]
    return distinct[ids], np.diff(per_text)


def _token_hashes(texts: Texts, unit: str) -> tuple[U64, I64]:
    """One 64-bit hash per word (xxh3 of its UTF-8) or per character, concatenated, and the count per text."""
    if unit == "word":
        return _word_hashes(texts)
    if isinstance(texts, pa.Array | pa.ChunkedArray):
        texts = [t or "" for t in texts.to_pylist()]
    chars = [_chars(t) for t in texts]
    joined = np.concatenate(chars) if chars else np.zeros(0, dtype=np.uint32)
    hashes = _mix64(joined.astype(np.uint64) + np.uint64(_GOLDEN))
    return hashes, np.fromiter(map(len, chars), dtype=np.int64, count=len(chars))


def _shingles(texts: Texts, params: MinHashParams) -> tuple[U64, I64]:
    """Every shingle hash of every text, concatenated in text order, and the number per text.

    An n-gram's hash is a weighted sum of its token hashes (wrapping uint64 arithmetic, one vector pass per
    position, so tokens are hashed once) pushed through a 64-bit finaliser.
    """
    hashes, lengths = _token_hashes(texts, params.unit)
    n, weights = params.ngram, params._gram_weights
    starts = np.cumsum(lengths) - lengths
    full = np.maximum(lengths - n + 1, 0)
    counts = np.where((lengths > 0) & (lengths < n), 1, full)
    offsets = np.cumsum(counts) - counts
    out = np.zeros(int(counts.sum()), dtype=np.uint64)
    span = len(hashes) - n + 1
    if span > 0 and full.any():
        grams = hashes[:span] * weights[0]
        for k in range(1, n):
            grams += hashes[k : k + span] * weights[k]
        within = np.arange(int(full.sum()), dtype=np.int64) - np.repeat(np.cumsum(full) - full, full)
        out[np.repeat(offsets, full) + within] = grams[np.repeat(starts, full) + within]
    for doc in np.flatnonzero((lengths > 0) & (lengths < n)):  # texts shorter than one n-gram: rare, so a loop
        s, length = int(starts[doc]), int(lengths[doc])
        out[offsets[doc]] = np.sum(hashes[s : s + length] * weights[:length], dtype=np.uint64)
    return _mix64(out), counts


def _min_hashes(shingles: U64, counts: I64, multipliers: U64) -> SIG:
    """Per text, the minimum of `m * x mod 2**64` over its shingles `x`, for each multiplier `m`, top 32 bits.

    Multiply-shift without the usual `+ b` term: on mixed 64-bit inputs its estimates matched the binomial
    standard error (measured 0.0382 vs 0.0378 at J=0.8) and it saves one of three passes over the block.
    """
    total = len(counts)
    mins = np.full((len(multipliers), total), np.iinfo(np.uint64).max, dtype=np.uint64)
    owner = np.repeat(np.arange(total, dtype=np.int64), counts)
    step = max(256, _BLOCK_ELEMENTS // len(multipliers))
    for lo in range(0, len(shingles), step):
        block_owner = owner[lo : lo + step]
        seg = np.flatnonzero(np.concatenate(([True], block_owner[1:] != block_owner[:-1])))
        block = np.minimum.reduceat(np.multiply.outer(multipliers, shingles[lo : lo + step]), seg, axis=1)
        docs = block_owner[seg]
        mins[:, docs] = np.minimum(mins[:, docs], block)
    return np.ascontiguousarray((mins >> np.uint64(32)).astype(np.uint32).T)


def _batches(texts: Texts) -> Iterator[tuple[int, int]]:
    """Consecutive ranges of `texts` holding about `_BATCH_CHARS` characters (UTF-8 bytes in an Arrow column)."""
    if isinstance(texts, pa.Array | pa.ChunkedArray):
        sizes: Iterable[int] = pc.fill_null(pc.binary_length(texts), 0).to_numpy().tolist()
    else:
        sizes = map(len, texts)
    start, size = 0, 0
    for i, length in enumerate(sizes):
        size += length
        if size >= _BATCH_CHARS:
            yield start, i + 1
            start, size = i + 1, 0
    if start < len(texts):
        yield start, len(texts)


def minhash_signatures(texts: Texts, params: MinHashParams) -> SIG:
    """MinHash signatures of `texts`: one row of `params.num_perm` uint32 values per text.

    Deterministic across runs, processes and machines for the same `params` (xxh3 token hashes, permutation
    constants from a fixed integer recipe). A text without a single word gets a row of `0xFFFFFFFF`, which
    `NearDuplicateIndex` never matches.

    Examples:
        >>> p = MinHashParams()
        >>> sig = minhash_signatures(["the cat sat on the mat today", "the cat sat on the mat today"], p)
        >>> sig.shape, sig.dtype.name, bool((sig[0] == sig[1]).all())
        ((2, 112), 'uint32', True)
    """
    out = np.empty((len(texts), params.num_perm), dtype=np.uint32)
    for start, stop in _batches(texts):
        shingles, counts = _shingles(texts[start:stop], params)
        out[start:stop] = _min_hashes(shingles, counts, params._multipliers)
    return out


@dataclass(frozen=True, slots=True)
class Sketches:
    """Bottom-k shingle sketches, ragged: text i's sorted distinct values are `values[offsets[i]:offsets[i + 1]]`.

    A value is the top 32 bits of a shingle hash; a text with fewer distinct shingles than k keeps them all.
    """

    values: npt.NDArray[np.uint32]
    offsets: I64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> npt.NDArray[np.uint32]:
        """Text i's sketch."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def take(self, rows: I64) -> Sketches:
        """The sketches of `rows`, in that order."""
        starts, lengths = self.offsets[:-1][rows], np.diff(self.offsets)[rows]
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(int(offsets[-1]), dtype=np.int64)
        return Sketches(self.values[index], offsets)

    @staticmethod
    def concat(parts: Sequence[Sketches]) -> Sketches:
        """One set of sketches from several, in order."""
        if not parts:
            return Sketches(np.zeros(0, np.uint32), np.zeros(1, np.int64))
        values = np.concatenate([p.values for p in parts])
        lengths = np.concatenate([np.diff(p.offsets) for p in parts])
        return Sketches(values, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64))


def _bottom_k(shingles: U64, counts: I64, k: int) -> Sketches:
    """Per text, its `k` smallest distinct shingle values (top 32 bits of each hash), sorted."""
    n = len(counts)
    owner = np.repeat(np.arange(n, dtype=np.uint64), counts)
    key = (owner << np.uint64(32)) | (shingles >> np.uint64(32))
    # By text, then value (equal keys are equal values, so any sort gives the same array). numpy's default sort
    # (x86-simd-sort with AVX-512 on this machine) took 0.028-0.040 CPU-s for the shingles of the shards of
    # benchmarks/real_text_corpus.py against 0.070-0.080 for a stable sort (timsort over the texts' runs), and
    # the stable sort half of an older introsort; np.unique was 10x slower.
    key.sort()
    key = key[np.concatenate(([True], key[1:] != key[:-1]))]
    own = (key >> np.uint64(32)).astype(np.int64)
    first = np.concatenate(([0], np.cumsum(np.bincount(own, minlength=n))[:-1]))
    chosen = np.arange(len(key), dtype=np.int64) - first[own] < k
    lengths = np.bincount(own[chosen], minlength=n)
    values = (key[chosen] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return Sketches(values, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64))


def minhash_sketches(texts: Texts, params: MinHashParams) -> tuple[SIG, Sketches]:
    """`minhash_signatures(texts)` and each text's bottom-`params.sketch` shingle sketch, from one shingling.

    Examples:
        >>> sig, sketches = minhash_sketches(["one two three four five six", ""], MinHashParams())
        >>> sig.shape, [len(sketches.row(i)) for i in range(2)]
        ((2, 112), [2, 0])
    """
    out = np.empty((len(texts), params.num_perm), dtype=np.uint32)
    parts = []
    for start, stop in _batches(texts):
        shingles, counts = _shingles(texts[start:stop], params)
        out[start:stop] = _min_hashes(shingles, counts, params._multipliers)
        parts.append(_bottom_k(shingles, counts, params.sketch))
    return out, Sketches.concat(parts)


def sketch_jaccard(a: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32], k: int) -> float:
    """Jaccard of two texts from their bottom-k sketches: exact when both kept all their shingles (< k).

    Otherwise the bottom-k estimate: of the k smallest values of the union (which the two sketches hold),
    the share found in both (membership is decidable: each sketch reaches past the union's k-th value).
    """
    if not len(a) or not len(b):
        return 0.0
    # Written by hand for speed: both sketches are sorted and distinct, so one binary search finds the shared
    # values; np.union1d and np.intersect1d sorted both again (~3x the CPU per pair, measured on the pairs of
    # benchmarks/curation_vs_datatrove.py). The union itself is built only when it must be cut at k.
    at = np.searchsorted(b, a)
    shared = b[np.minimum(at, len(b) - 1)] == a
    both = int(np.count_nonzero(shared))
    union = len(a) + len(b) - both
    if union <= k or (len(a) < k and len(b) < k):
        return both / union
    # The union's k-th smallest value bounds the shared values that count (sorted_unique, not np.union1d: that
    # imports numpy.ma, ~0.01 CPU-s, on its first call).
    kth = sorted_unique(np.concatenate((a, b)))[k - 1]
    return int(np.count_nonzero(a[shared] <= kth)) / k


SKETCH_BAND = 0.2  # pairs whose MinHash estimate is this far below the threshold are not looked at again


def verified_similarity(
    estimate: F64, sketches: tuple[Sketches, I64, Sketches, I64] | None, threshold: float, params: MinHashParams
) -> tuple[F64, npt.NDArray[np.bool_]]:  # fmt: skip
    """Similarity of pairs for verification, and which pairs are accepted (both engines verify with this).

    The similarity is the MinHash `estimate`, or where that is below 1.0 but no more than `SKETCH_BAND` below
    the threshold, the sketches' Jaccard (`sketch_jaccard`); `sketches` is `(first, first_rows, second,
    second_rows)`: pair i is row `first_rows[i]` of `first` with row `second_rows[i]` of `second`. An exact
    similarity is accepted at the threshold; an estimate only at the threshold plus one standard error of
    the estimate there, so estimation errs on keeping. Identical signatures (a pair below Jaccard 0.9 matches
    all 112 slots with probability < 1e-5) are accepted and clear misses (5 standard errors below) rejected.
    """
    k = params.sketch
    similarity, exact = estimate.copy(), estimate >= 1.0
    if sketches is not None and k:
        first, first_rows, second, second_rows = sketches
        for i in np.flatnonzero((estimate < 1.0) & (estimate >= threshold - SKETCH_BAND)).tolist():
            a, b = first.row(int(first_rows[i])), second.row(int(second_rows[i]))
            similarity[i] = sketch_jaccard(a, b, k)
            exact[i] = len(a) < k and len(b) < k
    slots = k if sketches is not None and k else params.num_perm
    margin = float(np.sqrt(threshold * (1.0 - threshold) / slots))
    return similarity, np.where(exact, similarity >= threshold, similarity >= threshold + margin)


def exact_jaccard(a: str, b: str, params: MinHashParams) -> float:
    """The exact Jaccard similarity of two texts' shingle sets, as `params` shingles them (0.0 if both empty)."""
    shingles, counts = _shingles([a, b], params)
    first, second = np.unique(shingles[: counts[0]]), np.unique(shingles[counts[0] :])
    union = len(np.union1d(first, second))
    return len(np.intersect1d(first, second, assume_unique=True)) / union if union else 0.0


def band_keys(sig: SIG, band: int, rows: int) -> npt.NDArray[np.uint64]:
    """One 64-bit key per signature row for band `band` (its `rows` values, FNV-combined).

    The local index and the Ray engine's band rows both key bands with this, so they find the same candidates.
    """
    cols = sig[:, band * rows : (band + 1) * rows].astype(np.uint64)
    keys = cols[:, 0].copy()
    for j in range(1, rows):
        keys = keys * np.uint64(0x100000001B3) + cols[:, j]
    return keys


def pairs_within_groups(group: I64) -> tuple[I64, I64]:
    """Position pairs `(i < j)` of members of the same group; a group's members are adjacent in `group`.

    Groups of up to `SMALL_GROUP` members yield all their pairs. A larger group (hundreds of copies of one
    text) yields the pairs of its first `SMALL_GROUP` members with every later member: linearly many pairs,
    and since callers order each group by keep priority (never by id), which pairs they are depends only on
    the texts and the keep policy.
    """
    n = len(group)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    position = np.arange(n, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    sizes = np.diff(np.concatenate((starts, [n])))
    owner = np.repeat(np.arange(len(starts)), sizes)
    small = sizes[owner] <= SMALL_GROUP
    lo, hi = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for d in range(1, int(min(sizes.max(), SMALL_GROUP))):
        hit = (owner[:-d] == owner[d:]) & small[:-d]
        lo.append(position[:-d][hit])
        hi.append(position[d:][hit])
    if not small.all():
        offset = position - starts[owner]
        for anchor in range(SMALL_GROUP):
            hit = ~small & (offset > anchor)
            lo.append(starts[owner[hit]] + anchor)
            hi.append(position[hit])
    return np.concatenate(lo).astype(np.int64), np.concatenate(hi).astype(np.int64)


def _band_pairs(sig: SIG, band: int, rows: int) -> I64:
    """Index pairs `(lo, hi)` of rows whose band `band` is identical, as one int64 code `lo * n + hi` each.

    Rows are keyed per band and sorted; equal keys form a group (`pairs_within_groups`).
    """
    n = len(sig)
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    keys = band_keys(sig, band, rows)
    order = np.argsort(keys, kind="stable")  # stable: within a group, rows stay in ascending index order
    sorted_keys = keys[order]
    same = sorted_keys[1:] == sorted_keys[:-1]
    in_group = np.concatenate((same, [False])) | np.concatenate(([False], same))
    members, member_keys = order[in_group], sorted_keys[in_group]
    lo, hi = pairs_within_groups(member_keys.view(np.int64))
    return members[lo].astype(np.int64) * n + members[hi]


def representatives(n: int, lo: I64, hi: I64) -> I64:
    """For `n` nodes ranked by keep priority (node 0 first), the kept node each node is dropped for (or itself).

    Greedy by priority over accepted pairs `(lo, hi)`: the first node is kept; a node is dropped if it is paired
    with a kept node ranked before it, and then belongs to the first such node; otherwise it is kept. So every
    dropped node was verified against the very node kept for it, never only through a chain of pairs (A~B~C
    does not drop C for A). Computed in vectorised rounds, not a Python loop over nodes: each round decides
    every node whose better-ranked neighbours are all decided. Rounds are as many as the longest chain of
    pairs, a few on dedup graphs; past `_VECTOR_ROUNDS` the nodes left are decided one by one in rank order.
    """
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    status = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, 2 dropped
    has_better = np.zeros(n, dtype=bool)
    has_better[hi] = True
    status[~has_better] = 1
    open_lo, open_hi = lo, hi
    for _ in range(_VECTOR_ROUNDS):
        if not len(open_lo):
            break
        above = status[open_lo]
        dropped = np.zeros(n, dtype=bool)
        dropped[open_hi[above == 1]] = True
        blocked = np.zeros(n, dtype=bool)
        blocked[open_hi[above != 2]] = True
        status[(status == 0) & ~blocked] = 1
        status[dropped] = 2
        still = status[open_hi] == 0
        open_lo, open_hi = open_lo[still], open_hi[still]
    else:  # long chains of pairs (each round decides one link): finish them one node at a time, in rank order
        by_hi = np.argsort(open_hi, kind="stable")
        open_lo, open_hi = open_lo[by_hi], open_hi[by_hi]
        bounds = np.searchsorted(open_hi, np.flatnonzero(status == 0), side="left").tolist() + [len(open_hi)]
        for i, node in enumerate(np.flatnonzero(status == 0).tolist()):
            status[node] = 2 if (status[open_lo[bounds[i] : bounds[i + 1]]] == 1).any() else 1
    first = np.full(n, n, dtype=np.int64)
    to_kept = (status[lo] == 1) & (status[hi] == 2)
    np.minimum.at(first, hi[to_kept], lo[to_kept])
    return np.where(status == 2, first, np.arange(n, dtype=np.int64))


_VECTOR_ROUNDS = 64  # rounds of the vectorised keep pass before the rest is decided node by node

_HISTOGRAM_EDGES = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)


def similarity_summary(similarity: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Quantiles and a histogram of dropped records' similarity to the record kept for them (for report.json)."""
    if not len(similarity):
        return {"count": 0, "quantiles": {}, "histogram": []}
    points = {"min": 0.0, "p01": 0.01, "p05": 0.05, "p10": 0.1, "p25": 0.25, "p50": 0.5}
    values = np.quantile(similarity, list(points.values()), method="lower")
    counts, _ = np.histogram(similarity, bins=_HISTOGRAM_EDGES)
    exact = int((similarity >= 1.0).sum())  # the last bin is [0.95, 1.0]: identical shingle sets apart
    bins = [
        [lo, hi, int(c) - (exact if hi == 1.0 else 0)]
        for lo, hi, c in zip(_HISTOGRAM_EDGES[:-1], _HISTOGRAM_EDGES[1:], counts, strict=True)
    ]
    return {
        "count": len(similarity),
        "quantiles": {name: round(float(v), 4) for name, v in zip(points, values, strict=True)},
        "histogram": [b for b in bins if b[2]] + ([[1.0, 1.0, exact]] if exact else []),
    }


def cluster_report(
    documents: int, keys: npt.NDArray[np.str_], rep: I64, rep_similarity: npt.NDArray[np.float64],
    counts: tuple[int, int], verification: str, params: MinHashParams, examples: int = 5,
) -> dict[str, Any]:  # fmt: skip
    """The near-dedup report from nodes in keep-priority order and their representatives (`representatives`).

    Both engines build it with this function from the same nodes, pairs and similarities, so they report alike.
    `counts` is (candidate pairs, accepted pairs); `rep_similarity` is each node's similarity to its kept node.
    """
    members = np.bincount(rep, minlength=len(rep))
    sizes = members[members > 1]
    histogram = sorted_unique(sizes, counts=True)
    dropped = np.flatnonzero(rep != np.arange(len(rep)))
    nearest = dropped[np.lexsort((dropped, rep_similarity[dropped]))][:examples]
    return {
        "documents": documents,
        "clusters": len(sizes),
        "duplicates": len(dropped),
        "cluster_sizes": {int(s): int(c) for s, c in zip(*histogram, strict=True)},
        "candidate_pairs": counts[0],
        "verified_pairs": counts[1],
        "verification": verification,
        "bands": params.bands,
        "rows": params.rows,
        "threshold": params.threshold,
        "dropped_to_kept": similarity_summary(rep_similarity[dropped]),
        "examples": [
            {"kept": str(keys[rep[i]]), "dropped": str(keys[i]), "jaccard": round(float(rep_similarity[i]), 4)}
            for i in nearest
        ],
    }


def rep_similarities(n: int, lo: I64, hi: I64, similarity: F64, rep: I64) -> F64:
    """Each node's similarity to its kept node (`rep`): the accepted pair's similarity, 1.0 for kept nodes."""
    out = np.ones(n, dtype=np.float64)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    own = rep[hi] == lo
    out[hi[own]] = similarity[own]
    return out


@dataclass(frozen=True, slots=True)
class _Result:
    keys: npt.NDArray[np.str_]  # in keep-priority order
    rep: I64  # per key, the index of the key kept for it (itself if kept)
    rep_similarity: npt.NDArray[np.float64]
    candidates: int
    accepted: int
    verification: str


class NearDuplicateIndex:
    """Collects signatures shard by shard, then names near-duplicates with LSH banding and a greedy keep pass.

    Memory is the signatures (4 bytes x `num_perm` per text), the keys, and the sketches if given (4 bytes
    per kept shingle). Candidate pairs are accepted at `threshold` by their verified similarity: with texts
    passed to every `add`, the exact Jaccard of their shingle sets; with sketches (`minhash_sketches`), the
    sketches' Jaccard (exact for texts of fewer than `params.sketch` distinct shingles) wherever the MinHash
    estimate is near the threshold; with neither, the estimate (the share of equal signature slots). An
    estimate errs either way near the threshold, and no slack below it is added. Records are then taken in
    keep order: a record paired (verified) with an earlier kept record is dropped for the first such record,
    otherwise it is kept; so each dropped record was checked against the record kept for it, never only
    through a chain of pairs.

    Keep order is input order (the order of `add` calls, then position within each), or by `scores` (higher
    first, NaN last, ties in input order); key strings never matter except to name records.

    Args:
        params: The parameters the signatures were computed with.

    Examples:
        >>> p = MinHashParams()
        >>> texts = ["a b c d e f g h i j", "a b c d e f g h i j", "z y x w v u t s r q"]
        >>> index = NearDuplicateIndex(p)
        >>> index.add(["doc-1", "doc-0", "doc-2"], minhash_signatures(texts, p))
        >>> index.clusters(), index.duplicates()
        ({'doc-1': 'doc-1', 'doc-0': 'doc-1'}, {'doc-0'})
    """

    def __init__(self, params: MinHashParams) -> None:
        self.params = params
        self._keys: list[npt.NDArray[np.str_]] = []
        self._sigs: list[SIG] = []
        self._scores: list[npt.NDArray[np.float64]] = []
        self._positions: list[I64] = []
        self._sets: list[U64] | None = None  # exact mode: each text's sorted unique shingle hashes
        self._sketches: list[Sketches] | None = None
        self._count = 0
        self._result: _Result | None = None

    def __len__(self) -> int:
        return self._count

    def add(
        self,
        keys: Sequence[str],
        signatures: np.ndarray,
        texts: Sequence[str] | None = None,
        *,
        scores: Sequence[float] | np.ndarray | None = None,
        sketches: Sketches | None = None,
    ) -> None:
        """Add one shard: unique `keys`, their `signatures` rows, and optionally texts (exact verification).

        Args:
            keys: Record ids, unique across all shards.
            signatures: `minhash_signatures` of the texts, one row per key.
            texts: The texts, for exact verification (give them for every shard or for none).
            scores: Keep priority per key: higher is kept first, NaN last; None keeps input order.
            sketches: `minhash_sketches` of the texts, to verify by sketch (for every shard or for none).

        Raises:
            InputError: If shapes disagree, a key repeats within the shard, or texts or sketches are given
                for some shards and not others.
        """
        if signatures.ndim != 2 or signatures.shape != (len(keys), self.params.num_perm):
            raise InputError(
                f"expected signatures of shape ({len(keys)}, {self.params.num_perm}), found {signatures.shape}",
                hint="compute them with minhash_signatures() and the same MinHashParams",
            )
        if len(set(keys)) != len(keys):
            raise InputError("expected unique keys within a shard, found repeats", hint="use record ids as keys")
        if scores is not None and len(scores) != len(keys):
            raise InputError(f"expected {len(keys)} scores, one per key, found {len(scores)}")
        exact = texts is not None
        if self._keys and exact != (self._sets is not None):
            raise InputError("expected texts for every shard or for none, found a mix", hint="pass texts to all adds")
        if self._keys and (sketches is not None) != (self._sketches is not None):
            raise InputError("expected sketches for every shard or for none, found a mix")
        if sketches is not None:
            if len(sketches) != len(keys):
                raise InputError(f"expected {len(keys)} sketches, one per key, found {len(sketches)}")
            self._sketches = (self._sketches or []) + [sketches]
        if texts is not None:
            if len(texts) != len(keys):
                raise InputError(f"expected {len(keys)} texts, one per key, found {len(texts)}")
            shingles, counts = _shingles(texts, self.params)
            bounds = np.cumsum(counts)
            self._sets = (self._sets or []) + [sorted_unique(s) for s in np.split(shingles, bounds[:-1])]
        self._keys.append(np.asarray(list(keys), dtype=np.str_))
        self._sigs.append(np.asarray(signatures, dtype=np.uint32))
        self._scores.append(np.zeros(len(keys)) if scores is None else np.asarray(scores, dtype=np.float64))
        self._positions.append(np.arange(self._count, self._count + len(keys), dtype=np.int64))
        self._count += len(keys)
        self._result = None

    def clusters(self) -> dict[str, str]:
        """Each key in a cluster of two or more mapped to the cluster's kept key (itself for the kept one)."""
        result = self._compute()
        sizes = np.bincount(result.rep, minlength=len(result.rep))
        members = np.flatnonzero(sizes[result.rep] > 1)
        return dict(zip(result.keys[members].tolist(), result.keys[result.rep[members]].tolist(), strict=True))

    def duplicates(self) -> set[str]:
        """The keys to drop: every cluster member except its kept key."""
        result = self._compute()
        return set(result.keys[result.rep != np.arange(len(result.rep))].tolist())

    def similarity_to_kept(self) -> dict[str, float]:
        """Each dropped key's similarity (exact or estimated, as verified) to the key kept for it."""
        result = self._compute()
        dropped = np.flatnonzero(result.rep != np.arange(len(result.rep)))
        return dict(zip(result.keys[dropped].tolist(), result.rep_similarity[dropped].tolist(), strict=True))

    def report(self, examples: int = 5) -> dict[str, Any]:
        """Counts for report.json, dropped-to-kept similarities, and the `examples` drops nearest the threshold."""
        r = self._compute()
        counts = (r.candidates, r.accepted)
        return cluster_report(len(r.keys), r.keys, r.rep, r.rep_similarity, counts, r.verification, self.params,
                              examples)  # fmt: skip

    def _compute(self) -> _Result:
        if self._result is not None:
            return self._result
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0, dtype=np.str_)
        unique, seen = sorted_unique(keys, counts=True)
        if (seen > 1).any():
            raise InputError(
                f"expected unique keys across shards, found {str(unique[seen > 1][0])!r} twice", hint="use record ids"
            )
        scores = np.concatenate(self._scores) if self._scores else np.zeros(0)
        positions = np.concatenate(self._positions) if self._positions else np.zeros(0, np.int64)
        order = np.lexsort((positions, keep_rank(scores)))
        # Input order (keep: first, one shard after another) needs no reordering: the sketches' take alone cost
        # ~0.01 CPU-s on benchmarks/curation_vs_datatrove.py's 14,717 records.
        moved = not np.array_equal(order, np.arange(len(order)))
        sig = np.concatenate(self._sigs) if self._sigs else np.zeros((0, self.params.num_perm), np.uint32)
        if moved:
            keys, scores, positions, sig = keys[order], scores[order], positions[order], sig[order]
        # keep the ordered copy only: positions ride along, so later adds still sort into place
        self._keys, self._sigs, self._scores, self._positions = [keys], [sig], [scores], [positions]
        if self._sets is not None and moved:
            self._sets = [self._sets[i] for i in order]
        if self._sketches is not None:
            sketches = Sketches.concat(self._sketches)
            self._sketches = [sketches.take(order) if moved else sketches]
        lo, hi = self._candidates(sig)
        similarity, verification, accept = self._verify(sig, lo, hi)
        lo, hi, similarity = lo[accept], hi[accept], similarity[accept]
        rep = representatives(len(keys), lo, hi)
        rep_similarity = rep_similarities(len(keys), lo, hi, similarity, rep)
        self._result = _Result(keys, rep, rep_similarity, len(accept), len(lo), verification)
        return self._result

    def _candidates(self, sig: SIG) -> tuple[I64, I64]:
        rows, bands = int(self.params.rows or 0), int(self.params.bands or 0)
        valid = np.flatnonzero(~(sig == EMPTY).all(axis=1))
        sub = sig[valid]
        pairs = [_band_pairs(sub, b, rows) for b in range(bands)]
        codes = sorted_unique(np.concatenate([*pairs, np.zeros(0, np.int64)]))
        lo, hi = np.divmod(codes, max(len(sub), 1))
        return valid[lo], valid[hi]

    def _verify(self, sig: SIG, lo: I64, hi: I64) -> tuple[npt.NDArray[np.float64], str, npt.NDArray[np.bool_]]:
        threshold = float(self.params.threshold or 0.0)
        if self._sets is not None and self.params.verify:
            sets = self._sets
            exact = np.array(
                [_set_jaccard(sets[a], sets[b]) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)], dtype=float
            )
            return exact, "exact", exact >= threshold
        estimate = estimated_jaccard(sig, lo, hi)
        if not self.params.verify:
            return estimate, "none", np.ones(len(lo), dtype=bool)
        sketches = None if self._sketches is None else (self._sketches[0], lo, self._sketches[0], hi)
        similarity, accept = verified_similarity(estimate, sketches, threshold, self.params)
        return similarity, "signature", accept


def keep_rank(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A sort key from keep scores: ascending means kept first (higher score first, NaN last)."""
    return np.where(np.isnan(scores), np.inf, -scores)


def estimated_jaccard(sig: SIG, lo: I64, hi: I64) -> npt.NDArray[np.float64]:
    """The share of equal signature slots of each row pair `(lo, hi)`: the MinHash estimate of their Jaccard."""
    estimate = np.zeros(len(lo), dtype=np.float64)
    for s in range(0, len(lo), 65536):
        estimate[s : s + 65536] = (sig[lo[s : s + 65536]] == sig[hi[s : s + 65536]]).mean(axis=1)
    return estimate


def _set_jaccard(a: U64, b: U64) -> float:
    shared = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - shared
    return shared / union if union else 0.0
