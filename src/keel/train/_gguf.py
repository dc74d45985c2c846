"""GGUF export of a model version with llama.cpp's own tools, measured against its parent.

The converter is llama.cpp's `convert_hf_to_gguf.py` as llama-cpp-python's source distribution ships
it (with the `gguf-py` package beside it in that sdist), run in a child process; q8_0 and q4_k_m come from llama.cpp's
quantiser (`llama_cpp.llama_model_quantize`). Perplexity of the GGUF file is computed by llama.cpp on
exactly the token ids the parent was scored on, so the two figures differ only by the weights.
This module does not serve GGUF files (`keel.serve`'s `llama.cpp` backend does).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import logging
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from keel.core.echo import shown
from keel.core.errors import InputError, NotFoundError
from keel.registry import ModelVersion, start_run
from keel.store import Store
from keel.train._measure import Measurement, folder_size, heldout_texts, measure
from keel.train._models import load_model, quiet_loading
from keel.train._optimize import OptimizeResult, _check_quality, _comparison, _metrics, _register

__all__ = [
    "GgufQuant",
    "LLAMA_CPP_HINT",
    "export_gguf",
    "find_converter",
    "gguf_perplexity",
    "quantize_gguf",
    "require_llama_cpp",
]

GgufQuant = Literal["f16", "q8_0", "q4_k_m"]
LLAMA_CPP_HINT = (
    'build it once (about 5 minutes): CMAKE_ARGS="-DLLAVA_BUILD=OFF" pip wheel llama-cpp-python --no-deps '
    "-w ~/.cache/keel-wheels, then pip install ~/.cache/keel-wheels/llama_cpp_python-*.whl "
    "(or pip install 'keel-llmops[llamacpp]', which builds it)"
)
_FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
# The converter with its `gguf` package from the same source: `gguf` 0.19.0 on PyPI lacks what this converter
# uses (`gguf.LazyChunkedTensor`, measured with llama-cpp-python 0.3.36), so the two must come together.
_CONVERTER_FILES = (
    "vendor/llama.cpp/convert_hf_to_gguf.py",
    "vendor/llama.cpp/conversion/",
    "vendor/llama.cpp/gguf-py/gguf/",
)
_MAX_LENGTH = 256  # tokens scored per held-out text, as `measure` does


def require_llama_cpp() -> Any:
    """Import `llama_cpp`, or raise a `NotFoundError` saying how to build and install it."""
    try:
        import llama_cpp
    except ImportError:
        raise NotFoundError("expected llama-cpp-python to be installed; it is not", hint=LLAMA_CPP_HINT) from None
    return llama_cpp


def _llama_cpp_version() -> str:
    return importlib.metadata.version("llama-cpp-python")


def find_converter(source: Path | None, cache: Path) -> Path:
    """The folder holding llama.cpp's `convert_hf_to_gguf.py` and its `conversion/` package.

    Args:
        source: A folder holding the converter (a llama.cpp checkout), or a llama-cpp-python source
            distribution (`llama_cpp_python-X.tar.gz`) whose vendored copy is unpacked into `cache`
            once; None looks for the installed llama-cpp-python version's sdist in ~/.cache/keel-wheels.
        cache: Where unpacked converters are kept.

    Returns:
        The folder to run the converter from.
    """
    if source is None:
        version = _llama_cpp_version() if importlib.util.find_spec("llama_cpp") else "*"
        found = sorted((Path.home() / ".cache" / "keel-wheels").glob(f"llama_cpp_python-{version}.tar.gz"))
        if not found:
            raise NotFoundError(
                f"expected llama-cpp-python's source distribution (version {version}) in ~/.cache/keel-wheels, "
                "which holds llama.cpp's GGUF converter; found none",
                hint="pip download --no-deps --no-binary :all: llama-cpp-python=="
                f"{version if version != '*' else 'VERSION'} -d ~/.cache/keel-wheels, "
                "or set KEEL_LLAMA_CPP_SOURCE to a llama.cpp checkout",
            )
        source = found[-1]
    source = source.expanduser()
    if source.is_dir():
        if not (source / "convert_hf_to_gguf.py").is_file():
            raise NotFoundError(
                f"expected convert_hf_to_gguf.py in {source}; it is not there",
                hint="point KEEL_LLAMA_CPP_SOURCE at a llama.cpp checkout or a llama-cpp-python sdist",
            )
        return source
    if not source.name.endswith(".tar.gz"):
        raise InputError(f"expected a folder or a .tar.gz source distribution; got {source}")
    target = cache / source.name.removesuffix(".tar.gz")
    if not (target / "convert_hf_to_gguf.py").is_file():
        _unpack_converter(source, target)
    return target


def _unpack_converter(sdist: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        wanted = [m for m in archive.getmembers() if m.name.removeprefix(f"{root}/").startswith(_CONVERTER_FILES)]
        if not wanted:
            raise NotFoundError(f"expected llama.cpp's convert_hf_to_gguf.py inside {sdist}; it holds none")
        for member in wanted:
            member.name = member.name.removeprefix(f"{root}/vendor/llama.cpp/")
        archive.extractall(partial, members=wanted, filter="data")
    try:
        os.replace(partial, target)
    except OSError:  # another process unpacked the same files first
        pass


def _convert(converter: Path, hf_folder: Path, out: Path, outtype: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # use the `gguf-py` beside the converter
    command = [sys.executable, "-m", "keel.train._gguf_convert", str(converter), str(hf_folder),
               "--outfile", str(out), "--outtype", outtype]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise InputError(
            f"expected llama.cpp's converter to write {out.name}; it failed (exit {done.returncode}):\n{tail}",
            hint="the model's architecture or tokenizer may be one llama.cpp does not support",
        )


def quantize_gguf(source: Path, target: Path, quant: GgufQuant, threads: int | None = None) -> None:
    """Quantise a float GGUF file to q8_0 or q4_k_m with llama.cpp's quantiser (`llama_model_quantize`)."""
    llama_cpp = require_llama_cpp()
    # llama.cpp logs each tensor through llama-cpp-python's logger, which prints everything until a
    # `Llama(verbose=False)` raises its level; raised here too, so `--json` output stays JSON.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, _FTYPES[quant])
    params.nthread = threads or 0
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0 or not target.is_file():
        raise InputError(f"expected llama.cpp to quantise {source.name} to {quant}; it returned {status}")


