"""Servers for gateway tests: uvicorn on 127.0.0.1 in a thread, the stub upstream, a registered model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from keel.govern import create_key
from keel.registry import register_model
from keel.serve import Gateway, ServeSettings, create_app, serve_in_thread, stub_upstream_app
from keel.store import Store


@pytest.fixture(autouse=True)
def _cheap_keys(cheap_key_hashing: None) -> None:
    """Keys here are set-up material: hashed cheaply (tests/conftest.py, `cheap_key_hashing`)."""


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The stub OpenAI-compatible server (the "remote" model), as a base URL."""
    with serve_in_thread(stub_upstream_app()) as url:
        yield url


@pytest.fixture
def chat_versions(store: Store, tmp_path: Path) -> tuple[str, str]:
    """Two registered versions of model `chat` (their files are placeholders; the upstream answers)."""
    refs = []
    for i in (1, 2):
        folder = tmp_path / f"chat{i}"
        folder.mkdir()
        (folder / "config.json").write_text(f'{{"version": {i}}}')
        refs.append(register_model(store, "chat", folder)[0].ref)
    return refs[0], refs[1]


GatewayFactory = Callable[..., Any]


@pytest.fixture
def gateway_server(store: Store) -> Iterator[Callable[..., Any]]:
    """Start a gateway on uvicorn: `with gateway_server(**settings) as (url, gateway): ...`."""

    @contextmanager
    def start(**settings: Any) -> Iterator[tuple[str, Gateway]]:
        gateway = Gateway(store, ServeSettings(reload_interval_s=0.1, **settings))
        with serve_in_thread(create_app(gateway)) as url:
            yield url, gateway

    yield start


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama (context 256) and a BPE tokenizer trained here, saved like any HF model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<pad>", "</s>"])
    tokenizer.train_from_iterator(["hello world, the quick brown fox jumps over the lazy dog"] * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")
    config = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture
def api_key(store: Store) -> str:
    """A key for every deployment, without rate limit."""
    return create_key(store, "tests").secret


@pytest.fixture
def openai_client() -> Iterator[Callable[[str, str], Any]]:
    """`openai_client(url, key)`: the official client on the gateway, closed after the test."""
    import openai

    made: list[openai.OpenAI] = []

    def make(url: str, key: str) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0))
        return made[-1]

    yield make
    for client in made:
        client.close()
