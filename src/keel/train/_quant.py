"""int8 linear layers for CPU inference: int8 weights (per output channel) run by torch's dynamic int8 kernels.

Saved as int8 tensors plus per-channel scales; loaded into `torch.ao` dynamically quantised Linear
modules holding exactly those int8 weights, so inference runs int8 matrix products (fbgemm) instead of
dequantising to float32 at load. Dynamic quantisation also rounds each layer's input to 8 bits, one scale
per call; `quantize_dynamic` as shipped uses one scale for every token of a prompt, and the few tokens with
huge activations (SmolLM2's first token) then crush the rest: perplexity 18.1 → 57.8 (7-bit, torch's
default) or 33.1 (8-bit) on 4 held-out texts here. `Int8Linear` instead groups a call's rows by the
magnitude of their activations (within 2× of each other) and quantises each group with its own scale:
18.1 → 18.2 (+0.6%, measured with one scale per row). A decoding step at batch 1 is one row, one call.
Embeddings and the LM head stay float32. Versions saved before (format v1) still load dequantised, the
way their recorded measurements were taken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keel.core.errors import IntegrityError

__all__ = ["QUANT_FORMAT", "load_int8", "quantize_int8", "save_int8"]

QUANT_FORMAT = "keel-int8-dynamic-v2"
_V1 = "keel-int8-weight-only-v1"  # weights dequantised to float32 at load
_WEIGHTS = "model.int8.safetensors"


def _quantize(weight: Any) -> tuple[Any, Any]:
    import torch

    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale.to(torch.float32)


def _vnni() -> bool:
    """Whether fbgemm's int8 kernels can take full 8-bit activations here (VNNI: no 16-bit saturation)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _int8_module() -> Any:
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    class Int8Linear(DynamicLinear):
        """A dynamically quantised Linear whose activations get one scale per group of similar rows."""

        reduce_range = not _vnni()  # 7-bit activations where AVX2 kernels could saturate

        def forward(self, x: Any) -> Any:
            # One intra-op thread for the int8 kernel: with 2 threads fbgemm's dynamic linear took 643 µs of
            # CPU for one 1536→576 row here, against 22 µs with 1 thread and 46 µs for float32 (torch 2.13).
            # The setting is process-wide, so it is restored at once.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._forward(x)
            finally:
                torch.set_num_threads(threads)

        def _forward(self, x: Any) -> Any:
            packed = self._packed_params._packed_params
            flat = x.reshape(-1, x.shape[-1])
            if flat.shape[0] == 1:
                return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=self.reduce_range).to(x.dtype)
            # Rows whose largest activation is within 2x of each other share a scale (one int8 call per group).
            group = torch.floor(torch.log2(flat.abs().amax(dim=1).clamp(min=1e-12)))
            out = torch.empty(flat.shape[0], self.out_features, dtype=x.dtype)
            for value in torch.unique(group):
                rows = (group == value).nonzero().squeeze(1)
                found = torch.ops.quantized.linear_dynamic(flat[rows], packed, reduce_range=self.reduce_range)
                out[rows] = found.to(x.dtype)
            return out.reshape(*x.shape[:-1], self.out_features)

    return Int8Linear


def _quiet() -> Any:
    import contextlib
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    # torch 2.13 deprecates quantised tensor creation (the int8 weights are one); the kernels stay supported.
    warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*", category=UserWarning)
    return stack


def _int8_linear(q: Any, scale: Any, bias: Any) -> Any:
    """An `Int8Linear` holding exactly the int8 weights `q` (out × in) with per-row `scale`."""
    import torch

    with _quiet():
        module = _int8_module()(q.shape[1], q.shape[0], bias_=bias is not None, dtype=torch.qint8)
        zero = torch.zeros(q.shape[0], dtype=torch.long)
        weight = torch._make_per_channel_quantized_tensor(q, scale.to(torch.float64), zero, 0)
        module.set_weight_bias(weight, None if bias is None else bias.detach().float())
    return module


def _swap(model: Any, name: str, module: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def quantize_int8(model: Any) -> list[str]:
    """Replace every linear layer except the LM head by an int8 `Int8Linear`, in place.

    Returns the names of the quantised layers.
    """
    import torch

    output = model.get_output_embeddings()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not output]
    with torch.no_grad():
        for name in names:
            module = model.get_submodule(name)
            q, scale = _quantize(module.weight.float())
            _swap(model, name, _int8_linear(q, scale, module.bias))
    return names


def save_int8(model: Any, tokenizer: Any, folder: Path, layers: list[str]) -> None:
    """Write config, tokenizer, the int8 weights + scales of `layers` (as `quantize_int8` left them), the rest as is."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    prefixes = tuple(f"{name}." for name in layers)
    tensors: dict[str, Any] = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        if key.startswith(prefixes) or not hasattr(tensor, "data_ptr"):
            continue
        pointer = tensor.data_ptr()
        if pointer in seen:  # a tied weight (the LM head sharing the embeddings) is stored once
            continue
        seen.add(pointer)
        tensors[key] = tensor.contiguous()
    for name in layers:
        module = model.get_submodule(name)
        with _quiet():
            weight, bias = module.weight(), module.bias()
        tensors[f"{name}.weight_int8"] = weight.int_repr().contiguous()
        tensors[f"{name}.weight_scale"] = weight.q_per_channel_scales().to(dtype=_float32())
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().contiguous()
    save_file(tensors, str(folder / _WEIGHTS), metadata={"format": QUANT_FORMAT})
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    marker = {
        "format": QUANT_FORMAT,
        "weights": _WEIGHTS,
        "scheme": "symmetric int8 weights per output channel; int8 activations per group of similar rows",
        "layers": layers,
    }
    (folder / "keel_quantization.json").write_text(json.dumps(marker, indent=2))


def _float32() -> Any:
    import torch

    return torch.float32


def load_int8(folder: Path) -> tuple[Any, Any]:
    """Rebuild a model saved by `save_int8` with int8 `Int8Linear` layers (a v1 folder: dequantised), in eval mode."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    marker = json.loads((folder / "keel_quantization.json").read_text())
    config = AutoConfig.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    stored = load_file(str(folder / marker["weights"]))
    dynamic = marker["format"] != _V1
    state: dict[str, Any] = {}
    for key, tensor in stored.items():
        if key.endswith("_int8") and not dynamic:
            base = key[: -len("_int8")]
            state[base] = tensor.to(torch.float32) * stored[f"{base}_scale"][:, None]
        elif not key.endswith(("_int8", "_scale")):
            state[key] = tensor
    missing, unexpected = model.load_state_dict(state, strict=False)
    model.tie_weights()
    expected = _tied_names(model)  # a tied LM head is stored once, under the embeddings
    if dynamic:
        expected |= {f"{name}.{part}" for name in marker["layers"] for part in ("weight", "bias")}
        with torch.no_grad():
            for name in marker["layers"]:
                bias = stored.get(f"{name}.bias")
                _swap(model, name, _int8_linear(stored[f"{name}.weight_int8"], stored[f"{name}.weight_scale"], bias))
    untied = set(missing) - expected
    if unexpected or untied:
        raise IntegrityError(
            f"the int8 weights in {folder} do not match its config: missing {sorted(untied)}, unexpected {unexpected}"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def _tied_names(model: Any) -> set[str]:
    output = model.get_output_embeddings()
    inputs = model.get_input_embeddings()
    if output is None or inputs is None or output.weight is not inputs.weight:
        return set()
    return {f"{name}.weight" for name, module in model.named_modules() if module is output}
