"""A stand-in OpenAI-compatible server that answers at once: the "remote model" of tests and benchmarks.

Chat and completions echo `"<model>: <last prompt>"`, embeddings return a fixed small vector,
and streams send the answer word by word. Any path under `/fail/` answers HTTP 503, so one
server plays both a healthy upstream and a broken one. Under `/flaky/P/` exactly P percent of
requests, spread evenly (the 5th, 10th, … for 20), answer HTTP 500 (not retried by the gateway,
unlike 503) and the rest as usual: a canary that fails some of its traffic. A prompt containing `stub-500` gets HTTP
500 (a request the server cannot handle, while it stays healthy). `app.state.requests` counts
the requests it received. It is not a model and knows no Keel.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["stub_upstream_app"]


def _prompt(body: dict[str, Any]) -> str:
    if "messages" in body:
        content = body["messages"][-1].get("content", "") if body["messages"] else ""
        return content if isinstance(content, str) else ""
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else ""


def _usage(prompt: str, answer: str) -> dict[str, int]:
    tokens_in, tokens_out = len(prompt.split()) + 1, len(answer.split())
    return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}


async def _generate(request: Request) -> Response:
    request.app.state.requests += 1
    body = json.loads(await request.body())
    chat = request.url.path.endswith("/chat/completions")
    prompt = _prompt(body)
    if "stub-500" in prompt:
        return JSONResponse({"error": {"message": "stub cannot handle this prompt", "type": "api_error"}}, 500)
    answer = f"{body.get('model')}: {prompt}"
    base = {"id": "cmpl-stub", "created": int(time.time()), "model": body.get("model")}
    if body.get("stream"):
        return StreamingResponse(_chunks(base, chat, prompt, answer), media_type="text/event-stream")
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "finish_reason": "stop",
        }
        return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": _usage(prompt, answer)})
    choice = {"index": 0, "text": answer, "finish_reason": "stop", "logprobs": None}
    return JSONResponse({**base, "object": "text_completion", "choices": [choice], "usage": _usage(prompt, answer)})


async def _chunks(base: dict[str, Any], chat: bool, prompt: str, answer: str) -> Any:
    kind = "chat.completion.chunk" if chat else "text_completion"
    words = answer.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        part: dict[str, Any] = {"delta": {"content": piece}} if chat else {"text": piece}
        chunk = {**base, "object": kind, "choices": [{"index": 0, **part, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
    last = {**base, "object": kind, "choices": [{"index": 0, **end, "finish_reason": "stop"}]}
    yield f"data: {json.dumps(last)}\n\n".encode()
    yield f"data: {json.dumps({**base, 'object': kind, 'choices': [], 'usage': _usage(prompt, answer)})}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def _embeddings(request: Request) -> Response:
    request.app.state.requests += 1
    body = json.loads(await request.body())
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if inputs and all(isinstance(t, int) for t in inputs):  # one prompt as token ids
        inputs = [inputs]
    data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(inputs)]
    tokens = sum(len(str(t).split()) for t in inputs)
    return JSONResponse({"object": "list", "model": body.get("model"), "data": data,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip


async def _flaky(request: Request) -> Response:
    percent = int(request.path_params["percent"])
    state = request.app.state
    state.flaky_seen += 1
    # The n-th request fails when the running count of failures owed, n * P // 100, steps up.
    if state.flaky_seen * percent // 100 > (state.flaky_seen - 1) * percent // 100:
        state.requests += 1
        return JSONResponse({"error": {"message": "stub failed this request", "type": "api_error"}}, 500)
    if request.path_params["rest"].endswith("embeddings"):
        return await _embeddings(request)
    return await _generate(request)


async def _fail(request: Request) -> Response:
    request.app.state.requests += 1
    return JSONResponse({"error": {"message": "stub is unavailable", "type": "api_error"}}, status_code=503)


def stub_upstream_app() -> Starlette:
    """An OpenAI-compatible stub server as an ASGI app (serve it with uvicorn, or call it in process).

    Examples:
        >>> app = stub_upstream_app()
        >>> sorted(r.path for r in app.routes)[:2]
        ['/fail/{rest:path}', '/v1/chat/completions']
    """
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", _generate, methods=["POST"]),
            Route("/v1/completions", _generate, methods=["POST"]),
            Route("/v1/embeddings", _embeddings, methods=["POST"]),
            Route("/fail/{rest:path}", _fail, methods=["POST"]),
            Route("/flaky/{percent:int}/{rest:path}", _flaky, methods=["POST"]),
        ]
    )
    app.state.requests = 0
    app.state.flaky_seen = 0
    return app
