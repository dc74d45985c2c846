"""numpy word splitting: the same words as str.split() / bytes.split(), and ids equal exactly when words are."""

from __future__ import annotations

import random
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import xxhash

from keel.curate import _words
from keel.curate._basic_steps import _WHITESPACE_RUN, NormalizeParams, _clean_spaces
from keel.curate._minhash import _token_hashes
from keel.curate._minhash import _words as minhash_words
from keel.curate._words import ascii_whitespace, split_words, text_buffer, unicode_whitespace

WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
WORDS = ["a", "the", "exactly8", "fifteen15bytes!", "sixteen16bytes!!", "x" * 40, "é", "漢字", "\U0001f600", "\x00"]


def _texts(seed: int, count: int = 400) -> list[str]:
    rng = random.Random(seed)
    pieces = [*WHITESPACE, *WORDS, "Σ", "İ", "a-b", "it's", "\x1c", "\u200b"]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(count)] + ["", " ", "a"]


def _split(texts: list[str]) -> tuple[list[list[str]], _words.Words, bytes]:
    data, offsets = text_buffer(pa.array(texts, pa.large_string()))
    words = split_words(data, offsets, unicode_whitespace(data))
    raw = data.tobytes()
    per_text = [
        [raw[s:e].decode() for s, e in zip(words.starts[a:b], words.ends[a:b], strict=True)]
        for a, b in zip(words.offsets[:-1], words.offsets[1:], strict=True)
    ]
    return per_text, words, raw


def test_words_are_python_str_split_words_for_every_unicode_whitespace() -> None:
    texts = _texts(seed=1)
    per_text, _, _ = _split(texts)
    assert per_text == [t.split() for t in texts]


def test_ids_are_equal_exactly_when_the_words_are_and_first_points_at_each_ids_first_word() -> None:
    texts = _texts(seed=2)
    _, words, raw = _split(texts)
    flat = [raw[s:e] for s, e in zip(words.starts, words.ends, strict=True)]
    assert len(set(words.ids.tolist())) == len(set(flat)) == len(words.first)
    assert {(w, i) for w, i in zip(flat, words.ids.tolist(), strict=True)} == {
        (w, i) for i, w in enumerate(flat[f] for f in words.first)
    }
    earliest: dict[bytes, int] = {}
    for position, word in enumerate(flat):
        earliest.setdefault(word, position)
    assert sorted(words.first.tolist()) == sorted(earliest.values())
    joined, bounds = words.vocabulary(np.frombuffer(raw, np.uint8), b"\n")
    assert joined.split(b"\n")[:-1] == [flat[f] for f in words.first] and bounds[-1] == len(joined)


def test_a_hash_collision_falls_back_to_exact_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _texts(seed=3)
    _, expected, _ = _split(texts)
    monkeypatch.setattr(_words, "_mix", lambda x: x * np.uint64(0))  # every word hashes alike
    _, words, raw = _split(texts)
    flat = [raw[s:e] for s, e in zip(words.starts, words.ends, strict=True)]
    assert len(words.first) == len(expected.first) == len(set(flat))
    assert all(flat[words.first[i]] == word for word, i in zip(flat, words.ids.tolist(), strict=True))


@pytest.mark.parametrize("collide", [False, True])
def test_first_seen_ids_group_the_words_as_split_words_does(monkeypatch: pytest.MonkeyPatch, collide: bool) -> None:
    texts = _texts(seed=6)
    _, words, raw = _split(texts)
    if collide:
        monkeypatch.setattr(_words, "_mix", lambda x: x * np.uint64(0))  # every word hashes alike
    data, offsets = text_buffer(pa.array(texts, pa.large_string()))
    seen = split_words(data, offsets, unicode_whitespace(data), first_seen=True)
    ids, first = seen.ids, seen.first
    assert np.array_equal(seen.starts, words.starts) and np.array_equal(seen.offsets, words.offsets)
    flat = [raw[s:e] for s, e in zip(words.starts, words.ends, strict=True)]
    assert len(first) == len(set(flat)) and sorted(first.tolist()) == sorted(words.first.tolist())
    assert all(flat[first[i]] == word for word, i in zip(flat, ids.tolist(), strict=True))


def test_ascii_whitespace_is_bytes_split_and_str_split_whitespace() -> None:
    data = np.arange(128, dtype=np.uint8)
    bytes_space = [b for b in range(128) if bytes([b]).isspace()]
    assert np.flatnonzero(ascii_whitespace(data, separators=False)).tolist() == bytes_space
    assert np.flatnonzero(ascii_whitespace(data)).tolist() == [b for b in range(128) if chr(b).isspace()]


def test_minhash_word_hashes_are_xxh3_of_each_lowered_punctuation_split_word() -> None:
    texts = [*_texts(seed=4), "Hello, WORLD! it's\xa0a-b test.", "ΣΑΣ İ"]
    hashes, counts = _token_hashes(texts, "word")
    expected = [xxhash.xxh3_64_intdigest(w) for t in texts for w in minhash_words(t)]
    assert hashes.tolist() == expected
    assert counts.tolist() == [len(minhash_words(t)) for t in texts]


def test_normalize_runs_its_regexes_only_where_they_change_something() -> None:
    rng = random.Random(5)
    pieces = ["a", "b c", " ", "  ", "\n", "\n\n", "\t", "\r", "\x01", "\x7f", "\x85", "\xa0", "\u2003", "\u3000", "é"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 20))) for _ in range(500)]
    arr = pa.array(texts, pa.string())
    for params in (NormalizeParams(), NormalizeParams(strip_control=False), NormalizeParams(collapse_whitespace=False)):
        everywhere = arr
        if params.strip_control:
            everywhere = pc.replace_substring_regex(everywhere, r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "")
        if params.collapse_whitespace:
            everywhere = pc.replace_substring_regex(everywhere, _WHITESPACE_RUN, " ")
            everywhere = pc.utf8_trim_whitespace(pc.replace_substring_regex(everywhere, r"\n{3,}", "\n\n"))
        assert _clean_spaces(arr, params).to_pylist() == everywhere.to_pylist()