def _token_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """The ids `measure` scores for each text (truncated alike), so both sides score the same tokens."""
    ids = [list(tokenizer(text)["input_ids"])[:_MAX_LENGTH] for text in texts]
    return [row for row in ids if len(row) >= 2]


def gguf_perplexity(path: Path, token_ids: Sequence[Sequence[int]], *, threads: int | None = None) -> Measurement:
    """Perplexity of a GGUF model over the given token ids, computed by llama.cpp, and tokens scored per second."""
    import numpy as np

    llama_cpp = require_llama_cpp()
    longest = max((len(row) for row in token_ids), default=2)
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=max(longest, 16), n_batch=max(longest, 16), logits_all=True,
        n_threads=threads, n_threads_batch=threads, verbose=False,
    )  # fmt: skip
    total, count = 0.0, 0
    started = time.perf_counter()
    try:
        for row in token_ids:
            llm.reset()
            llm.eval(list(row))
            logits = np.asarray(llm.scores[: len(row) - 1], dtype=np.float64)
            peak = logits.max(axis=1, keepdims=True)
            log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
            targets = np.asarray(row[1:])
            total += float((log_norm - logits[np.arange(len(targets)), targets]).sum())
            count += len(targets)
    finally:
        llm.close()
    seconds = time.perf_counter() - started
    if count == 0:
        return Measurement(math.nan, 0, 0.0)
    return Measurement(math.exp(total / count), count, count / seconds if seconds > 0 else 0.0)


