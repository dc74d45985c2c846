"""Floor 4: versioned retrieval indexes: chunking, embeddings, FAISS + BM25 hybrid search, evaluation."""

from keel.index._build import BuildProgress, IndexBuild, build_index, chunk_records
from keel.index._chunking import ChunkSettings, Span, chunk_text
from keel.index._embedding import DEFAULT_MODEL, Embedder, SentenceTransformerEmbedder, load_embedder, normalise
from keel.index._engines import HNSW_THRESHOLD, VectorParams, build_vectors, ef_search_for, vector_search
from keel.index._eval import EvalQuery, RetrievalEval, evaluate_index, load_queries, retrieval_metrics
from keel.index._onnx import OnnxQueryEncoder, QueryEncoderUnavailableError, QueryRuntime, load_query_encoder
from keel.index._rag import FILLABLE, RagAnswer, RagApp, RetrievalSettings, RetrieverPool, check_app, query_of
from keel.index._search import Hit, Retriever, SearchMode, open_index, parse_filters, search
from keel.index._versions import IndexVersion, get_index, list_indexes, parse_index_ref

__all__ = [
    "DEFAULT_MODEL",
    "FILLABLE",
    "HNSW_THRESHOLD",
    "BuildProgress",
    "ChunkSettings",
    "Embedder",
    "EvalQuery",
    "Hit",
    "IndexBuild",
    "IndexVersion",
    "OnnxQueryEncoder",
    "QueryEncoderUnavailableError",
    "QueryRuntime",
    "RagAnswer",
    "RagApp",
    "RetrievalSettings",
    "RetrievalEval",
    "Retriever",
    "RetrieverPool",
    "SearchMode",
    "SentenceTransformerEmbedder",
    "Span",
    "VectorParams",
    "build_index",
    "build_vectors",
    "chunk_records",
    "check_app",
    "chunk_text",
    "ef_search_for",
    "evaluate_index",
    "get_index",
    "list_indexes",
    "load_embedder",
    "load_queries",
    "load_query_encoder",
    "normalise",
    "open_index",
    "parse_filters",
    "parse_index_ref",
    "query_of",
    "retrieval_metrics",
    "search",
    "vector_search",
]
