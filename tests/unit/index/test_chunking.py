from __future__ import annotations

import pytest

from keel.core.errors import InputError
from keel.index import ChunkSettings, SentenceTransformerEmbedder, chunk_text

ARTICLE = (
    "Refunds are issued within fourteen days. They go back to the original card.\n\n"
    "Shipping takes five to seven days. Express delivery takes two days and costs extra. "
    "Tracking numbers are emailed when the parcel leaves the warehouse.\n\n"
    "Support answers on weekdays."
)


def test_chunks_end_at_paragraphs_and_map_back_to_the_text() -> None:
    spans = chunk_text(ARTICLE, ChunkSettings(size=120, overlap=20))
    assert [s.text for s in spans] == [
        # A paragraph end: a clean cut, and the next chunk starts at the next paragraph (no overlap).
        "Refunds are issued within fourteen days. They go back to the original card.",
        # Too long for one chunk: cut at the last sentence end, then overlap by up to 20 characters.
        "Shipping takes five to seven days. Express delivery takes two days and costs extra.",
        # The rest fits in one chunk, so the short last paragraph joins it.
        "and costs extra. Tracking numbers are emailed when the parcel leaves the warehouse.\n\n"
        "Support answers on weekdays.",
    ]
    for span in spans:
        assert ARTICLE[span.start : span.end] == span.text and len(span.text) <= 120


def test_long_paragraphs_are_cut_with_overlap() -> None:
    words = " ".join(f"word{i:03d}" for i in range(60))  # 60 words of 7 characters, no sentence ends
    spans = chunk_text(words, ChunkSettings(size=80, overlap=20))
    assert all(len(s.text) <= 80 for s in spans) and len(spans) > 5
    for first, second in zip(spans, spans[1:], strict=False):
        assert second.start < first.end  # they overlap
        assert first.end - second.start <= 20
    assert spans[0].text.startswith("word000") and spans[-1].text.endswith("word059")
    no_overlap = chunk_text(words, ChunkSettings(size=80, overlap=0))
    assert all(b.start > a.end for a, b in zip(no_overlap, no_overlap[1:], strict=False))


def test_edge_cases() -> None:
    assert chunk_text("", ChunkSettings()) == [] and chunk_text(" \n\n ", ChunkSettings()) == []
    long_word = "x" * 50
    assert [s.text for s in chunk_text(f"a {long_word} b", ChunkSettings(size=10, overlap=2))] == ["a", long_word, "b"]


def test_bad_settings_say_what_is_expected() -> None:
    with pytest.raises(InputError, match="overlap from 0 to less than the chunk size 10"):
        ChunkSettings(size=10, overlap=10)
    with pytest.raises(InputError, match="chunk size of at least 1"):
        ChunkSettings(size=0, overlap=0)
    with pytest.raises(InputError, match="needs the embedding model's tokenizer"):
        chunk_text("text", ChunkSettings(size=10, overlap=0, by="tokens"))


def test_chunking_by_model_tokens() -> None:
    embedder = SentenceTransformerEmbedder()
    spans = chunk_text(ARTICLE, ChunkSettings(size=16, overlap=4, by="tokens"), embedder.token_offsets)
    assert len(spans) >= 4
    for span in spans:
        assert ARTICLE[span.start : span.end] == span.text
        assert len(embedder.token_offsets(span.text)) <= 16
    assert spans[-1].text == "Support answers on weekdays."