def _merged(store: Store, ref: str) -> tuple[ModelVersion, Any, Any]:
    """The parent version and its model with any PEFT adapter merged into the base weights."""
    from keel.registry import get_model

    version = get_model(store, ref, with_files=False)
    model, tokenizer = load_model(store, version.ref, dtype="float32")
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return version, model, tokenizer


def export_gguf(
    store: Store,
    ref: str,
    quant: GgufQuant = "q8_0",
    name: str | None = None,
    *,
    dataset: str | None = None,
    max_ppl_increase: float | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> OptimizeResult:
    """Convert a transformers or PEFT model version (adapters merged) to one GGUF file and register it.

    Args:
        store: The workspace store.
        ref: The parent model version.
        quant: `f16` (the converter's output), or `q8_0` / `q4_k_m` (llama.cpp's quantiser on an f32 file).
        name: The name to register under (default `<parent>-gguf`).
        dataset: A dataset version whose texts measure perplexity (default: Python docstrings).
        max_ppl_increase: Refuse the file if its perplexity is more than this share above the parent's.
        threads: llama.cpp threads for quantising and scoring (default: llama.cpp's choice).
        progress: Called with the name of each stage as it starts.

    Returns:
        The registered GGUF version and its comparison with the parent (perplexity, size, scoring speed).

    Examples:
        >>> export_gguf(store, "assistant@v2", "q4_k_m")  # doctest: +SKIP
    """
    if quant not in get_args(GgufQuant):
        raise InputError(f"expected --quant to be one of {', '.join(get_args(GgufQuant))}; got {shown(quant)}")
    require_llama_cpp()
    say = progress or (lambda stage: None)
    converter = find_converter(store.settings.llama_cpp_source, store.settings.state_dir / "cache" / "llama.cpp")
    texts = heldout_texts(store, dataset)
    say("loading and merging the model")
    parent, model, tokenizer = _merged(store, ref)
    params = {"parent": parent.ref, "quantization": quant, "llama_cpp_python": _llama_cpp_version()}
    with (
        start_run("export", params, inputs=[parent.node], store=store) as run,
        tempfile.TemporaryDirectory(prefix="keel-gguf-") as tmp,
    ):
        hf, out = Path(tmp) / "hf", Path(tmp) / "out"
        with quiet_loading():
            model.save_pretrained(hf)
            tokenizer.save_pretrained(hf)
        say("measuring the parent")
        before = _metrics(measure(model, tokenizer, texts, max_length=_MAX_LENGTH), folder_size(hf))
        ids = _token_ids(tokenizer, texts)
        del model
        out.mkdir()
        target = out / f"model.{quant}.gguf"
        say("converting with llama.cpp's convert_hf_to_gguf.py")
        if quant == "f16":
            _convert(converter, hf, target, "f16")
        else:
            float_file = Path(tmp) / "model.f32.gguf"
            _convert(converter, hf, float_file, "f32")
            say(f"quantising to {quant} with llama.cpp")
            quantize_gguf(float_file, target, quant, threads)
            float_file.unlink()
        say("measuring the GGUF file with llama.cpp")
        after = _metrics(gguf_perplexity(target, ids, threads=threads), folder_size(out))
        run.log_metrics({**{f"parent_{k}": v for k, v in before.items()}, **after})
        _check_quality(before, after, max_ppl_increase, f"GGUF {quant}")
        comparison = _comparison(before, after)
        details = {
            "parent_metrics": before, "metrics": after, **comparison, "quantization": quant, "file": target.name,
            "converter": f"llama.cpp convert_hf_to_gguf.py from llama-cpp-python {_llama_cpp_version()}",
            "perplexity_note": "parent scored by transformers, GGUF by llama.cpp, on the same token ids",
        }  # fmt: skip
        version = _register(
            store, run, name or f"{parent.name}-gguf", out, parent, f"GGUF export ({quant})", details, "exported_to"
        )
    return OptimizeResult(version, parent.ref, f"gguf-{quant}", before, after, {"quantization": quant, **comparison})
