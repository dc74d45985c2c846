"""MinHash-LSH near-duplicate detection over lists of strings: signatures, banding, clustering.

Signatures are pure functions of text and parameters (no Python `hash()`), so worker processes can
compute them for their shards and a single `NearDuplicateIndex` can collect them. The module knows
nothing about records, files or the curation engine: keys are opaque unique strings, and what to do
with the duplicates it names is the caller's business.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xxhash

from keel.core.errors import InputError
from keel.curate._words import ascii_whitespace, split_words

__all__ = [
    "SMALL_GROUP",
    "MinHashParams",
    "NearDuplicateIndex",
    "band_keys",
    "connected_components",
    "exact_jaccard",
    "minhash_signatures",
    "pairs_within_groups",
]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
SIG = npt.NDArray[np.uint32]

EMPTY = np.uint32(0xFFFFFFFF)  # every slot of a text with no shingles; such texts are never duplicates
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_VERIFY_Z = 2.0  # estimated-Jaccard slack, in standard errors at the threshold (see MinHashParams.verify_threshold)
# One permutation block is num_perm x (this / num_perm) uint64, 8 MB: best-of-4 on this machine, blocks of 0.9 / 3.7 /
# 7.3 / 15 MB gave 16.7 / 20.7 / 24.3 / 13.3 MB/s of text; smaller blocks pay numpy's per-call overhead more often.
_BLOCK_ELEMENTS = 1 << 20
_BATCH_CHARS = 2_000_000  # texts per signature batch, by length, so one batch's shingle arrays stay ~10-20 MB
SMALL_GROUP = 32  # bucket groups up to this size yield all pairs; larger ones (mass copies) a star from the first
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
        verify: Check every candidate pair's Jaccard before joining a cluster (see `verify_threshold`).
        recall_at_threshold: Candidate probability required at `threshold` when choosing bands x rows.

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
        if not 0 <= self.seed < 2**63:
            raise InputError(f"expected 0 <= seed < 2**63, found {self.seed}")

    @property
    def verify_threshold(self) -> float:
        """The estimated Jaccard a candidate pair needs to be accepted when verified by signature.

        The estimate from `num_perm` slots has standard error sqrt(t(1-t)/num_perm) at t = `threshold` (0.038
        for 0.8 and 112); accepting at t - 2 standard errors keeps ~97% of pairs sitting exactly at t, while
        pairs well below t (LSH false positives) are still rejected. Exact verification uses `threshold`.
        """
        t = float(self.threshold) if self.threshold is not None else 0.0
        return max(0.0, t - _VERIFY_Z * float(np.sqrt(t * (1.0 - t) / self.num_perm)))

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


def _word_hashes(texts: Sequence[str]) -> tuple[U64, I64]:
    """xxh3 of every word of `_words(text)` for each text, concatenated, and the count per text.

    The texts are lowered and encoded one by one (Python's `str.lower`, exactly), then joined, split and
    numbered by word with numpy (keel.curate._words), so each distinct word is hashed once: the same hashes
    for ~20% less CPU than `bytes.split` plus one xxh3 call per word (measured on benchmark shards).
    """
    encoded = [t.lower().replace("\xa0", " ").encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + 1, out=offsets[1:])
    # A space after each text (a word break) keeps words from running across texts.
    data = np.frombuffer(b" ".join(encoded).translate(_PUNCT) + b" ", dtype=np.uint8)
    words = split_words(data, offsets, ascii_whitespace(data, separators=False))
    vocab, bounds = words.vocabulary(data)
    edges = bounds.tolist()
    distinct = np.fromiter(
        (xxhash.xxh3_64_intdigest(vocab[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)),
        dtype=np.uint64,
        count=len(edges) - 1,
    )
    return distinct[words.ids], np.diff(words.offsets)


def _token_hashes(texts: Sequence[str], unit: str) -> tuple[U64, I64]:
    """One 64-bit hash per word (xxh3 of its UTF-8) or per character, concatenated, and the count per text."""
    if unit == "word":
        return _word_hashes(texts)
    chars = [_chars(t) for t in texts]
    joined = np.concatenate(chars) if chars else np.zeros(0, dtype=np.uint32)
    hashes = _mix64(joined.astype(np.uint64) + np.uint64(_GOLDEN))
    return hashes, np.fromiter(map(len, chars), dtype=np.int64, count=len(chars))


def _shingles(texts: Sequence[str], params: MinHashParams) -> tuple[U64, I64]:
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


def _batches(texts: Sequence[str]) -> Iterator[tuple[int, int]]:
    start, size = 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= _BATCH_CHARS:
            yield start, i + 1
            start, size = i + 1, 0
    if start < len(texts):
        yield start, len(texts)


def minhash_signatures(texts: Sequence[str], params: MinHashParams) -> SIG:
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

    Groups of up to `SMALL_GROUP` members yield all their pairs; a larger group (hundreds of identical copies)
    yields a star from its first member, which connects the same cluster with linearly many pairs.
    """
    n = len(group)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    position = np.arange(n, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    sizes = np.diff(np.concatenate((starts, [n])))
    owner = np.repeat(np.arange(len(starts)), sizes)
    small = sizes[owner] <= SMALL_GROUP
    lo, hi = [], []
    for d in range(1, int(min(sizes.max(), SMALL_GROUP))):
        hit = (owner[:-d] == owner[d:]) & small[:-d]
        lo.append(position[:-d][hit])
        hi.append(position[d:][hit])
    large = ~small & (position != starts[owner])
    lo.append(starts[owner[large]].astype(np.int64))
    hi.append(position[large])
    return np.concatenate(lo), np.concatenate(hi)


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


def connected_components(n: int, lo: I64, hi: I64) -> I64:
    """For each of `n` nodes, the smallest node index in its connected component over edges `(lo, hi)`.

    Vectorised hook-and-compress instead of a per-edge Python union-find: each round hooks both ends' roots
    onto the smaller root, then pointer-jumps to the root; a few rounds suffice for dedup-shaped graphs.
    """
    labels = np.arange(n, dtype=np.int64)
    while True:
        low = np.minimum(labels[lo], labels[hi])
        hooked = labels.copy()
        np.minimum.at(hooked, labels[lo], low)
        np.minimum.at(hooked, labels[hi], low)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, labels):
            return labels
        labels = hooked


@dataclass(frozen=True, slots=True)
class _Result:
    keys: npt.NDArray[np.str_]
    labels: I64
    candidates: int
    lo: I64  # verified pairs, as indices into keys
    hi: I64
    similarity: npt.NDArray[np.float64]
    verification: str


class NearDuplicateIndex:
    """Collects signatures shard by shard, then clusters near-duplicates with LSH banding and union-find.

    Memory is the signatures (4 bytes x `num_perm` per text) and the keys. Candidate pairs are verified by
    estimated Jaccard (matching signature slots, accepted at `params.verify_threshold`) unless texts were
    passed to every `add`, in which case their exact shingle sets are kept and compared to `threshold`.
    Signature verification is the default because texts never leave the workers; on the benchmark corpus
    (benchmarks/curation_vs_datatrove.py, threshold 0.8) both modes removed only true copies and found
    99.6% of those at Jaccard >= 0.8, but signature mode also merged pairs down to ~0.67 (73% of removed
    texts were >= 0.8 from their kept one) while exact mode merged none below 0.8, at 2.6x the CPU time.
    Every cluster keeps its smallest key (string order), whatever order the shards arrived in: use
    sortable keys (zero-padded positions, ULIDs) to keep the earliest text.

    Args:
        params: The parameters the signatures were computed with.

    Examples:
        >>> p = MinHashParams()
        >>> texts = ["a b c d e f g h i j", "a b c d e f g h i j", "z y x w v u t s r q"]
        >>> index = NearDuplicateIndex(p)
        >>> index.add(["doc-1", "doc-0", "doc-2"], minhash_signatures(texts, p))
        >>> index.clusters(), index.duplicates()
        ({'doc-0': 'doc-0', 'doc-1': 'doc-0'}, {'doc-1'})
    """

    def __init__(self, params: MinHashParams) -> None:
        self.params = params
        self._keys: list[npt.NDArray[np.str_]] = []
        self._sigs: list[SIG] = []
        self._sets: list[U64] | None = None  # exact mode: each text's sorted unique shingle hashes
        self._result: _Result | None = None

    def __len__(self) -> int:
        return sum(len(k) for k in self._keys)

    def add(self, keys: Sequence[str], signatures: np.ndarray, texts: Sequence[str] | None = None) -> None:
        """Add one shard: unique `keys`, their `signatures` rows, and optionally their texts (exact verification).

        Raises:
            InputError: If shapes disagree, a key repeats within the shard, or texts are given for some
                shards and not others.
        """
        if signatures.ndim != 2 or signatures.shape != (len(keys), self.params.num_perm):
            raise InputError(
                f"expected signatures of shape ({len(keys)}, {self.params.num_perm}), found {signatures.shape}",
                hint="compute them with minhash_signatures() and the same MinHashParams",
            )
        if len(set(keys)) != len(keys):
            raise InputError("expected unique keys within a shard, found repeats", hint="use record ids as keys")
        exact = texts is not None
        if self._keys and exact != (self._sets is not None):
            raise InputError("expected texts for every shard or for none, found a mix", hint="pass texts to all adds")
        if texts is not None:
            if len(texts) != len(keys):
                raise InputError(f"expected {len(keys)} texts, one per key, found {len(texts)}")
            shingles, counts = _shingles(texts, self.params)
            bounds = np.cumsum(counts)
            self._sets = (self._sets or []) + [np.unique(s) for s in np.split(shingles, bounds[:-1])]
        self._keys.append(np.asarray(list(keys), dtype=np.str_))
        self._sigs.append(np.asarray(signatures, dtype=np.uint32))
        self._result = None

    def clusters(self) -> dict[str, str]:
        """Each key in a cluster of two or more mapped to the cluster's kept key (itself for the kept one)."""
        result = self._compute()
        sizes = np.bincount(result.labels, minlength=len(result.labels))
        members = np.flatnonzero(sizes[result.labels] > 1)
        return dict(zip(result.keys[members].tolist(), result.keys[result.labels[members]].tolist(), strict=True))

    def duplicates(self) -> set[str]:
        """The keys to drop: every cluster member except its kept (smallest) key."""
        result = self._compute()
        return set(result.keys[result.labels != np.arange(len(result.labels))].tolist())

    def report(self, examples: int = 5) -> dict[str, Any]:
        """Counts for a curation report, and the `examples` accepted pairs closest to the threshold."""
        result = self._compute()
        sizes = np.bincount(result.labels, minlength=len(result.labels))
        sizes = sizes[sizes > 1]
        histogram = np.unique(sizes, return_counts=True)
        nearest = np.lexsort((result.hi, result.lo, result.similarity))[:examples]
        return {
            "documents": len(result.keys),
            "clusters": len(sizes),
            "duplicates": int(sizes.sum() - len(sizes)),
            "cluster_sizes": {int(s): int(c) for s, c in zip(*histogram, strict=True)},
            "candidate_pairs": result.candidates,
            "verified_pairs": len(result.lo),
            "verification": result.verification,
            "bands": self.params.bands,
            "rows": self.params.rows,
            "threshold": self.params.threshold,
            "examples": [
                {
                    "kept": str(result.keys[result.labels[result.lo[i]]]),
                    "a": str(result.keys[result.lo[i]]),
                    "b": str(result.keys[result.hi[i]]),
                    "jaccard": round(float(result.similarity[i]), 4),
                }
                for i in nearest
            ],
        }

    def _compute(self) -> _Result:
        if self._result is not None:
            return self._result
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0, dtype=np.str_)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if len(keys) > 1 and (keys[1:] == keys[:-1]).any():
            repeated = str(keys[1:][keys[1:] == keys[:-1]][0])
            raise InputError(f"expected unique keys across shards, found {repeated!r} twice", hint="use record ids")
        sig = np.concatenate(self._sigs)[order] if self._sigs else np.zeros((0, self.params.num_perm), np.uint32)
        self._keys, self._sigs = [keys], [sig]  # keep the sorted copy only
        if self._sets is not None:
            self._sets = [self._sets[i] for i in order]
        lo, hi = self._candidates(sig)
        similarity, verification, accept = self._verify(sig, lo, hi)
        lo, hi, similarity = lo[accept], hi[accept], similarity[accept]
        labels = connected_components(len(keys), lo, hi)
        self._result = _Result(keys, labels, len(accept), lo, hi, similarity, verification)
        return self._result

    def _candidates(self, sig: SIG) -> tuple[I64, I64]:
        rows, bands = int(self.params.rows or 0), int(self.params.bands or 0)
        valid = np.flatnonzero(~(sig == EMPTY).all(axis=1))
        sub = sig[valid]
        codes = np.unique(np.concatenate([_band_pairs(sub, b, rows) for b in range(bands)] + [np.zeros(0, np.int64)]))
        lo, hi = np.divmod(codes, max(len(sub), 1))
        return valid[lo], valid[hi]

    def _verify(self, sig: SIG, lo: I64, hi: I64) -> tuple[npt.NDArray[np.float64], str, npt.NDArray[np.bool_]]:
        if self._sets is not None and self.params.verify:
            sets = self._sets
            exact = np.array(
                [_set_jaccard(sets[a], sets[b]) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)], dtype=float
            )
            return exact, "exact", exact >= float(self.params.threshold or 0.0)
        estimate = np.zeros(len(lo), dtype=np.float64)
        for s in range(0, len(lo), 65536):
            estimate[s : s + 65536] = (sig[lo[s : s + 65536]] == sig[hi[s : s + 65536]]).mean(axis=1)
        if not self.params.verify:
            return estimate, "none", np.ones(len(lo), dtype=bool)
        return estimate, "signature", estimate >= self.params.verify_threshold


def _set_jaccard(a: U64, b: U64) -> float:
    shared = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - shared
    return shared / union if union else 0.0
