"""A tiny Llama-architecture model and byte-level BPE tokenizer built from text in about a minute.

It exists so tests and demos exercise the real `from_pretrained` / Trainer paths offline: its
text is degenerate, but its loss curve is real. Texts come from a list or a dataset version.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from keel.core.errors import InputError
from keel.registry import ModelInfo, ModelVersion, register_model, start_run
from keel.store import Store, add_edge
from keel.train._data import dataset_texts
from keel.train._threads import torch_threads

__all__ = ["TINY_CHAT_TEMPLATE", "TinyModelOptions", "new_tiny_model"]

# A plain-text chat template, so chat-formatted datasets work with a tokenizer that has no special tokens
# beyond BOS/EOS. Generation prompts end with "<|assistant|>\n".
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_SPECIAL = ["<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]


@dataclass(frozen=True)
class TinyModelOptions:
    """Size and training budget of a tiny model.

    Attributes:
        vocab_size: BPE vocabulary size (at most; small corpora yield fewer merges).
        hidden_size: Width of the model.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        seq_len: Training sequence length and the model's context.
        steps: Optimiser steps of pre-training on the texts (0 leaves random weights).
        batch_size: Sequences per step.
        learning_rate: AdamW learning rate.
        seed: Random seed.
        threads: torch CPU threads of pre-training (None: torch's default as far as cores are idle).
    """

    vocab_size: int = 4096
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    seq_len: int = 128
    steps: int = 60
    batch_size: int = 8
    learning_rate: float = 3e-3
    seed: int = 0
    threads: int | None = None


def _tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=_SPECIAL, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def _pretrain(model: Any, tokenizer: Any, texts: Sequence[str], options: TinyModelOptions, run: Any) -> float:
    import torch

    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    block = options.seq_len
    if len(ids) < block + 1:
        ids = ids * (block // max(len(ids), 1) + 2)
    data = torch.tensor(ids[: (len(ids) // block) * block]).view(-1, block)
    generator = torch.Generator().manual_seed(options.seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.learning_rate)
    model.train()
    loss_value = float("nan")
    for step in range(options.steps):
        rows = torch.randint(0, data.shape[0], (options.batch_size,), generator=generator)
        batch = data[rows]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        loss_value = float(loss.item())
        run.log_metric("loss", loss_value, step=step + 1)
    model.eval()
    return loss_value


def new_tiny_model(
    store: Store,
    name: str,
    texts_or_dataset_ref: Sequence[str] | str,
    options: TinyModelOptions | None = None,
) -> ModelVersion:
    """Train a byte-level BPE tokenizer and a tiny LlamaForCausalLM on text and register it.

    Args:
        store: The workspace store.
        name: The model name to register under.
        texts_or_dataset_ref: Texts, or a dataset version ref (`docs@v2`) whose `text` (or chat /
            prompt-completion) columns supply them.
        options: Sizes and training budget (defaults: ~3.7M parameters with a 4k vocabulary, 60 steps).

    Returns:
        The registered model version, linked to its run and (when given) dataset version.

    Examples:
        >>> new_tiny_model(store, "tiny", ["hello world"] * 100)  # doctest: +SKIP
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    options = options or TinyModelOptions()
    inputs: list[str] = []
    if isinstance(texts_or_dataset_ref, str):
        texts, node = dataset_texts(store, texts_or_dataset_ref)
        inputs.append(node)
    else:
        texts = [t for t in texts_or_dataset_ref if t]
    if not texts:
        raise InputError("expected some text to build a tiny model from; got none")
    torch.manual_seed(options.seed)
    tokenizer = _tokenizer(texts, options.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=options.hidden_size,
        intermediate_size=options.hidden_size * 2,
        num_hidden_layers=options.num_layers,
        num_attention_heads=options.num_heads,
        num_key_value_heads=options.num_heads,
        max_position_embeddings=max(options.seq_len, 512),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    params = {"tiny": asdict(options), "texts": len(texts)}
    with start_run("train", params, name=f"new-tiny {name}", inputs=inputs, seed=options.seed, store=store) as run:
        with torch_threads(options.threads):
            loss = _pretrain(model, tokenizer, texts, options, run) if options.steps else None
        with tempfile.TemporaryDirectory(prefix="keel-tiny-") as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            info = ModelInfo(
                description="A tiny Llama-architecture model and BPE tokenizer trained by Keel for tests and demos.",
                limitations="Generates degenerate text; use it to exercise pipelines, not to read its output.",
                extra={"parameters": sum(p.numel() for p in model.parameters()), "final_loss": loss},
            )
            version, _ = register_model(store, name, Path(tmp), run_id=run.id, info=info)
    if inputs:
        with store.db.write() as conn:
            for node in inputs:
                add_edge(conn, node, version.node, "trained_on", at=store.clock())
    return version
