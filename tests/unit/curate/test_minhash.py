from __future__ import annotations

import doctest
import hashlib
import os
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

import keel.curate._minhash as minhash_module
from keel.core.errors import InputError
from keel.curate._minhash import (
    SMALL_GROUP,
    MinHashParams,
    NearDuplicateIndex,
    Sketches,
    exact_jaccard,
    minhash_signatures,
    minhash_sketches,
    pairs_within_groups,
    representatives,
    sketch_jaccard,
)

PARAMS = MinHashParams()
VOCAB = ["".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=3 + i % 6)) for i in range(3000)]


def text(seed: int, words: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def edited(source: str, fraction: float, seed: int = 0) -> str:
    """Replace one contiguous run of `fraction` of the words, as when a paragraph is rewritten."""
    words, rng = source.split(), random.Random(seed)
    span = round(fraction * len(words))
    at = rng.randrange(len(words) - span)
    words[at : at + span] = [rng.choice(VOCAB) for _ in range(span)]
    return " ".join(words)


def index_of(keys: list[str], texts: list[str], params: MinHashParams = PARAMS) -> NearDuplicateIndex:
    index = NearDuplicateIndex(params)
    index.add(keys, minhash_signatures(texts, params))
    return index


def test_identical_texts_collide_and_the_first_in_input_order_is_kept() -> None:
    a = text(1)
    index = index_of(["b", "a", "c"], [a, a, text(2)])
    assert index.duplicates() == {"a"}
    assert index.clusters() == {"a": "b", "b": "b"}


def test_unrelated_texts_do_not_collide() -> None:
    texts = [text(seed) for seed in range(40)]
    index = index_of([f"d{i:02d}" for i in range(40)], texts)
    assert index.duplicates() == set()
    assert index.report()["candidate_pairs"] == 0


def test_five_percent_edited_copy_is_found() -> None:
    original = text(7, words=600)
    copy = edited(original, 0.05)
    assert copy != original and exact_jaccard(original, copy, PARAMS) >= 0.8
    assert index_of(["a-orig", "b-copy", "c-other"], [original, copy, text(8)]).duplicates() == {"b-copy"}


def test_heavily_edited_copy_is_not_a_duplicate() -> None:
    original = text(9, words=600)
    copy = edited(original, 0.5)
    assert exact_jaccard(original, copy, PARAMS) < 0.4
    assert index_of(["orig", "copy"], [original, copy]).duplicates() == set()


def test_normalisation_ignores_case_punctuation_and_spacing() -> None:
    sig = minhash_signatures(["The cat, sat on the MAT today!", "the  cat sat\non the mat   today"], PARAMS)
    assert (sig[0] == sig[1]).all()


def test_signature_shape_dtype_and_estimate() -> None:
    original = text(3, words=1000)
    copy = edited(original, 0.05, seed=1)
    sig = minhash_signatures([original, copy], PARAMS)
    assert sig.shape == (2, 112) and sig.dtype == np.uint32 and sig.flags.c_contiguous
    estimate = float((sig[0] == sig[1]).mean())
    assert abs(estimate - exact_jaccard(original, copy, PARAMS)) < 0.15  # about 4 standard errors at 112 slots


def test_signatures_are_deterministic_across_calls_and_processes() -> None:
    texts = [text(seed) for seed in range(5)] + ["short one", ""]
    first, second = minhash_signatures(texts, PARAMS), minhash_signatures(list(texts), PARAMS)
    assert np.array_equal(first, second)
    code = (
        "import hashlib, random, sys; sys.path.insert(0, sys.argv[1]);"
        "from test_minhash import text, PARAMS; from keel.curate._minhash import minhash_signatures;"
        "texts = [text(seed) for seed in range(5)] + ['short one', ''];"
        "print(hashlib.sha256(minhash_signatures(texts, PARAMS).tobytes()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(__file__)], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == hashlib.sha256(first.tobytes()).hexdigest()


def test_seed_changes_signatures() -> None:
    sample = [text(1)]
    assert not np.array_equal(minhash_signatures(sample, PARAMS), minhash_signatures(sample, MinHashParams(seed=2)))


def test_bands_and_rows_from_threshold() -> None:
    assert (PARAMS.bands, PARAMS.rows) == (16, 6)
    assert PARAMS == MinHashParams(threshold=0.8) and hash(PARAMS) == hash(MinHashParams(threshold=0.8))
    probability = dict(PARAMS.s_curve(11))
    assert probability[0.8] >= 0.99 and probability[0.3] < 0.02
    for threshold in (0.5, 0.7, 0.9):
        params = MinHashParams(threshold=threshold)
        assert params.bands is not None and params.rows is not None
        assert params.bands * params.rows <= params.num_perm
        at = 1 - (1 - threshold**params.rows) ** params.bands
        assert at >= params.recall_at_threshold
        steeper = 1 - (1 - threshold ** (params.rows + 1)) ** (params.num_perm // (params.rows + 1))
        assert steeper < params.recall_at_threshold  # one more row per band would miss the recall bound
    assert MinHashParams(bands=14, rows=8).s_curve(3) == [(0.0, 0.0), (0.5, 0.05332), (1.0, 1.0)]


def test_s_curve_is_monotone_from_zero_to_one() -> None:
    curve = PARAMS.s_curve()
    assert len(curve) == 21 and curve[0] == (0.0, 0.0) and curve[-1] == (1.0, 1.0)
    assert all(a[1] <= b[1] for a, b in zip(curve, curve[1:], strict=False))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bands": 4}, "both bands and rows"),
        ({"bands": 20, "rows": 6}, "bands \\* rows <= num_perm"),
        ({"bands": 0, "rows": 6}, "bands >= 1"),
        ({"threshold": 1.0}, "0 < threshold < 1"),
        ({"threshold": None}, "a threshold or bands and rows"),
        ({"threshold": None, "bands": 4, "rows": 4}, "threshold to verify"),
        ({"unit": "token"}, "unit 'word' or 'char'"),
        ({"num_perm": 0}, "num_perm"),
        ({"ngram": 0}, "ngram"),
        ({"num_perm": 2, "threshold": 0.5}, "found none"),
        ({"seed": -1}, "seed"),
        ({"sketch": -1}, "sketch"),
    ],
)
def test_invalid_params_raise_input_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        MinHashParams(**kwargs)  # type: ignore[arg-type]


def test_explicit_bands_rows_without_verification() -> None:
    params = MinHashParams(bands=20, rows=5, num_perm=100, threshold=None, verify=False)
    original = text(4)
    index = index_of(["x", "y"], [original, edited(original, 0.05)], params)
    assert index.duplicates() == {"y"} and index.report()["verification"] == "none"


def corpus(clusters: int = 6, copies: int = 3) -> tuple[list[str], list[str]]:
    keys, texts = [], []
    for c in range(clusters):
        original = text(100 + c, words=400)
        for k in range(copies):
            keys.append(f"c{c}-{k}")
            texts.append(original if k == 0 else edited(original, 0.03 * k, seed=k))
    for u in range(10):
        keys.append(f"u{u}")
        texts.append(text(500 + u))
    return keys, texts


def test_incremental_add_matches_one_add_in_any_shard_order() -> None:
    keys, texts = corpus()
    sig = minhash_signatures(texts, PARAMS)
    whole = NearDuplicateIndex(PARAMS)
    whole.add(keys, sig)
    shards = [(keys[s : s + 5], sig[s : s + 5]) for s in range(0, len(keys), 5)]
    for ordered in (shards, shards[::-1]):
        index = NearDuplicateIndex(PARAMS)
        for shard_keys, shard_sig in ordered:
            index.add(shard_keys, shard_sig)
        if ordered is shards:
            assert index.clusters() == whole.clusters()
            assert index.duplicates() == whole.duplicates()
        else:  # shards in reverse: copies of the same sources go, each for a member that now comes before it
            position = {key: i for i, key in enumerate(k for shard_keys, _ in ordered for k in shard_keys)}
            members = index.clusters()
            assert 10 <= len(index.duplicates()) and index.duplicates() <= set(whole.clusters())
            assert all(position[kept] < position[key] for key, kept in members.items() if key != kept)
    assert len(whole.duplicates()) == 12 and set(whole.clusters().values()) == {f"c{c}-0" for c in range(6)}


def test_adding_after_clustering_recomputes_in_input_order() -> None:
    a = text(11)
    index = index_of(["k2"], [a])
    assert index.duplicates() == set()
    index.add(["k1"], minhash_signatures([a], PARAMS))
    assert index.duplicates() == {"k1"} and len(index) == 2
    index.add(["k0"], minhash_signatures([a], PARAMS))
    assert index.duplicates() == {"k1", "k0"} and index.clusters()["k0"] == "k2"


def test_kept_document_is_the_first_in_input_order_whatever_the_keys() -> None:
    a = text(12)
    for order in (["m", "z", "b"], ["z", "b", "m"], ["b", "m", "z"]):
        assert index_of(order, [a, a, a]).clusters() == dict.fromkeys(order, order[0])


def test_scores_pick_the_kept_record_and_ties_and_missing_scores_fall_back_to_input_order() -> None:
    a = text(16)
    sig = minhash_signatures([a] * 4, PARAMS)
    index = NearDuplicateIndex(PARAMS)
    index.add(["w", "x", "y", "z"], sig, scores=[1.0, float("nan"), 3.0, 3.0])
    assert index.clusters() == {"y": "y", "z": "y", "w": "y", "x": "y"}
    with pytest.raises(InputError, match="one per key"):
        index.add(["v"], sig[:1], scores=[])


def test_same_texts_under_other_ids_keep_the_same_texts() -> None:
    """Keys only name records: shuffled id strings give the same kept texts, also past SMALL_GROUP copies."""
    base = [text(300 + i, words=60) for i in range(6)]
    texts = [base[i % 6] if i % 3 else edited(base[i % 6], 0.04, seed=i) for i in range(SMALL_GROUP * 4)]
    kept_texts = []
    for ids_seed in range(3):
        keys = [f"{random.Random(ids_seed).random():.6f}-{i}" for i in range(len(texts))]
        random.Random(ids_seed).shuffle(keys)
        by_key = dict(zip(keys, texts, strict=True))
        index = index_of(keys, texts)
        kept_texts.append(sorted(by_key[k] for k in keys if k not in index.duplicates()))
    assert kept_texts[0] == kept_texts[1] == kept_texts[2]
    assert 6 <= len(kept_texts[0]) < len(texts)


def test_a_record_is_dropped_only_for_a_kept_record_it_was_verified_against() -> None:
    """A ~ B and B ~ C but not A ~ C: B goes for A, C stays (no dropping along a chain)."""
    words = text(20, words=400).split()
    a = " ".join(words)
    first, second = [f"new{i}" for i in range(30)], [f"other{i}" for i in range(30)]
    b = " ".join(first + words[30:])  # two edits in different places: b is 0.85 from a and from c
    c = " ".join(first + words[30:200] + second + words[230:])
    params = MinHashParams(threshold=0.8)
    assert exact_jaccard(a, b, params) >= 0.8 and exact_jaccard(b, c, params) >= 0.8 > exact_jaccard(a, c, params)
    index = NearDuplicateIndex(params)
    index.add(["a", "b", "c"], minhash_signatures([a, b, c], params), [a, b, c])
    assert index.duplicates() == {"b"} and index.clusters() == {"a": "a", "b": "a"}
    assert index.similarity_to_kept()["b"] == pytest.approx(exact_jaccard(a, b, params))


def test_representatives_are_greedy_by_rank() -> None:
    # 0~1, 1~2, 2~3, 0~4: 0 kept, 1 and 4 dropped for 0, 2 kept (its only better neighbour was dropped), 3 for 2
    lo, hi = np.array([0, 1, 2, 0]), np.array([1, 2, 3, 4])
    assert representatives(5, lo, hi).tolist() == [0, 0, 2, 2, 0]
    assert representatives(3, np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == [0, 1, 2]
    # a dropped node belongs to its first-ranked kept neighbour
    assert representatives(4, np.array([0, 1, 2]), np.array([3, 3, 3])).tolist() == [0, 1, 2, 0]


def test_estimated_verification_errs_on_keeping() -> None:
    """Without texts or sketches, a pair goes only at an estimate one standard error above the threshold."""
    original = text(21, words=600)
    params = MinHashParams(threshold=0.8)
    bar = 0.8 + (0.8 * 0.2 / params.num_perm) ** 0.5
    seen = set()
    for seed in range(16):
        copy = edited(original, 0.03 + 0.002 * seed, seed=seed)
        sig = minhash_signatures([original, copy], params)
        estimate = float((sig[0] == sig[1]).mean())
        dropped = index_of(["o", "c"], [original, copy], params).duplicates()
        assert dropped == ({"c"} if estimate >= bar else set())
        seen.add(estimate >= bar)
    assert seen == {True, False}


def test_large_groups_of_copies_form_one_cluster() -> None:
    a = text(13)
    keys = [f"k{i:03d}" for i in range(100)]
    index = index_of(keys, [a] * 100)
    assert index.duplicates() == set(keys[1:])
    assert index.report()["cluster_sizes"] == {100: 1}


def test_empty_texts_never_match_but_short_identical_texts_do() -> None:
    index = index_of(["e1", "e2", "s1", "s2"], ["", "  !! ", "hello world", "Hello, world."])
    assert index.duplicates() == {"s2"}


def test_char_shingles() -> None:
    params = MinHashParams(unit="char", ngram=9)
    original = text(14)
    copy = original.replace(original[100:110], "zzzzzzzzzz", 1)
    assert exact_jaccard(original, copy, params) >= 0.8
    assert index_of(["a", "b", "c"], [original, copy, text(15)], params).duplicates() == {"b"}


def test_exact_verification_with_texts() -> None:
    keys, texts = corpus()
    index = NearDuplicateIndex(PARAMS)
    index.add(keys[:10], minhash_signatures(texts[:10], PARAMS), texts[:10])
    index.add(keys[10:], minhash_signatures(texts[10:], PARAMS), texts[10:])
    report = index.report()
    assert report["verification"] == "exact"
    assert all(example["jaccard"] >= 0.8 for example in report["examples"])
    by_text = dict(zip(keys, texts, strict=True))
    for dup, kept in index.clusters().items():
        if dup != kept:
            assert exact_jaccard(by_text[dup], by_text[kept], PARAMS) >= 0.8


def test_report_shape() -> None:
    keys, texts = corpus()
    report = index_of(keys, texts).report(examples=2)
    assert set(report) == {
        "documents", "clusters", "duplicates", "cluster_sizes", "candidate_pairs", "verified_pairs",
        "verification", "bands", "rows", "threshold", "examples", "dropped_to_kept",
    }  # fmt: skip
    assert report["documents"] == 28 and report["clusters"] == 6 and report["duplicates"] == 12
    assert report["cluster_sizes"] == {3: 6} and report["verification"] == "signature"
    assert report["candidate_pairs"] >= report["verified_pairs"] >= 12
    assert len(report["examples"]) == 2
    first = report["examples"][0]
    assert set(first) == {"kept", "dropped", "jaccard"} and first["kept"].startswith("c")
    assert first["jaccard"] <= report["examples"][1]["jaccard"]
    spread = report["dropped_to_kept"]
    assert spread["count"] == 12 and spread["quantiles"]["min"] == first["jaccard"] >= 0.8
    assert sum(count for _, _, count in spread["histogram"]) == 12


def test_empty_index() -> None:
    index = NearDuplicateIndex(PARAMS)
    assert index.clusters() == {} and index.duplicates() == set()
    assert index.report()["documents"] == 0 and len(index) == 0


@pytest.mark.parametrize(
    ("keys", "shape", "message"),
    [(["a", "b"], (2, 100), "shape"), (["a", "a"], (2, 112), "unique keys within a shard")],
)
def test_add_rejects_bad_input(keys: list[str], shape: tuple[int, int], message: str) -> None:
    with pytest.raises(InputError, match=message):
        NearDuplicateIndex(PARAMS).add(keys, np.zeros(shape, dtype=np.uint32))


def test_repeated_keys_across_shards_and_mixed_texts_are_rejected() -> None:
    sig = minhash_signatures(["one text here", "another text"], PARAMS)
    index = NearDuplicateIndex(PARAMS)
    index.add(["a"], sig[:1])
    index.add(["a"], sig[1:])
    with pytest.raises(InputError, match="'a' twice"):
        index.duplicates()
    with pytest.raises(InputError, match="texts for every shard"):
        index.add(["b"], sig[1:], ["another text"])
    with pytest.raises(InputError, match="one per key"):
        NearDuplicateIndex(PARAMS).add(["b"], sig[1:], [])


def test_docstring_examples() -> None:
    assert doctest.testmod(minhash_module, raise_on_error=False).failed == 0


def test_small_groups_give_all_their_pairs_and_a_large_group_the_pairs_of_its_first_members() -> None:
    lo, hi = pairs_within_groups(np.array([7, 7, 7, 3, 5, 5], dtype=np.int64))
    assert sorted(zip(lo.tolist(), hi.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2), (4, 5)]
    size = SMALL_GROUP + 5  # hundreds of identical copies would otherwise give n^2 / 2 pairs
    lo, hi = pairs_within_groups(np.array([1] + [2] * size, dtype=np.int64))
    expected = [(a, j) for a in range(1, SMALL_GROUP + 1) for j in range(a + 1, size + 1)]
    assert sorted(zip(lo.tolist(), hi.tolist(), strict=True)) == expected
    assert [len(a) for a in pairs_within_groups(np.zeros(1, np.int64))] == [0, 0]
    assert [len(a) for a in pairs_within_groups(np.arange(5, dtype=np.int64))] == [0, 0]  # groups of one


def test_mass_copies_make_one_cluster_from_linearly_many_candidate_pairs() -> None:
    copies = SMALL_GROUP * 3
    index = NearDuplicateIndex(PARAMS)
    index.add([f"c{i:03d}" for i in range(copies)], minhash_signatures([text(1)] * copies, PARAMS))
    report = index.report()
    assert report["cluster_sizes"] == {copies: 1} and report["duplicates"] == copies - 1
    # the first SMALL_GROUP copies with every later one, the same pairs in every band: linear, not n^2 / 2
    assert report["candidate_pairs"] == sum(copies - 1 - a for a in range(SMALL_GROUP))


def test_sketches_give_exact_jaccard_for_short_texts_and_a_close_estimate_for_long_ones() -> None:
    params = MinHashParams(sketch=64)
    short, long = text(30, words=50), text(31, words=2000)
    pairs = [(short, edited(short, 0.1, seed=1)), (long, edited(long, 0.05, seed=2))]
    texts = [t for pair in pairs for t in pair]
    sig, sketches = minhash_sketches(texts, params)
    assert np.array_equal(sig, minhash_signatures(texts, params))  # one shingling, the same signatures
    assert [len(sketches.row(i)) for i in range(4)] == [46, len(np.unique(sketches.row(1))), 64, 64]
    assert sketch_jaccard(sketches.row(0), sketches.row(1), 64) == pytest.approx(exact_jaccard(*pairs[0], params))
    assert abs(sketch_jaccard(sketches.row(2), sketches.row(3), 64) - exact_jaccard(*pairs[1], params)) < 0.15
    assert sketch_jaccard(sketches.row(0), np.zeros(0, np.uint32), 64) == 0.0
    taken = sketches.take(np.array([3, 0]))
    assert np.array_equal(taken.row(0), sketches.row(3)) and np.array_equal(taken.row(1), sketches.row(0))
    both = Sketches.concat([taken, sketches])
    assert len(both) == 6 and np.array_equal(both.row(5), sketches.row(3))


def test_verification_by_sketch_keeps_short_templated_texts_apart() -> None:
    """Two 12-word texts differing in two words (Jaccard 0.33) never merge; an identical pair does."""
    texts = ["please call jane on 0101 about order 70001 today thanks jane bye", "", "", ""]
    texts[1] = texts[0].replace("0101", "0102").replace("70001", "70002")
    texts[2] = texts[3] = "the tent arrived torn and i would like a refund for it now"
    params = MinHashParams()
    sig, sketches = minhash_sketches(texts, params)
    index = NearDuplicateIndex(params)
    index.add(["a", "b", "c", "d"], sig, sketches=sketches)
    assert index.duplicates() == {"d"}
    with pytest.raises(InputError, match="sketches for every shard"):
        index.add(["e"], sig[:1])


def test_a_long_chain_of_pairs_is_decided_the_same_past_the_vectorised_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 301  # a chain 0~1~2~...: kept and dropped alternate, each dropped node for the one before it
    lo, hi = np.arange(n - 1), np.arange(1, n)
    expected = [i - (i % 2) for i in range(n)]
    assert representatives(n, lo, hi).tolist() == expected
    monkeypatch.setattr(minhash_module, "_VECTOR_ROUNDS", 3)
    assert representatives(n, lo, hi).tolist() == expected
    extra_lo, extra_hi = np.concatenate([lo, [0, 4]]), np.concatenate([hi, [200, 250]])  # shortcuts to kept nodes
    chained = representatives(n, extra_lo, extra_hi).tolist()
    monkeypatch.setattr(minhash_module, "_VECTOR_ROUNDS", 10_000)
    assert chained == representatives(n, extra_lo, extra_hi).tolist() and chained[200] == 0 and chained[250] == 4


def _sketch_jaccard_by_sets(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """The definition, with Python sets: of the k smallest values of the union, the share in both."""
    if not len(a) or not len(b):
        return 0.0
    union = sorted(set(a.tolist()) | set(b.tolist()))
    if len(a) >= k or len(b) >= k:
        union = union[:k]
    shared = set(a.tolist()) & set(b.tolist())
    return sum(value <= union[-1] for value in shared) / len(union)


@pytest.mark.parametrize("k", [1, 4, 64, 384])
def test_sketch_jaccard_matches_its_definition_on_random_sketches(k: int) -> None:
    rng = np.random.default_rng(k)
    for trial in range(400):
        values = 1 << (12 if trial % 2 else 30)  # small ranges make many shared values
        pool = rng.choice(values, size=int(rng.integers(1, 3 * k + 2)), replace=False)
        a, b = (np.sort(rng.choice(pool, size=int(rng.integers(0, len(pool) + 1)), replace=False))[:k] for _ in "ab")
        a, b = a.astype(np.uint32), b.astype(np.uint32)
        assert sketch_jaccard(a, b, k) == _sketch_jaccard_by_sets(a, b, k)


def test_signatures_and_sketches_of_an_arrow_column_equal_those_of_its_python_strings() -> None:
    """near_dedup computes them on the shard's Arrow column; the library takes Python strings: the same rows."""
    texts = [text(seed, words=40 + seed * 37 % 400) for seed in range(60)]
    texts += ["ΟΔΟΣ ΑΣ İstanbul\xa0café", "", "  ", "one two", "\U0001f600 emoji, text", text(1)]
    column = pa.chunked_array([pa.array(texts[:30], pa.string()), pa.array(texts[30:], pa.string())])
    for params in (PARAMS, MinHashParams(threshold=0.6, sketch=16), MinHashParams(ngram=3, unit="char")):
        sig, sketches = minhash_sketches(texts, params)
        arrow_sig, arrow_sketches = minhash_sketches(column, params)
        assert np.array_equal(sig, arrow_sig) and np.array_equal(sig, minhash_signatures(column, params))
        assert np.array_equal(sketches.values, arrow_sketches.values)
        assert np.array_equal(sketches.offsets, arrow_sketches.offsets)


def test_verified_similarity_of_many_pairs_is_sketch_jaccard_of_each() -> None:
    """Each pair near the threshold gets its sketches' Jaccard (exact where both hold every shingle), others the
    estimate; acceptance at the threshold, or one standard error above it for an estimate."""
    rng = np.random.default_rng(3)
    k = 16
    rows = []
    for _ in range(300):  # empty, short, just under k, at k and above; overlapping value ranges
        size = int(rng.choice([0, 1, 3, k - 1, k, k + 5, 40]))
        rows.append(np.unique(rng.integers(0, 60, size=size * 2, dtype=np.uint32))[:size])
    lengths = [len(r) for r in rows]
    sketches = Sketches(
        np.concatenate(rows).astype(np.uint32), np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    )
    lo, hi = rng.integers(0, 300, 2000), rng.integers(0, 300, 2000)
    estimate = rng.choice([0.3, 0.55, 0.7, 0.79, 0.85, 1.0], size=2000)
    params = MinHashParams(threshold=0.75, sketch=k)
    similarity, accepted = minhash_module.verified_similarity(estimate, (sketches, lo, sketches, hi), 0.75, params)
    margin = float(np.sqrt(0.75 * 0.25 / k))
    for i in range(2000):
        a, b = sketches.row(int(lo[i])), sketches.row(int(hi[i]))
        if estimate[i] >= 1.0 or estimate[i] < 0.75 - minhash_module.SKETCH_BAND:
            expected, exact = estimate[i], estimate[i] >= 1.0
        else:
            expected, exact = sketch_jaccard(a, b, k), len(a) < k and len(b) < k
        assert similarity[i] == expected
        assert accepted[i] == (expected >= 0.75 if exact else expected >= 0.75 + margin)
