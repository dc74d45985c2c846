"""The HTTP face of the gateway: OpenAI's routes, health, readiness and Prometheus metrics.

Handlers parse JSON themselves (no pydantic request models): the body is forwarded almost as is,
and validating every OpenAI field here would cost time on each request and lag behind the API.
One handler turns every gateway, auth and rate-limit error into OpenAI's error document.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from keel.govern import AuthenticationError, PermissionDeniedError
from keel.monitor import storable
from keel.serve._backends import Operation
from keel.serve._errors import BadRequestError, GatewayError, ModelNotFoundError, RateLimitedError, error_body
from keel.serve._gateway import Gateway, RequestContext

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _describe(exc: Exception) -> tuple[int, str, str | None]:
    """HTTP status, OpenAI error type and code of any error a request can end with."""
    if isinstance(exc, AuthenticationError):
        return 401, "invalid_request_error", "invalid_api_key"
    if isinstance(exc, PermissionDeniedError):
        return 403, "permission_denied", "permission_denied"
    if isinstance(exc, GatewayError):
        return exc.status, exc.type, exc.code
    return 500, "api_error", None


def _error_response(exc: Exception) -> JSONResponse:
    status, type_, code = _describe(exc)
    message = str(exc) if status != 500 or isinstance(exc, GatewayError) else "internal error in the gateway"
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitedError):
        headers["retry-after"] = f"{max(1, round(exc.retry_after))}"
    param = exc.param if isinstance(exc, GatewayError) else None
    return JSONResponse(error_body(message, type_, code, param), status_code=status, headers=headers)


def _fail(ctx: RequestContext, exc: Exception) -> None:
    ctx.status, ctx.error, ctx.error_code = _describe(exc)


def _cancelled(ctx: RequestContext) -> None:
    """The client went away before the answer was complete (499, as nginx logs it)."""
    ctx.status, ctx.error = 499, "cancelled"


async def _finish(gateway: Gateway, ctx: RequestContext) -> None:
    if ctx.error != "cancelled":
        await gateway.finish(ctx)
        return
    # Shielded (only then: a scope costs ~20 µs): a request cancelled because its client left must still be recorded.
    with anyio.CancelScope(shield=True):
        await gateway.finish(ctx)


async def _parse(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise BadRequestError("expected a JSON object as the request body; could not parse it") from None
    if not isinstance(body, dict):
        raise BadRequestError(f"expected a JSON object as the request body; got {type(body).__name__}")
    return body


def _check(operation: Operation, body: dict[str, Any]) -> None:
    if operation == "chat" and not isinstance(body.get("messages"), list):
        raise BadRequestError("expected `messages` to be a list of chat messages", param="messages")
    if operation == "completion" and "prompt" not in body:
        raise BadRequestError("expected a `prompt`", param="prompt")
    if operation == "embeddings" and "input" not in body:
        raise BadRequestError("expected an `input`", param="input")


async def _serve(gateway: Gateway, request: Request, operation: Operation) -> Response:
    ctx = RequestContext(operation)
    streaming = False
    try:
        await gateway.authenticate(ctx, request.headers)
        body = await _parse(request)
        _check(operation, body)
        deployment, body = await gateway.admit(ctx, body, request.headers)
        if body.get("stream") and operation != "embeddings":
            streaming = True
            return StreamingResponse(_streamed(gateway, ctx, deployment, body), media_type="text/event-stream")
        answer = await gateway.complete(ctx, deployment, body)
        return JSONResponse(answer, headers={"x-keel-model-version": ctx.route.model if ctx.route else ""})
    except (GatewayError, AuthenticationError, PermissionDeniedError) as exc:
        _fail(ctx, exc)
        return _error_response(exc)
    except Exception as exc:  # request boundary: answer 500 in OpenAI's shape, and log the bug
        log.exception("unexpected error serving %s", operation)
        _fail(ctx, exc)
        return _error_response(exc)
    except asyncio.CancelledError:
        _cancelled(ctx)
        raise
    finally:
        if not streaming:
            await _finish(gateway, ctx)


async def _streamed(
    gateway: Gateway, ctx: RequestContext, deployment: Any, body: dict[str, Any]
) -> AsyncIterator[bytes]:
    try:
        async for piece in gateway.stream(ctx, deployment, body):
            yield piece
    except (GatewayError, AuthenticationError, PermissionDeniedError) as exc:
        _fail(ctx, exc)
        # Headers are gone once a stream starts: report the error as a final event, as OpenAI does.
        yield b"data: " + json.dumps(error_body(str(exc), _describe(exc)[1], _describe(exc)[2])).encode() + b"\n\n"
    except Exception as exc:  # request boundary
        log.exception("unexpected error streaming")
        _fail(ctx, exc)
        yield b"data: " + json.dumps(error_body("internal error in the gateway", "api_error")).encode() + b"\n\n"
    except (asyncio.CancelledError, GeneratorExit):  # the client disconnected mid-stream
        _cancelled(ctx)
        raise
    finally:
        await _finish(gateway, ctx)


def create_app(gateway: Gateway) -> FastAPI:
    """The gateway's ASGI app; its lifespan starts and closes `gateway` (flushing traces).

    Args:
        gateway: The gateway state and logic.

    Returns:
        A FastAPI app; serve it with uvicorn (`keel serve` does).

    Examples:
        >>> app = create_app(Gateway(open_store()))  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = FastAPI(title="Keel gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _serve(gateway, request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _serve(gateway, request, "completion")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await _serve(gateway, request, "embeddings")

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> Response:
        try:
            await gateway.authorize(request.headers.get("authorization"), model_id)
            found = gateway.deployments.get(model_id)
            if found is None:
                raise ModelNotFoundError(f"no deployment named {storable(model_id, 128)!r}", param="model")
        except (GatewayError, AuthenticationError, PermissionDeniedError) as exc:
            return _error_response(exc)
        return JSONResponse({"id": model_id, "object": "model", "created": int(found.created_at.timestamp()),
                             "owned_by": "keel"})  # fmt: skip

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        names = sorted(gateway.deployments)
        if gateway.keys is not None:
            try:
                key = await gateway.authorize(request.headers.get("authorization"), "*")
            except PermissionDeniedError:
                key = None  # a scoped key: list only what it may call
                presented = (request.headers.get("authorization") or "")[7:].strip()
                scoped = gateway.keys.cached(presented)
                names = [n for n in names if scoped is not None and scoped.allows(n)]
            except AuthenticationError as exc:
                return _error_response(exc)
            del key
        data = [{"id": n, "object": "model", "created": int(gateway.deployments[n].created_at.timestamp()),
                 "owned_by": "keel"} for n in names]  # fmt: skip
        return JSONResponse({"object": "list", "data": data})

    _add_operations(app, gateway)
    return app


def _add_operations(app: FastAPI, gateway: Gateway) -> None:
    """Health, readiness, metrics, and OpenAI's error shape for unknown routes."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        # Unknown routes and methods answer in OpenAI's error shape too, not Starlette's {"detail": ...}.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        body = error_body(str(exc.detail), "invalid_request_error", code)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        reason = gateway.not_ready_reason()
        body: dict[str, Any] = {"status": "ready" if reason is None else "not ready",
                                "generation": gateway.generation, "deployments": len(gateway.deployments)}  # fmt: skip
        if reason is not None:
            body["reason"] = reason
        return JSONResponse(body, status_code=200 if reason is None else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if gateway.settings.metrics_require_key and gateway.keys is not None:
            try:
                await gateway.authorize(request.headers.get("authorization"), "metrics")
            except (AuthenticationError, PermissionDeniedError) as exc:
                return _error_response(exc)
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
