"""The llama.cpp backend behind the gateway, through the official `openai` client, against the transformers one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from tests.conftest import DEMO_ANSWERS, TunedTiny

from keel.core.errors import InputError
from keel.core.settings import load_settings
from keel.govern import create_key
from keel.serve import Gateway, LlamaCppBackend, ServeSettings, create_app, create_deployment, serve_in_thread
from keel.store import Store, open_store
from keel.train import load_model


@pytest.fixture
def tuned_store(tuned_tiny: TunedTiny) -> Iterator[Store]:
    store = open_store(load_settings(tuned_tiny.workspace))
    yield store
    store.close()


def _agreement(tokenizer: Any, a: str, b: str) -> float:
    """Share of token positions where two answers agree (the longer answer's length is the denominator)."""
    x, y = tokenizer(a)["input_ids"], tokenizer(b)["input_ids"]
    same = sum(1 for i, j in zip(x, y, strict=False) if i == j)
    return same / max(len(x), len(y), 1)


def test_gguf_answers_the_demo_questions_like_transformers(
    tuned_tiny: TunedTiny, tuned_store: Store, openai_client: Callable[[str, str], Any]
) -> None:
    import torch

    torch.set_num_threads(1)
    create_deployment(tuned_store, "hf", tuned_tiny.merged, route={"backend": "transformers"})
    create_deployment(tuned_store, "edge", tuned_tiny.gguf_f16, route={"backend": "llama.cpp"})
    key = create_key(tuned_store, "gguf-tests").secret
    _, tokenizer = load_model(tuned_store, tuned_tiny.merged)
    gateway = Gateway(tuned_store, ServeSettings(reload_interval_s=0.1))
    with serve_in_thread(create_app(gateway)) as url:
        client = openai_client(url, key)
        agreements = []
        for question in DEMO_ANSWERS:
            messages = [{"role": "user", "content": question}]
            answers = {
                name: client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=16)
                for name in ("hf", "edge")
            }
            texts = {name: a.choices[0].message.content or "" for name, a in answers.items()}
            assert texts["edge"].strip(), question
            assert answers["edge"].usage.prompt_tokens == answers["hf"].usage.prompt_tokens  # same prompt tokens
            chunks = list(
                client.chat.completions.create(
                    model="edge", messages=messages, temperature=0, max_tokens=16, stream=True,
                    stream_options={"include_usage": True},
                )
            )  # fmt: skip
            streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert streamed == texts["edge"] and len([c for c in chunks if c.choices]) > 2
            assert chunks[-1].usage.completion_tokens == answers["edge"].usage.completion_tokens
            agreements.append(_agreement(tokenizer, texts["hf"], texts["edge"]))
    # Greedy decoding of f16 weights against float32: the same answer to every demo question.
    assert agreements == [1.0] * len(DEMO_ANSWERS), agreements


def test_per_request_sampling_stop_and_refusals(tuned_tiny: TunedTiny, tuned_store: Store) -> None:
    create_deployment(tuned_store, "edge-2", tuned_tiny.gguf_f16, route={"backend": "llama.cpp"})
    create_deployment(tuned_store, "edge-3", tuned_tiny.gguf_f16, route={"backend": "llama.cpp", "weight": 50})
    key = create_key(tuned_store, "gguf-sampling").secret
    gateway = Gateway(tuned_store, ServeSettings(reload_interval_s=0.1))
    question = next(iter(DEMO_ANSWERS))
    with serve_in_thread(create_app(gateway)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)

        def ask(**params: Any) -> str:
            reply = client.chat.completions.create(
                model="edge-2", messages=[{"role": "user", "content": question}], max_tokens=24, **params
            )
            return reply.choices[0].message.content or ""

        hot = [ask(temperature=1.5, seed=s) for s in (7, 7, 8, 9, 10)]
        assert hot[0] == hot[1] and len(set(hot)) > 1  # a seed repeats its sample; other seeds differ
        greedy = ask(temperature=0)
        word = greedy.split()[1]
        assert word not in ask(temperature=0, stop=[word]) and ask(temperature=0, stop=[word]) in greedy
        completion = client.completions.create(model="edge-2", prompt=question, max_tokens=5, temperature=0)
        assert completion.usage.completion_tokens <= 5 and completion.choices[0].text
        with pytest.raises(openai.BadRequestError, match="llama.cpp"):
            ask(temperature=0, logprobs=True)
        client.completions.create(model="edge-3", prompt=question, max_tokens=2)
        client.close()
        backends = list(gateway._backends.values())
    assert len(backends) == 1 and isinstance(backends[0], LlamaCppBackend)  # two deployments, one model loaded


def test_llama_cpp_backend_needs_a_gguf_version(tuned_tiny: TunedTiny, tuned_store: Store) -> None:
    with pytest.raises(InputError, match="export it first"):
        create_deployment(tuned_store, "wrong", tuned_tiny.merged, route={"backend": "llama.cpp"})
