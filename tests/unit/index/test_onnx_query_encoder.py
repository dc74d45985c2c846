"""The ONNX Runtime query encoder: the real MiniLM exported once, its vectors held to torch's, its fallbacks."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keel.index import (
    OnnxQueryEncoder,
    QueryEncoderUnavailableError,
    SentenceTransformerEmbedder,
    load_query_encoder,
)
from keel.index._onnx import INT8_FILE
from keel.serve._retrieval import EmbedBatcher

QUERIES = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "hnsw_queries.txt"


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # One export for the module (a few seconds of CPU); each test that needs a fresh cache makes its own.
    yield tmp_path_factory.mktemp("query-encoders")


@pytest.fixture
def cache_in_tmp_path(cache: Path, tmp_path: Path) -> None:
    """tmp_path starts as a copy of the module's cache: the exports made there are reused, not made again.

    For a test that changes files in its cache folder; exporting is tested through the module's cache.
    """
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)


def _questions() -> list[str]:
    lines = [line.split("\t", 1) for line in QUERIES.read_text().splitlines() if line and line[0] != "#"]
    return [q for _, q in lines]


def test_onnx_vectors_match_torch_on_real_questions_lone_and_batched(
    embedder: SentenceTransformerEmbedder, cache: Path
) -> None:
    encoder = load_query_encoder(embedder, "onnx", cache)
    questions = _questions()
    assert len(questions) > 100
    torch_lone = np.concatenate([embedder.embed_queries([q]) for q in questions])
    onnx_lone = np.concatenate([encoder.embed_queries([q]) for q in questions])
    assert np.abs(onnx_lone - torch_lone).max() < 1e-5
    # Padded batches (different lengths together), as the gateway's batcher forms them.
    onnx_batched = encoder.embed_queries(questions)
    assert np.abs(onnx_batched - torch_lone).max() < 1e-5
    assert onnx_batched.dtype == np.float32 and np.allclose(np.linalg.norm(onnx_batched, axis=1), 1, atol=1e-6)
    # Rankings over the questions themselves (each against all) stay those of torch.
    assert ((onnx_lone @ torch_lone.T).argmax(1) == np.arange(len(questions))).all()
    top = np.argsort(-(torch_lone @ torch_lone.T), axis=1)[:, :10]
    again = np.argsort(-(onnx_lone @ torch_lone.T), axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, again, strict=True)])
    assert overlap >= 0.99


def test_tokenising_straight_to_numpy_feeds_the_session_what_preprocess_would(
    embedder: SentenceTransformerEmbedder, cache: Path
) -> None:
    encoder = load_query_encoder(embedder, "onnx-int8", cache)
    assert encoder._tokenizer is not None  # MiniLM's tokenizer gives preprocess's ids: the faster path is on
    through_preprocess = OnnxQueryEncoder(embedder, encoder.session, "onnx-int8", encoder.path)
    through_preprocess._tokenizer = None
    texts = [*_questions(), "  spaces around  ", "", " ".join(["truncated past 256 tokens"] * 200)]
    for batch in ([t] for t in texts[:20]), [texts]:
        for chunk in batch:
            fast, slow = encoder._feeds(chunk), through_preprocess._feeds(chunk)
            assert fast.keys() == slow.keys() and all(np.array_equal(fast[n], slow[n]) for n in fast)
    assert np.array_equal(encoder.embed_queries(texts), through_preprocess.embed_queries(texts))


def test_export_is_cached_by_model_digest_and_reused(embedder: SentenceTransformerEmbedder, cache: Path) -> None:
    first = load_query_encoder(embedder, "onnx", cache)
    written = first.path.stat().st_mtime_ns
    second = load_query_encoder(embedder, "onnx", cache)
    assert second.path == first.path and second.path.stat().st_mtime_ns == written  # not exported again
    assert [p.name for p in cache.iterdir()] == [first.path.parent.name]  # one folder: the model's digest
    assert len(first.path.parent.name) == 32 and not list(first.path.parent.glob(".export-*"))


def _self_overlap(found: np.ndarray, torch_vectors: np.ndarray) -> float:
    """Top-10 overlap of `found` queries against torch's vectors of the same questions, with torch's own."""
    top = np.argsort(-(torch_vectors @ torch_vectors.T), axis=1)[:, :10]
    again = np.argsort(-(found @ torch_vectors.T), axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, again, strict=True)]))


def test_int8_is_block_wise_and_keeps_rankings(embedder: SentenceTransformerEmbedder, cache: Path) -> None:
    import onnx

    encoder = load_query_encoder(embedder, "onnx-int8", cache)
    assert encoder.path.name == INT8_FILE and encoder.runtime == "onnx-int8"
    graph = onnx.load(str(encoder.path)).graph
    weights = {i.name for i in graph.initializer}
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 36  # q, k, v, attention output, FFN in and out of each of MiniLM-L6's 6 layers
    attrs = {a.name: a.i for a in nbits[0].attribute}
    assert (attrs["bits"], attrs["block_size"], attrs["accuracy_level"]) == (8, 16, 4)
    assert not [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]  # none left in fp32
    questions = _questions()
    torch_lone = np.concatenate([embedder.embed_queries([q]) for q in questions])
    lone = np.concatenate([encoder.embed_queries([q]) for q in questions])
    cosines = (lone * torch_lone).sum(1)
    assert cosines.min() > 0.999 and cosines.max() < 1 - 1e-6  # moved by quantisation, but barely
    # Weights and activations are quantised per block, not per call: padding a batch does not move a vector.
    assert np.abs(encoder.embed_queries(questions) - lone).max() < 1e-5
    # The per-tensor dynamic int8 this replaced kept 0.89 of this overlap and per-channel 0.95 (this graph 0.989).
    assert _self_overlap(lone, torch_lone) >= 0.98
    assert ((lone @ torch_lone.T).argmax(1) == np.arange(len(questions))).all()


@pytest.mark.usefixtures("cache_in_tmp_path")  # the int8 export reused: ~a quarter of the module's CPU time
def test_probe_check_rejects_a_quantised_graph_that_moves_rankings(
    embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    good = load_query_encoder(embedder, "onnx-int8", tmp_path)
    former = good.path.parent / "model-int8.onnx"  # the former onnx-int8: per-tensor dynamic int8
    quantize_dynamic(good.path.parent / "model.onnx", former, weight_type=QuantType.QInt8)
    shutil.copyfile(former, good.path)  # in the block-wise graph's place: 0.82 of torch's top 10 over real chunks
    with pytest.raises(
        QueryEncoderUnavailableError, match=r"expected int8 query vectors at cosine >= 0.998 to torch's; got 0\.9"
    ):
        load_query_encoder(embedder, "onnx-int8", tmp_path)
    # A cache folder that holds the former recipe's file gets the block-wise graph under its own name.
    good.path.unlink()
    again = load_query_encoder(embedder, "onnx-int8", tmp_path)
    assert again.path == good.path and former.exists()


def _batch(batcher: EmbedBatcher, texts: list[str]) -> list[Any]:
    async def run() -> list[Any]:
        try:
            return list(await asyncio.gather(*(batcher.embed(t) for t in texts)))
        finally:
            await batcher.aclose()

    return asyncio.run(run())


def test_batcher_embeds_with_onnx_by_choice(embedder: SentenceTransformerEmbedder, cache: Path) -> None:
    questions = _questions()[:12]
    batcher = EmbedBatcher(embedder, runtime="onnx", cache=cache, max_batch=4)
    vectors = np.stack(_batch(batcher, questions))
    assert batcher.runtime == "onnx" and batcher.embedded == 12
    assert np.abs(vectors - embedder.embed_queries(questions)).max() < 1e-5
    torch_batcher = EmbedBatcher(embedder, runtime="torch")
    same = np.stack(_batch(torch_batcher, questions))
    assert torch_batcher.runtime == "torch" and np.array_equal(same, embedder.embed_queries(questions))


@pytest.mark.parametrize("broken", ["no-onnxruntime", "export-fails"])
def test_batcher_falls_back_to_torch_and_says_so_once(
    broken: str,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    if broken == "no-onnxruntime":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)
    else:
        cache.write_text("a file where the cache folder should be")
    questions = _questions()[:6]
    with caplog.at_level(logging.WARNING, logger="keel.serve._retrieval"):
        batcher = EmbedBatcher(embedder, runtime="onnx", cache=cache, max_batch=2)
        vectors = np.stack(_batch(batcher, questions))
    assert batcher.runtime == "torch" and batcher.batches >= 3
    assert np.array_equal(vectors, embedder.embed_queries(questions))  # torch's vectors, to the last bit
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "embedded with torch, not onnx" in warnings[0]


def test_batcher_falls_back_for_an_embedder_it_cannot_export(caplog: pytest.LogCaptureFixture) -> None:
    class Plain:
        model_id, dimension = "plain", 2

        def embed(self, texts: Any, progress: Any = None) -> Any:
            return np.ones((len(texts), 2), np.float32) / np.sqrt(2)

        def token_offsets(self, text: str) -> list[tuple[int, int]]:
            return []

    with caplog.at_level(logging.WARNING, logger="keel.serve._retrieval"):
        batcher = EmbedBatcher(Plain(), runtime="onnx", cache=Path("/nonexistent"))
        assert len(_batch(batcher, ["a", "b"])) == 2
    assert batcher.runtime == "torch"
    assert [r.getMessage() for r in caplog.records if "sentence-transformers embedder" in r.getMessage()]
