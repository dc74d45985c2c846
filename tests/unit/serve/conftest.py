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
