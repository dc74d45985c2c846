"""A real OpenAI-compatible HTTP server on 127.0.0.1 with canned replies: the edge of the world for evals."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from evals_fakes import FakeOpenAI
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def _app(fake: FakeOpenAI) -> Any:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        reply = fake.reply(body)
        if isinstance(reply, int):
            return JSONResponse({"error": {"message": "canned failure", "type": "server_error"}}, status_code=reply)
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(fake.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": fake.served.get(body["model"], body["model"]),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    return app


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    import uvicorn

    fake = FakeOpenAI()
    server = uvicorn.Server(uvicorn.Config(_app(fake), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake OpenAI server did not start within 30 s")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    yield fake
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fake_openai(openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The module's server with its canned replies reset for this test."""
    openai_server.scripts.clear()
    openai_server.answers.clear()
    openai_server.default.clear()
    openai_server.requests.clear()
    openai_server.served.clear()
    yield openai_server


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> None:
    """Two cores are shared by many processes; torch code under test uses one thread."""
    import torch

    torch.set_num_threads(1)
