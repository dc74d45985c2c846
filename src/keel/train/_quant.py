"""Weight-only int8 quantisation of a causal LM's linear layers, saved as int8 tensors plus per-channel scales.

Why hand-written: torch's `quantize_dynamic` also quantises activations per tensor, which raised
SmolLM2-135M's perplexity from ~25 to ~115 here (and `torch.ao.quantization` is deprecated), and
torchao is not installed. Symmetric per-output-channel int8 weights with embeddings and the LM head
in float32 moved it by under 0.1%. On this CPU no int8 kernel beat float32 matmul (measured:
`_weight_int8pack_mm` 2-3x slower), so weights are dequantised once at load: the gain is a model
about 2.5x smaller on disk and in transfer, at float32 speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keel.core.errors import IntegrityError

__all__ = ["QUANT_FORMAT", "load_int8", "quantize_int8", "save_int8"]

QUANT_FORMAT = "keel-int8-weight-only-v1"
_WEIGHTS = "model.int8.safetensors"


def _quantize(weight: Any) -> tuple[Any, Any]:
    import torch

    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale.to(torch.float32)


def quantize_int8(model: Any) -> list[str]:
    """Round every linear layer except the LM head to int8 per output channel, in place.

    The model keeps float32 weights holding exactly the dequantised values, so it can be measured
    before it is saved. Returns the names of the quantised layers.
    """
    import torch

    output = model.get_output_embeddings()
    names = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and module is not output:
                q, scale = _quantize(module.weight.float())
                module.weight.copy_((q.float() * scale[:, None]).to(module.weight.dtype))
                names.append(name)
    return names


def save_int8(model: Any, tokenizer: Any, folder: Path, layers: list[str]) -> None:
    """Write config, tokenizer, int8 weights + scales of `layers`, other tensors as they are, and a marker."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    quantised = {f"{name}.weight" for name in layers}
    tensors: dict[str, Any] = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        pointer = tensor.data_ptr()
        if pointer in seen:  # a tied weight (the LM head sharing the embeddings) is stored once
            continue
        seen.add(pointer)
        if key in quantised:
            q, scale = _quantize(tensor.float())
            tensors[f"{key}_int8"], tensors[f"{key}_scale"] = q, scale
        else:
            tensors[key] = tensor.contiguous()
    save_file(tensors, str(folder / _WEIGHTS), metadata={"format": QUANT_FORMAT})
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    marker = {
        "format": QUANT_FORMAT,
        "weights": _WEIGHTS,
        "scheme": "symmetric int8, per output channel",
        "layers": layers,
    }
    (folder / "keel_quantization.json").write_text(json.dumps(marker, indent=2))


def load_int8(folder: Path) -> tuple[Any, Any]:
    """Rebuild a model saved by `save_int8`: weights dequantised to float32, in eval mode."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    marker = json.loads((folder / "keel_quantization.json").read_text())
    config = AutoConfig.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    stored = load_file(str(folder / marker["weights"]))
    state: dict[str, Any] = {}
    for key, tensor in stored.items():
        if key.endswith("_int8"):
            base = key[: -len("_int8")]
            state[base] = tensor.to(torch.float32) * stored[f"{base}_scale"][:, None]
        elif not key.endswith("_scale"):
            state[key] = tensor
    missing, unexpected = model.load_state_dict(state, strict=False)
    model.tie_weights()
    untied = set(missing) - _tied_names(model)  # a tied LM head is stored once, under the embeddings
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
