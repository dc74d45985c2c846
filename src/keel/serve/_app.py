"""The HTTP face of the gateway: OpenAI's routes, health, readiness and Prometheus metrics.

Handlers read the body under a size bound, parse it, validate it against the OpenAI request
schema (`_schema`: the fields Keel reads; unknown ones pass) and forward the parsed body as is.
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

from keel.core.echo import shown
from keel.govern import AuthenticationError, PermissionDeniedError
from keel.serve._backends import Operation
from keel.serve._errors import (
    GatewayError,
    ModelNotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    error_body,
)
from keel.serve._gateway import Gateway, RequestContext
from keel.serve._schema import openapi_schema, parse_body, validate_request

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


def _client(request: Request) -> str | None:
    """The caller's address: failed key checks are limited per address on every route that checks a key."""
    return request.client.host if request.client else None


def _traced(response: Response, gateway: Gateway, ctx: RequestContext) -> Response:
    """`response` naming its trace, when the request is traced (authenticated, or keys are not required)."""
    if ctx.key is not None or gateway.keys is None:
        response.headers["x-keel-trace-id"] = ctx.trace_id
    return response


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


async def _read(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (never held whole beyond it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"expected a request body of at most {limit} bytes; got {declared}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"expected a request body of at most {limit} bytes; got more")
        chunks.append(chunk)
    return b"".join(chunks)


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body was read: the next ASGI message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, ctx: RequestContext, work: Any) -> dict[str, Any] | None:
    """Run `work`; cancel it (so an in-process model stops generating) if the client leaves first."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        ctx.status, ctx.error = 499, "cancelled"
        return None
    answer: dict[str, Any] = task.result()
    return answer


async def _serve(gateway: Gateway, request: Request, operation: Operation) -> Response:
    ctx = RequestContext(operation)
    streaming = False
    try:
        client = request.client.host if request.client else None
        await gateway.authenticate(ctx, request.headers, client)  # before the body: only keyed requests are traced
        body = parse_body(await _read(request, gateway.settings.max_body_bytes))
        if isinstance(body.get("model"), str):  # a refused body's trace still names what it asked for
            ctx.deployment = body["model"]
        validate_request(operation, body)
        deployment, body = await gateway.admit(ctx, body, request.headers, client)
        if body.get("stream") and operation != "embeddings":
            # Start the upstream call (or generation) before sending headers, so that a failure
            # to start is answered with its real status (502, 400, …), not a 200 stream.
            pieces = gateway.stream(ctx, deployment, body)
            first = await anext(pieces)
            streaming = True
            return StreamingResponse(_streamed(gateway, ctx, first, pieces), media_type="text/event-stream",
                                     headers={"x-keel-trace-id": ctx.trace_id})  # fmt: skip
        work = gateway.complete(ctx, deployment, body)
        if ctx.route is not None and ctx.route.backend == "openai":
            answer = await work
        else:  # in process: a client that leaves must not keep a model generating for nobody
            found = await _unless_disconnected(request, ctx, work)
            if found is None:
                return Response(status_code=499)
            answer = found
        # A copy: the answer may be the response cache's, shared with other requests.
        return JSONResponse({**answer, "trace_id": ctx.trace_id},
                            headers={"x-keel-model-version": ctx.route.model if ctx.route else "",
                                     "x-keel-trace-id": ctx.trace_id})  # fmt: skip
    except (GatewayError, AuthenticationError, PermissionDeniedError) as exc:
        _fail(ctx, exc)
        return _traced(_error_response(exc), gateway, ctx)
    except Exception as exc:  # request boundary: answer 500 in OpenAI's shape, and log the bug
        log.exception("unexpected error serving %s", operation)
        _fail(ctx, exc)
        return _traced(_error_response(exc), gateway, ctx)
    except asyncio.CancelledError:
        _cancelled(ctx)
        raise
    finally:
        if not streaming:
            await _finish(gateway, ctx)


def _error_event(exc: Exception) -> bytes:
    _, type_, code = _describe(exc)
    message = str(exc) if isinstance(exc, GatewayError | AuthenticationError | PermissionDeniedError) else (
        "internal error in the gateway")  # fmt: skip
    return b"data: " + json.dumps(error_body(message, type_, code)).encode() + b"\n\n"


async def _streamed(
    gateway: Gateway, ctx: RequestContext, first: bytes, pieces: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    try:
        yield first
        async for piece in pieces:
            yield piece
    except (GatewayError, AuthenticationError, PermissionDeniedError) as exc:
        _fail(ctx, exc)
        # Headers are gone once a stream starts: report the error as a final event, then end the
        # stream as every stream ends, so clients waiting for `[DONE]` stop waiting.
        yield _error_event(exc)
        yield b"data: [DONE]\n\n"
    except Exception as exc:  # request boundary
        log.exception("unexpected error streaming")
        _fail(ctx, exc)
        yield _error_event(exc)
        yield b"data: [DONE]\n\n"
    except (asyncio.CancelledError, GeneratorExit):  # the client disconnected mid-stream
        _cancelled(ctx)
        raise
    finally:
        try:
            close = getattr(pieces, "aclose", None)
            if close is not None:  # a client that left: close the backend's stream now, so generation stops
                await close()
        finally:
            await _finish(gateway, ctx)


async def _openapi(_: Request) -> Response:
    """The OpenAI request schema the gateway validates against (for clients and schemathesis)."""
    return JSONResponse(openapi_schema())


async def _model(gateway: Gateway, model_id: str, request: Request) -> Response:
    """`GET /v1/models/{model_id}`: the deployment, if the caller's key may call it."""
    try:
        if not model_id:  # `/v1/models/`: no name to check a key's scopes against
            raise ModelNotFoundError("expected a deployment name after /v1/models/; got none", param="model")
        await gateway.authorize(request.headers.get("authorization"), model_id, _client(request))
        found = gateway.deployments.get(model_id)
        if found is None:
            raise ModelNotFoundError(f"no deployment named {shown(model_id, 128)}", param="model")
    except (GatewayError, AuthenticationError, PermissionDeniedError) as exc:
        return _error_response(exc)
    return JSONResponse({"id": model_id, "object": "model", "created": int(found.created_at.timestamp()),
                         "owned_by": "keel"})  # fmt: skip


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

    # No trailing-slash redirects: Starlette's point at `http://<Host header>/…` (another site, if a proxy lets
    # the header through); `/v1/chat/completions/` is an unknown route, answered 404 in OpenAI's shape.
    app = FastAPI(title="Keel gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)  # fmt: skip
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
        return await _model(gateway, model_id, request)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        names = sorted(gateway.deployments)
        if gateway.keys is not None:
            try:
                key = await gateway.authorize(request.headers.get("authorization"), "*", _client(request))
            except PermissionDeniedError:
                key = None  # a scoped key: list only what it may call
                presented = (request.headers.get("authorization") or "")[7:].strip()
                scoped = gateway.keys.cached(presented)
                names = [n for n in names if scoped is not None and scoped.allows(n)]
            except (AuthenticationError, RateLimitedError) as exc:
                return _error_response(exc)
            del key
        data = [{"id": n, "object": "model", "created": int(gateway.deployments[n].created_at.timestamp()),
                 "owned_by": "keel"} for n in names]  # fmt: skip
        return JSONResponse({"object": "list", "data": data})

    app.add_route("/openapi.json", _openapi, methods=["GET"])
    _add_feedback(app, gateway)
    _add_operations(app, gateway)
    return app


def _add_feedback(app: FastAPI, gateway: Gateway) -> None:
    """`POST /v1/feedback`: a score, label, comment or corrected answer on an answer, by its trace id (202)."""

    async def feedback(request: Request) -> Response:
        try:
            client = request.client.host if request.client else None
            # parse_body refuses what json.loads would choke on (nesting deep enough for a RecursionError: a 500)
            body = parse_body(await _read(request, 64 * 1024), lone_surrogates=True)  # stored escaped
            made = await gateway.receive_feedback(request.headers, body, client)
        except (GatewayError, AuthenticationError, PermissionDeniedError) as exc:
            return _error_response(exc)
        except Exception as exc:  # request boundary: answer 500 in OpenAI's shape, and log the bug
            log.exception("unexpected error receiving feedback")
            return _error_response(exc)
        return JSONResponse({"id": made.id, "object": "feedback", "trace_id": made.trace_id, "label": made.label,
                             "score": made.score, "source": made.source}, status_code=202)  # fmt: skip

    # A plain Starlette route: FastAPI's dependency solving and endpoint wrapping cost more CPU than the
    # handler itself at thousands of posts per second, and this handler needs neither.
    app.add_route("/v1/feedback", feedback, methods=["POST"])


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
                await gateway.authorize(request.headers.get("authorization"), "metrics", _client(request))
            except (GatewayError, AuthenticationError, PermissionDeniedError) as exc:  # 429 when throttled, too
                return _error_response(exc)
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
