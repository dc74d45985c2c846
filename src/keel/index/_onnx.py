"""Query embedding in ONNX Runtime: the same sentence-transformers model, exported once per model digest.

A lone short query through MiniLM-L6 costs about 14 ms of CPU in torch, 5 ms in ONNX Runtime fp32 on one
thread (vectors within 2e-7 of torch's) and about 3.3 ms with block-wise int8 weights (`onnx-int8`:
cosine to torch's >= 0.9997, top-10 overlap 0.98; benchmarks/query_encoders.py). The graph (transformer
and pooling; tokenisation stays the model's own) is exported with torch's ONNX exporter into a cache folder
named by a digest of the weights and the export recipe, so a model is exported once per machine; each
load checks the session's vectors against torch's on probe sentences before anything uses it. This module
decides no policy: the gateway chooses the runtime and falls back to torch when this raises.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from keel.core.errors import ConfigError
from keel.index._embedding import SentenceTransformerEmbedder, Vectors, normalise

__all__ = ["PROBES", "QueryEncoderUnavailableError", "QueryRuntime", "OnnxQueryEncoder", "load_query_encoder"]

log = logging.getLogger(__name__)

QueryRuntime = Literal["onnx", "onnx-int8", "torch"]
# Bumped whenever the exported graph changes shape or meaning: old cache entries are then not reused.
RECIPE = "keel-query-encoder-1"
OPSET = 17
# Sentences of different lengths, embedded lone and as one padded batch, that every loaded session must
# reproduce: a graph exported wrong (pooling, padding, truncation) fails here, not in a ranking.
PROBES = (
    "How long do refunds take?",
    "how do I read a file line by line?",
    "Der Zug nach Berlin fährt um 7 Uhr ab; 12,5 % Rabatt für Kinder unter 12 Jahren.",
    "a",
)
# fp32 graphs agree with torch to about 2e-7 per component; 1e-5 still rejects any graph that is wrong.
FP32_TOLERANCE = 1e-5
# int8: every MatMul with constant weights becomes ORT's MatMulNBits with 8-bit weights quantised per block
# of 16 input rows (asymmetric) and int8 compute (accuracy level 4: activations quantised per block too).
# Per-tensor dynamic int8 (`quantize_dynamic`) cost about as much but kept only 0.83 of torch's top 10
# (per-channel 0.91); blocks of 16 keep 0.98, blocks of 32 or 64 are cheaper by 0-0.3 ms and keep 0.976-0.98,
# and fp32 compute over the same weights (levels 1-3) keeps 0.984-0.988 at 15-21 ms (docs/serving.md).
INT8_BITS, INT8_BLOCK, INT8_ACCURACY = 8, 16, 4
INT8_FILE = f"model-int8-nbits{INT8_BITS}-b{INT8_BLOCK}-a{INT8_ACCURACY}.onnx"  # a new recipe is a new file
# This graph's vectors stay at cosine >= 0.9997 to torch's on 159 real questions and >= 0.9995 on the probes
# (lone and batched); 0.998 leaves that margin 4x for other CPUs' int8 kernels and still rejects every graph
# measured to move rankings (probes: per-tensor int8 0.932, per-channel 0.991, 4-bit weights 0.965).
INT8_MIN_COSINE = 0.998
_export_lock = threading.Lock()


class QueryEncoderUnavailableError(ConfigError):
    """ONNX Runtime cannot embed this model's queries here (missing package, unsupported model, failed export)."""


def _pooling_mode(module: Any) -> str | None:
    mode = getattr(module, "pooling_mode", None)
    if isinstance(mode, str):
        return mode
    config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
    flags = [k for k, v in config.items() if k.startswith("pooling_mode_") and v is True]  # sentence-transformers < 5
    if len(flags) != 1:
        return None
    return {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(flags[0])


def _graph_parts(model: Any) -> tuple[str, list[str]]:
    """The pooling mode and the tokenizer outputs it takes; refuses what the graph cannot hold."""
    modules = [type(m).__name__ for m in model]
    if modules not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise QueryEncoderUnavailableError(
            f"expected a sentence-transformers model of Transformer, Pooling (and Normalize) to export; got {modules}"
        )
    transformer, pooling = model[0], model[1]
    if getattr(transformer, "backend", "torch") != "torch":
        raise QueryEncoderUnavailableError(f"expected a torch model to export; got backend {transformer.backend!r}")
    mode = _pooling_mode(pooling)
    if mode not in ("mean", "cls"):
        raise QueryEncoderUnavailableError(f"expected mean or CLS pooling to export; got {mode!r}")
    features = model.preprocess(list(PROBES[:2]))
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in features]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise QueryEncoderUnavailableError(f"expected input_ids and attention_mask from the tokenizer; got {names}")
    return mode, names


