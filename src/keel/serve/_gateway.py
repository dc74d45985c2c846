"""The gateway's request path: authenticate, limit, guard, route, cache, call, trace, measure.

`Gateway` holds everything one serving process shares: the deployments (re-read whenever their
generation changes, so `keel deploy …` takes effect within a second, without restart), the
backends (one per distinct route, kept while in use so a switch drops no request in flight),
the key verifier, rate limiter, response cache, guardrails, metrics and trace writer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.core.ids import canonical_json, new_ulid
from keel.govern import (
    ApiKey,
    AuthenticationError,
    AuthenticationThrottledError,
    KeyVerifier,
    PermissionDeniedError,
)
from keel.monitor import OtlpExporter, Trace, TraceWriter, storable
from keel.registry import pull_model
from keel.serve._backends import Backend, CircuitBreaker, OpenAIBackend, Operation
from keel.serve._deployments import Deployment, Route, current_generation, load_deployments
from keel.serve._errors import BadRequestError, ModelNotFoundError, RateLimitedError, UpstreamError
from keel.serve._guardrails import Guardrails, PromptBlockedError
from keel.serve._limits import (
    MemoryRateLimiter,
    MemoryResponseCache,
    RateLimiter,
    RedisRateLimiter,
    RedisResponseCache,
    ResponseCache,
)
from keel.serve._metrics import UNKNOWN, GatewayMetrics, RequestMeasure
from keel.serve._settings import ServeSettings
from keel.store import Store

__all__ = ["Gateway", "RequestContext", "choose_route"]

log = logging.getLogger(__name__)


def choose_route(routes: tuple[Route, ...], sticky: str | None = None) -> Route:
    """Pick a route by weight; the same non-empty `sticky` value always picks the same route.

    Examples:
        >>> a, b = Route(model="m@v1", upstream="u", weight=90), Route(model="m@v2", upstream="u", weight=10)
        >>> choose_route((a, b), "user-7") == choose_route((a, b), "user-7")
        True
    """
    total = sum(r.weight for r in routes)
    if len(routes) == 1 or total <= 0:
        return routes[0]
    if sticky:
        point = int.from_bytes(hashlib.blake2b(sticky.encode(), digest_size=8).digest(), "big") % total
    else:
        point = random.randrange(total)
    for route in routes:
        point -= route.weight
        if point < 0:
            return route
    return routes[-1]


@dataclass(slots=True)
class RequestContext:
    """What one request's trace and metrics are made of, filled in as it goes."""

    operation: Operation
    started: float = field(default_factory=time.perf_counter)
    deployment: str = "-"
    route: Route | None = None
    key: ApiKey | None = None
    key_id: str | None = None
    prompt_version: str | None = None
    status: int = 200
    error: str | None = None
    error_code: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    ttft_s: float | None = None
    cache_hit: bool = False
    flags: list[str] = field(default_factory=list)
    upstream_started: float | None = None
    upstream_ended: float | None = None

    def usage(self, answer: Mapping[str, Any]) -> None:
        """Take token counts from an OpenAI `usage` block."""
        usage = answer.get("usage") or {}
        self.tokens_in = int(usage.get("prompt_tokens") or 0)
        self.tokens_out = int(usage.get("completion_tokens") or 0)


def _route_key(route: Route) -> str:
    return route.model_dump_json(exclude={"weight", "price_in", "price_out"})


