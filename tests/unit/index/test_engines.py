from __future__ import annotations

import numpy as np
import pytest

from keel.core.errors import InputError
from keel.index import VectorParams, build_vectors, ef_search_for, normalise, vector_search
from keel.index._engines import (
    bm25_from_bytes,
    bm25_to_bytes,
    build_bm25,
    keyword_search,
    vectors_from_bytes,
    vectors_to_bytes,
)


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


def test_hnsw_holds_recall_for_queries_unlike_the_corpus_at_the_model_dimension() -> None:
    # 384 dimensions (the offline MiniLM's); queries from topics the corpus does not cover. The old
    # fixed ef_search of 40 found 0.61 of the true top 10 here; ef_search by size must reach 0.95.
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(600, 384))
    data = normalise(centres[rng.integers(0, 500, 10_000)] + 0.5 * rng.normal(size=(10_000, 384)))
    queries = normalise(centres[rng.integers(500, 600, 200)] + 0.5 * rng.normal(size=(200, 384)))
    params = VectorParams.for_size(10_000, threshold=5_000)
    assert params.kind == "hnsw" and params.ef_search == ef_search_for(10_000) == 512
    _, exact = vector_search(build_vectors(data, VectorParams("flat")), queries, 10)
    index = build_vectors(data, VectorParams("hnsw"))  # ef_search 0: chosen by size
    assert index.hnsw.efSearch == 512

    def recall() -> float:
        found = vector_search(index, queries, 10)[1]
        return float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(found, exact, strict=True)]))

    assert recall() >= 0.95, recall()
    index.hnsw.efSearch = 40
    assert recall() < 0.8, recall()
    # A stored index loads with the same rule when its manifest left ef_search to the size.
    loaded = vectors_from_bytes(vectors_to_bytes(index), VectorParams("hnsw"))
    assert loaded.hnsw.efSearch == 512
    # A caller's own ef_search (a route's) widens this one search, and leaves the shared index's setting alone.
    wide = vector_search(index, queries, 10, ef_search=512)[1]
    assert float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(wide, exact, strict=True)])) >= 0.95
    assert index.hnsw.efSearch == 40 and recall() < 0.8
    flat = build_vectors(data, VectorParams("flat"))  # exact search has no breadth to set: the same answer
    assert (vector_search(flat, queries, 10, ef_search=8)[1] == exact).all()


def test_vector_params_refuse_settings_faiss_cannot_build() -> None:
    """M 1 hangs or crashes FAISS; sq8 on an exact index, a float or a bool are mistakes: refused with what fits."""
    for kwargs, message in [
        ({"kind": "hnsw", "m": 1}, "m an integer from 2 to 512, got 1"),
        ({"kind": "hnsw", "m": 16.5}, "m an integer from 2 to 512, got 16.5"),
        ({"kind": "hnsw", "ef_construction": True}, "ef_construction an integer from 1 to 65,536, got True"),
        ({"kind": "hnsw", "ef_search": -1}, "ef_search an integer of at least 0, got -1"),
        ({"kind": "flat", "storage": "sq8"}, "storage 'fp32' for an exact (flat) index, got 'sq8'"),
        ({"kind": "hnsw", "storage": "pq"}, "storage 'fp32' or 'sq8', got 'pq'"),
        ({"kind": "ivf"}, "kind 'flat' or 'hnsw', got 'ivf'"),
    ]:
        with pytest.raises(InputError, match="expected vector index settings with ") as caught:
            VectorParams(**kwargs)  # type: ignore[arg-type]
        assert message in str(caught.value) and str(caught.value).endswith("fix them and retry")
    big = VectorParams.for_size(5_000_000)  # the rule by size may pass 65,536: no top on ef_search
    assert big.ef_search == 262_144 and VectorParams.from_json(big.to_json()) == big
    assert VectorParams("hnsw", storage="sq8").shown()["storage"] == "sq8"
    assert VectorParams("hnsw").shown()["storage"] == "fp32" and "storage" not in VectorParams("hnsw").to_json()