def _model_digest(model: Any, mode: str, names: list[str]) -> str:
    """sha256 of what the exported graph depends on: architecture config, pooling, inputs, every weight."""
    import torch

    auto = model[0].auto_model
    digest = hashlib.sha256()
    recipe = {"recipe": RECIPE, "opset": OPSET, "pooling": mode, "inputs": names, "torch": torch.__version__}
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    digest.update(auto.config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(auto.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


@contextlib.contextmanager
def _written(path: Path) -> Iterator[str]:
    """A temporary file beside `path` to write, moved onto `path` when the block succeeds, removed otherwise.

    A concurrent writer of the same digest writes the same graph, so whichever rename lands last is right.
    """
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx", dir=path.parent)
    os.close(handle)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _export(model: Any, mode: str, names: list[str], path: Path) -> None:
    """Write the fp32 graph (ids and mask in, pooled un-normalised vector out) to `path`, atomically."""
    import torch

    auto = model[0].auto_model

    class QueryGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = auto

        def forward(self, *inputs: Any) -> Any:
            hidden = self.transformer(**dict(zip(names, inputs, strict=True))).last_hidden_state
            if mode == "cls":
                return hidden[:, 0]
            mask = inputs[1].unsqueeze(-1).to(hidden.dtype)  # sentence-transformers' mean over real tokens
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    features = model.preprocess(list(PROBES[:2]))
    args = tuple(features[n] for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    with _written(path) as tmp, torch.inference_mode(), warnings.catch_warnings():
        # The TorchScript-based exporter warns that it is deprecated; it is the one that exports this
        # graph in seconds with `onnx` alone (the dynamo exporter took 27-44 s here and needs onnxscript).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            QueryGraph().eval(),
            args,
            tmp,
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes=axes | {"sentence_embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _quantise(source: Path, path: Path) -> None:
    """Write `source` with its weight MatMuls as block-wise 8-bit MatMulNBits (see INT8_BLOCK) to `path`."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer  # type: ignore[import-untyped]

    quantiser = MatMulNBitsQuantizer(
        onnx.load(str(source)),
        bits=INT8_BITS,
        block_size=INT8_BLOCK,
        is_symmetric=False,
        accuracy_level=INT8_ACCURACY,
        op_types_to_quantize=("MatMul",),  # those with constant weights; attention's own MatMuls stay fp32
    )
    quantiser.process()
    with _written(path) as tmp:
        quantiser.model.save_model_to_file(tmp, use_external_data_format=False)


class OnnxQueryEncoder:
    """Embeds queries with an ONNX Runtime session of a sentence-transformers model; tokenises with the model's own.

    Made by `load_query_encoder`, which checked it against torch. Not thread-safe in its tokenizer: call it
    from one thread (the gateway's embedding thread).

    Args:
        embedder: The torch embedder it stands in for (its tokenizer, id and dimension).
        session: The ONNX Runtime session.
        runtime: `onnx` or `onnx-int8`.
        path: The graph file the session runs.
    """

    def __init__(self, embedder: SentenceTransformerEmbedder, session: Any, runtime: QueryRuntime, path: Path) -> None:
        self.embedder = embedder
        self.session = session
        self.runtime = runtime
        self.path = path
        self._names = [i.name for i in session.get_inputs()]
        self._tokenizer = _direct_tokenizer(embedder.model, self._names)

    def _feeds(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self._tokenizer is not None:
            batch = self._tokenizer(texts, padding=True, truncation="longest_first", return_tensors="np")
            return {n: batch[n] for n in self._names}
        features = self.embedder.model.preprocess(texts)
        return {n: features[n].numpy() for n in self._names}

    @property
    def model_id(self) -> str:
        """The embedder's model id."""
        return self.embedder.model_id

    @property
    def dimension(self) -> int:
        """The embedder's vector length."""
        return self.embedder.dimension

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors of `texts`, one padded batch per 64."""
        out = [self.session.run(None, self._feeds(list(texts[i : i + 64])))[0] for i in range(0, len(texts), 64)]
        return normalise(np.concatenate(out) if out else np.zeros((0, self.dimension), np.float32))


def _direct_tokenizer(model: Any, names: list[str]) -> Any:
    """The model's tokenizer, to call straight into numpy, if it gives `model.preprocess`'s ids; else None.

    sentence-transformers' `preprocess` tokenises into torch tensors through its processor layer; calling
    the tokenizer as it does but into numpy cut a lone int8 query from 2.78 to 2.57 ms of CPU (the session
    alone 2.20 ms; medians of 9 alternating rounds, load average 12). Checked here on the probes and on a
    text past the model's length (truncation); any difference keeps `preprocess`.
    """
    tokenizer: Any = getattr(model, "tokenizer", None)
    texts = [*PROBES, " ".join(["refunds"] * 600)]
    try:
        want = model.preprocess(texts)
        got = tokenizer(texts, padding=True, truncation="longest_first", return_tensors="np")
        same = all(np.array_equal(want[n].numpy(), got[n]) and got[n].dtype == np.int64 for n in names)
    except Exception:  # a tokenizer that cannot be called so: preprocess it is
        return None
    return tokenizer if same else None


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check(encoder: OnnxQueryEncoder) -> None:
    """Refuse a session whose vectors stray from torch's on the probes (lone and batched)."""
    expected = encoder.embedder.embed_queries(list(PROBES))
    got = np.concatenate([encoder.embed_queries([p]) for p in PROBES] + [encoder.embed_queries(list(PROBES))])
    want = np.concatenate([expected, expected])
    if encoder.runtime == "onnx":
        worst = float(np.abs(got - want).max())
        if worst > FP32_TOLERANCE:
            raise QueryEncoderUnavailableError(
                f"expected ONNX query vectors within {FP32_TOLERANCE:g} of torch's; got {worst:.3g} apart",
                hint=f"delete {encoder.path.parent} to export again",
            )
    else:
        cosine = float((got * want).sum(axis=1).min())
        if cosine < INT8_MIN_COSINE:
            raise QueryEncoderUnavailableError(
                f"expected int8 query vectors at cosine >= {INT8_MIN_COSINE} to torch's; got {cosine:.3f}",
                hint=f"delete {encoder.path.parent} to export again",
            )


def load_query_encoder(
    embedder: SentenceTransformerEmbedder, runtime: QueryRuntime, cache: Path, *, threads: int = 1
) -> OnnxQueryEncoder:
    """An ONNX Runtime query encoder for `embedder`'s model, exported into `cache` on first use and checked.

    Args:
        embedder: The loaded sentence-transformers embedder (torch), as the index version names it.
        runtime: `onnx` (fp32: vectors within 1e-5 of torch's) or `onnx-int8` (block-wise 8-bit weights,
            int8 compute: cosine about 0.9998 to torch's, checked >= 0.998; 1.5% of top-10 places move).
        cache: Folder of exported graphs, one sub-folder per model digest (shared by processes and workspaces).
        threads: ONNX Runtime intra-op threads (one: a gateway's concurrency comes from batching queries).

    Returns:
        The encoder; `encoder.embed_queries(texts)` gives unit vectors as `embedder.embed_queries` does.

    Raises:
        QueryEncoderUnavailableError: onnxruntime or onnx is not installed, the model is not a
            Transformer + mean/CLS Pooling model, the export failed, or the session failed the probe check.

    Examples:
        >>> cache = Path("~/.cache/keel/query-encoders")
        >>> encoder = load_query_encoder(SentenceTransformerEmbedder(), "onnx", cache)  # doctest: +SKIP
        >>> encoder.embed_queries(["how do refunds work?"]).shape  # doctest: +SKIP
        (1, 384)
    """
    if runtime not in ("onnx", "onnx-int8"):
        raise QueryEncoderUnavailableError(f"expected the runtime onnx or onnx-int8; got {runtime!r}")
    needed = ("onnxruntime", "onnx") + (("onnx_ir",) if runtime == "onnx-int8" else ())  # onnx_ir: ORT's quantiser
    missing = [p for p in needed if not _importable(p)]
    if missing:
        raise QueryEncoderUnavailableError(
            f"expected {' and '.join(missing)} installed to embed queries in ONNX Runtime; not found",
            hint="pip install 'keel-llmops[index]'",
        )
    model = embedder.model
    mode, names = _graph_parts(model)
    folder = Path(cache).expanduser() / _model_digest(model, mode, names)[:32]
    fp32 = folder / "model.onnx"
    path = fp32 if runtime == "onnx" else folder / INT8_FILE
    try:
        with _export_lock:  # one export per process; processes race harmlessly (same bytes, atomic rename)
            if not fp32.exists():
                log.info("exporting %s's query encoder to ONNX in %s", embedder.model_id, folder)
                _export(model, mode, names, fp32)
            if not path.exists():
                _quantise(fp32, path)
        encoder = OnnxQueryEncoder(embedder, _session(path, threads), runtime, path)
    except QueryEncoderUnavailableError:
        raise
    except Exception as exc:  # the exporter and ORT raise many kinds; each means: no ONNX encoder here
        raise QueryEncoderUnavailableError(
            f"expected to export and load {embedder.model_id}'s query encoder in {folder}; "
            f"failed with {type(exc).__name__}: {exc}"
        ) from exc
    _check(encoder)
    return encoder
