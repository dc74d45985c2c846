from __future__ import annotations

import numpy as np

from keel.index import VectorParams, build_vectors, normalise, vector_search
from keel.index._engines import bm25_from_bytes, bm25_to_bytes, build_bm25, keyword_search


def _clustered(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return normalise(centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, centres.shape[1])))


def test_hnsw_agrees_with_exact_search() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, 64))
    # Queries come from the same clusters as the data, as questions about an indexed corpus do.
    data, queries = _clustered(5_000, centres, rng), _clustered(200, centres, rng)
    assert VectorParams.for_size(5_000, threshold=1_000).kind == "hnsw"
    assert VectorParams.for_size(999, threshold=1_000).kind == "flat"
    _, exact = vector_search(build_vectors(data, VectorParams("flat")), queries, 10)
    _, approx = vector_search(build_vectors(data, VectorParams("hnsw")), queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95
    # Exact search is exact: the top id is the best inner product.
    assert exact[0][0] == int(np.argmax(data @ queries[0]))


def test_bm25_round_trips_through_bytes() -> None:
    texts = ["the cat sat on the mat", "dogs bark at night", "a cat and a dog play"]
    data = bm25_to_bytes(build_bm25(texts))
    assert data == bm25_to_bytes(build_bm25(texts))  # deterministic: same index, same blob
    loaded = bm25_from_bytes(data)
    scores = dict(keyword_search(loaded, "cat", 5, 3))
    assert set(scores) == {0, 2}  # only documents that contain the word, with positive scores
    assert keyword_search(loaded, "cat", 5, 3, mask=np.array([False, False, True])) == [(2, scores[2])]
    assert keyword_search(loaded, "zebra", 5, 3) == [] and keyword_search(bm25_from_bytes(b""), "cat", 5, 0) == []