class Gateway:
    """One serving process's shared state and request logic; `keel.serve.create_app` wraps it in HTTP.

    Args:
        store: The workspace store (deployments, keys, models, traces).
        settings: Gateway settings; from the environment when omitted.
        model_dir: Where in-process models are pulled to; `.keel/serve-models` by default.
    """

    def __init__(
        self,
        store: Store,
        settings: ServeSettings | None = None,
        *,
        model_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or ServeSettings()
        self.metrics = GatewayMetrics()
        self.guardrails = Guardrails()
        self.keys = (
            KeyVerifier(
                store,
                failures=self.settings.auth_failures,
                window_s=self.settings.auth_window_s,
                refresh_interval_s=self.settings.reload_interval_s,
            )
            if self.settings.require_keys
            else None
        )
        self.deployments: dict[str, Deployment] = {}
        self.generation = -1
        self.traces = TraceWriter(
            store, queue_size=self.settings.trace_queue_size, batch_size=self.settings.trace_batch_size
        )
        self.metrics.watch_traces(self._trace_stats)
        self.limiter: RateLimiter = MemoryRateLimiter()
        self.cache: ResponseCache = MemoryResponseCache(self.settings.cache_max_entries)
        self._model_dir = model_dir or store.settings.state_dir / "serve-models"
        self._backends: dict[str, Backend] = {}
        self._building: dict[str, asyncio.Lock] = {}
        self._reloader: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._exporter: OtlpExporter | None = None

    @property
    def ready(self) -> bool:
        """Deployments are loaded and the trace writer writes."""
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why the gateway should not take traffic (deployments not loaded, trace writer failing), or None."""
        if self.generation < 0:
            return "deployments are not loaded yet"
        return self.traces.health()

    def _trace_stats(self) -> dict[str, int]:
        t = self.traces
        return {"written": t.written, "quarantined": t.quarantined, "spilled": t.spilled, "queued": t.queued,
                "healthy": int(t.health() is None)}  # fmt: skip

    async def start(self) -> None:
        """Load deployments, connect Redis if configured, start the trace writer and the reloader."""
        if self.settings.redis_url:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(self.settings.redis_url)
            self.limiter = RedisRateLimiter(self._redis)
            self.cache = RedisResponseCache(self._redis, self.settings.cache_max_entries)
        await self.reload()
        self._start_export()
        await self.traces.start()
        self._reloader = asyncio.create_task(self._reload_forever(), name="keel-gateway-reload")

    def _start_export(self) -> None:
        endpoint = self.store.settings.otlp_endpoint
        if not endpoint or self._exporter is not None:
            return
        self._exporter = OtlpExporter(endpoint, provider_of=self._provider_of)
        self.traces.on_written = self._exporter.export

    def _provider_of(self, trace: Trace) -> str:
        deployment = self.deployments.get(trace.deployment)
        for route in deployment.routes if deployment is not None else ():
            if route.model == trace.model_version:
                return route.backend
        return UNKNOWN

    async def close(self) -> None:
        """Stop reloading, flush traces (spilling what is left after `shutdown_timeout_s`), close backends, Redis."""
        if self._reloader is not None:
            self._reloader.cancel()
            self._reloader = None
        await self.traces.close(timeout_s=self.settings.shutdown_timeout_s)
        for backend in self._backends.values():
            try:
                await asyncio.wait_for(backend.aclose(), self.settings.shutdown_timeout_s)
            except Exception:  # process boundary: a backend that cannot close must not keep the process alive
                log.exception("closing a backend failed")
        self._backends.clear()
        if self._redis is not None:
            await self._redis.aclose()
        if self._exporter is not None:
            self.traces.on_written = None
            await asyncio.to_thread(self._exporter.shutdown)  # bounded by the exporter's timeout
            self._exporter = None

    async def reload(self, *, force: bool = False) -> bool:
        """Re-read deployments if their generation changed, and key rows; returns whether deployments changed."""
        if self.keys is not None:
            await asyncio.to_thread(self.keys.refresh)

        def read_generation() -> int:
            with self.store.db.read() as conn:
                return current_generation(conn)

        if not force and await asyncio.to_thread(read_generation) == self.generation:
            return False
        generation, deployments = await asyncio.to_thread(load_deployments, self.store)
        self.deployments, self.generation = deployments, generation
        return True

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                await self.reload()
            except Exception:  # the database blinked: keep serving the deployments we have
                log.exception("reloading deployments failed; serving the last ones read")

    async def backend(self, route: Route) -> Backend:
        """The backend serving `route`, built on first use and shared by every request to it."""
        key = _route_key(route)
        found = self._backends.get(key)
        if found is not None:
            return found
        lock = self._building.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._backends.get(key)
            if found is None:
                found = self._backends[key] = await self._build(route)
        return found

    async def _build(self, route: Route) -> Backend:
        if route.backend == "openai":
            assert route.upstream is not None
            return OpenAIBackend(
                route.upstream,
                route.upstream_model or route.model.split("@")[0],
                timeout_s=self.settings.upstream_timeout_s,
                retries=self.settings.upstream_retries,
                breaker=CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_cooldown_s),
            )
        folder = self._model_dir / route.model.replace("@", "-")
        if not folder.exists():
            await asyncio.to_thread(pull_model, self.store, route.model, folder)
        from keel.serve._local import SentenceTransformersBackend, TransformersBackend

        if route.backend == "transformers":
            return await asyncio.to_thread(
                TransformersBackend, folder, max_batch=route.max_batch, max_wait_ms=route.max_wait_ms,
                max_batch_tokens=route.max_batch_tokens, max_output_tokens=self.settings.max_output_tokens,
            )  # fmt: skip
        return await asyncio.to_thread(SentenceTransformersBackend, folder)

    async def authorize(self, authorization: str | None, deployment: str, client: str | None = None) -> ApiKey | None:
        """The key of a request, checked for `deployment`; None when keys are not required.

        Raises:
            AuthenticationError: No, malformed, unknown, wrong or revoked key.
            RateLimitedError: Too many failed key checks lately for this key id or `client` address.
            PermissionDeniedError: The key's scopes exclude the deployment.
        """
        key = await self._verify(authorization, client)
        if key is not None and not key.allows(deployment):
            raise PermissionDeniedError(f"this API key may not call deployment {storable(deployment, 128)!r}")
        return key

    async def authenticate(self, ctx: RequestContext, headers: Mapping[str, str], client: str | None = None) -> None:
        """Verify the request's key before its body is read; only authenticated requests are traced.

        Raises:
            AuthenticationError: No, malformed, unknown, wrong or revoked key.
        """
        ctx.key = await self._verify(headers.get("authorization"), client)
        ctx.key_id = ctx.key.id if ctx.key is not None else None
        ctx.prompt_version = headers.get("x-keel-prompt-version")  # on the trace even if the body is refused

    async def _verify(self, authorization: str | None, client: str | None = None) -> ApiKey | None:
        if self.keys is None:
            return None
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthenticationError("expected an API key in the header 'Authorization: Bearer keel_…'; got none")
        presented = authorization[7:].strip()
        key = self.keys.cached(presented)
        if key is None:  # argon2 costs tens of milliseconds: keep it off the event loop
            try:
                key = await asyncio.to_thread(self.keys.verify, presented, client=client)
            except AuthenticationThrottledError as exc:
                raise RateLimitedError(str(exc), retry_after=exc.retry_after) from None
        return key

    async def admit(
        self, ctx: RequestContext, body: dict[str, Any], headers: Mapping[str, str], client: str | None = None
    ) -> tuple[Deployment, dict[str, Any]]:
        """Authenticate, find the deployment, rate-limit, apply guardrails and choose the route.

        `client` is the caller's address, for the limit on failed key checks per address.
        """
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise BadRequestError("expected `model` to name a deployment; got none", param="model")
        ctx.deployment = name
        if ctx.key is None:
            await self.authenticate(ctx, headers, client)
        key = ctx.key
        if key is not None and not key.allows(name):
            raise PermissionDeniedError(f"this API key may not call deployment {storable(name, 128)!r}")
        deployment = self.deployments.get(name)
        if deployment is None:
            raise ModelNotFoundError(
                f"no deployment named {storable(name, 128)!r}", hint="see GET /v1/models", param="model"
            )
        if key is not None:
            if key.rate_per_minute is not None:
                wait = await self.limiter.acquire(key.id, key.rate_per_minute, key.burst or 1)
                if wait > 0:
                    raise RateLimitedError(
                        f"rate limit of {key.rate_per_minute:g} requests/minute reached for this key", retry_after=wait
                    )
        try:
            body, ctx.flags = self.guardrails.check_request(body, deployment.settings)
        except PromptBlockedError as exc:
            ctx.flags = exc.flags
            raise
        ctx.prompt_version = headers.get("x-keel-prompt-version")
        sticky = headers.get(deployment.settings.sticky_header) or body.get("user")
        ctx.route = choose_route(deployment.routes, sticky if isinstance(sticky, str) else None)
        return deployment, body

    def _cache_key(self, ctx: RequestContext, body: dict[str, Any]) -> str | None:
        if ctx.operation != "embeddings" and body.get("temperature") != 0:
            return None
        assert ctx.route is not None
        content = {k: v for k, v in body.items() if k not in ("model", "stream", "user", "stream_options")}
        return hashlib.sha256(canonical_json([ctx.route.model, ctx.operation, content]).encode()).hexdigest()

    async def complete(self, ctx: RequestContext, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a non-streaming request: cache, backend (with fallback), redaction."""
        ttl = deployment.settings.cache_ttl_s
        cache_key = self._cache_key(ctx, body) if ttl > 0 else None
        if cache_key is not None:
            cached = await self.cache.get(cache_key)
            if cached is not None:
                ctx.cache_hit = True
                ctx.usage(cached)
                return cached
        assert ctx.route is not None
        ctx.upstream_started = time.perf_counter()
        try:
            answer = await (await self.backend(ctx.route)).complete(ctx.operation, body)
        except UpstreamError:
            if deployment.settings.fallback is None:
                raise
            ctx.route = deployment.settings.fallback
            ctx.flags.append("fallback")
            answer = await (await self.backend(ctx.route)).complete(ctx.operation, body)
        ctx.upstream_ended = time.perf_counter()
        answer["model"] = deployment.name
        if deployment.settings.pii == "redact" and self.guardrails.redact_answer(answer):
            ctx.flags.append("pii_redacted_response")
        ctx.usage(answer)
        if cache_key is not None:
            await self.cache.put(cache_key, answer, ttl)
        return answer

    async def stream(self, ctx: RequestContext, deployment: Deployment, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Answer a streaming request as SSE bytes; falls back only before the first chunk."""
        assert ctx.route is not None
        ctx.upstream_started = time.perf_counter()
        try:
            chunks = (await self.backend(ctx.route)).stream(ctx.operation, body)
            first = await anext(chunks, None)
        except UpstreamError:
            if deployment.settings.fallback is None:
                raise
            ctx.route = deployment.settings.fallback
            ctx.flags.append("fallback")
            chunks = (await self.backend(ctx.route)).stream(ctx.operation, body)
            first = await anext(chunks, None)
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        held: dict[int, str] = {}  # text of each choice waiting for a line end before it is redacted
        chunk = first
        while chunk is not None:
            if ctx.ttft_s is None and chunk.get("choices"):
                ctx.ttft_s = time.perf_counter() - ctx.started
            if chunk.get("usage"):
                ctx.usage(chunk)
            self._finish_chunk(chunk, deployment, want_usage, held)
            if chunk.get("choices") or chunk.get("usage"):
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            chunk = await anext(chunks, None)
        ctx.upstream_ended = time.perf_counter()
        yield b"data: [DONE]\n\n"

    def _finish_chunk(
        self, chunk: dict[str, Any], deployment: Deployment, want_usage: bool, held: dict[int, str]
    ) -> None:
        chunk["model"] = deployment.name
        if not want_usage:
            chunk.pop("usage", None)
        if deployment.settings.pii == "redact":
            # An e-mail or card number arrives over several chunks (a token each): redacting chunk by chunk
            # would let every piece through. Text is held back to the last line end (no pattern spans lines)
            # and redacted then; the choice's finishing chunk releases the rest.
            for choice in chunk.get("choices", []):
                holder, key = (choice["delta"], "content") if "delta" in choice else (choice, "text")
                index = int(choice.get("index", 0))
                text = held.pop(index, "") + (holder[key] if isinstance(holder.get(key), str) else "")
                cut = len(text) if choice.get("finish_reason") is not None else text.rfind("\n") + 1
                held[index] = text[cut:]
                if isinstance(holder.get(key), str) or text[:cut]:
                    holder[key], _ = self.guardrails.redact_text(text[:cut])

    async def finish(self, ctx: RequestContext) -> None:
        """Record the request: a count if it was never authenticated; else metrics now, the trace via the writer."""
        ended = time.perf_counter()
        if self.keys is not None and ctx.key is None:
            # Unauthenticated: one counter, no trace and no per-deployment series, so anonymous
            # callers can neither fill the trace table nor pose as a deployment's errors.
            self.metrics.refused(ctx.error_code or ctx.error or "invalid_request_error")
            return
        seconds = ended - ctx.started
        route = ctx.route
        version = route.model if route is not None else None
        cost = 0.0
        if route is not None and not ctx.cache_hit:
            cost = (ctx.tokens_in * route.price_in + ctx.tokens_out * route.price_out) / 1000
        upstream_s = None
        if ctx.upstream_started is not None:
            upstream_s = (ctx.upstream_ended or ended) - ctx.upstream_started
        self.metrics.observe(
            RequestMeasure(
                operation=ctx.operation,
                provider=route.backend if route is not None else UNKNOWN,
                request_model=ctx.deployment if ctx.deployment in self.deployments else UNKNOWN,
                response_model=version or UNKNOWN,
                status=ctx.status,
                seconds=seconds,
                error_type=ctx.error or "",
                upstream_s=upstream_s,
                ttft_s=ctx.ttft_s,
                tokens_in=ctx.tokens_in,
                tokens_out=ctx.tokens_out,
                cache_hit=ctx.cache_hit,
            )
        )
        trace = Trace(
            id=new_ulid(),
            at=self.store.clock(),
            deployment=ctx.deployment,
            operation=ctx.operation,
            status=ctx.status,
            latency_ms=seconds * 1000,
            model_version=version,
            prompt_version=ctx.prompt_version,
            key_id=ctx.key_id,
            error=ctx.error,
            tokens_in=ctx.tokens_in,
            tokens_out=ctx.tokens_out,
            ttft_ms=None if ctx.ttft_s is None else ctx.ttft_s * 1000,
            cost=cost,
            cache_hit=ctx.cache_hit,
            flags=ctx.flags,
        )
        await self.traces.put(trace)  # made storable there: every string of it may come from the request
