"""The gateway's request path: authenticate, limit, guard, route, cache, call, trace, measure.

`Gateway` holds everything one serving process shares: the deployments (re-read whenever their
generation changes, so `keel deploy …` takes effect within a second, without restart), the
backends (one per distinct route, kept while in use so a switch drops no request in flight),
the key verifier, rate limiter, response cache, guardrails, metrics and trace writer.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from ulid import ULID

from keel.core.echo import shown
from keel.core.errors import InputError
from keel.core.ids import canonical_json, new_ulid
from keel.core.keyring import Keyring, load_keyring
from keel.govern import (
    ApiKey,
    AuthenticationError,
    AuthenticationThrottledError,
    KeyVerifier,
    PermissionDeniedError,
)
from keel.index import DEFAULT_MODEL as DEFAULT_EMBEDDER
from keel.index import Embedder, Hit, RagAnswer, RagApp, RetrieverPool, load_embedder
from keel.monitor import (
    Feedback,
    FeedbackWriter,
    OtlpExporter,
    Trace,
    TraceRetrieval,
    TraceWriter,
    make_feedback,
    storable,
)
from keel.registry import pull_model
from keel.serve._backends import Backend, CircuitBreaker, OpenAIBackend, Operation
from keel.serve._deployments import Deployment, Route, current_generation, load_deployments
from keel.serve._errors import (
    BadRequestError,
    ModelNotFoundError,
    RateLimitedError,
    RetrievalError,
    TraceNotFoundError,
    UpstreamError,
)
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
from keel.serve._online_eval import EvalSample, OnlineEvaluator
from keel.serve._retrieval import EmbedBatcher
from keel.serve._semantic import SemanticCache, SemanticHit, semantic_parts
from keel.serve._settings import ServeSettings
from keel.store import Store
from keel.store.schema import traces

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
    subjects: list[str] = field(default_factory=list)
    upstream_started: float | None = None
    upstream_ended: float | None = None
    rag: RagAnswer | None = None
    rag_route: Route | None = None
    # Issued when the request arrives, so the answer can carry it (body field and header).
    trace_id: str = field(default_factory=new_ulid)
    # What was asked and answered (when the deployment records content or the answer is sampled for
    # online evaluation), and the retrieved passages the answer should rest on (RAG routes set them).
    request: dict[str, Any] | None = None
    response: str | None = None
    contexts: list[str] = field(default_factory=list)
    record_content: bool = False
    judge: bool = False

    def usage(self, answer: Mapping[str, Any]) -> None:
        """Take token counts from an OpenAI `usage` block."""
        usage = answer.get("usage") or {}
        self.tokens_in = int(usage.get("prompt_tokens") or 0)
        self.tokens_out = int(usage.get("completion_tokens") or 0)


_FEEDBACK_FIELDS = frozenset(("trace_id", "score", "label", "comment", "correction", "source", "details"))
# Traces this gateway answered lately, so feedback on them is checked without a database read.
_RECENT_TRACES = 50_000  # ~170 bytes each (the strings are shared with the deployments): ~9 MB at most
# Feedback may arrive (at another replica) before the trace's batch is written: wait this long for it.
_TRACE_WAIT_S = 3.0


def _question(request: dict[str, Any]) -> str:
    """The last user turn of a chat (or the prompt of a completion), as text."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else ""
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def _answer_text(answer: Mapping[str, Any]) -> str | None:
    """The text of an OpenAI answer's first choice."""
    choices = answer.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    text = (choice.get("message") or {}).get("content") if "message" in choice else choice.get("text")
    return text if isinstance(text, str) else None


def _route_key(route: Route) -> str:
    if route.backend == "llama.cpp":  # no per-route settings: every route of a GGUF version shares one model
        return f"llama.cpp:{route.model}"
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
        self.feedback = FeedbackWriter(
            store, queue_size=self.settings.trace_queue_size, batch_size=self.settings.trace_batch_size
        )
        self.online = OnlineEvaluator(store, self.feedback, self.guardrails)
        self.metrics.watch_feedback(self._feedback_stats)
        self._recent: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self.limiter: RateLimiter = MemoryRateLimiter()
        self.cache: ResponseCache = MemoryResponseCache(self.settings.cache_max_entries)
        self.semantic: SemanticCache | None = None  # made at the first question a deployment asks it to cache
        self._model_dir = model_dir or store.settings.state_dir / "serve-models"
        self._backends: dict[str, Backend] = {}
        self.retrievers = RetrieverPool(store)  # index versions and embedders, loaded once, shared by routes
        self._apps: dict[str, RagApp] = {}
        self._batchers: dict[str, EmbedBatcher] = {}  # one per embedding model: concurrent queries share passes
        # Index searches run on one thread of their own (FAISS frees the GIL while it searches): beside the
        # embedder's thread that fills two cores, where the default pool's many threads only contend.
        self._searcher: ThreadPoolExecutor | None = None
        self._building: dict[str, asyncio.Lock] = {}
        self._reloader: asyncio.Task[None] | None = None
        self._controller: asyncio.Task[None] | None = None
        self._alerter: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._exporter: OtlpExporter | None = None
        self._keyring: Keyring | None = None

    def _subject_keyring(self) -> Keyring:
        """The workspace's governance keyring, read once: it keys the subjects recorded with traces."""
        if self._keyring is None:
            self._keyring = load_keyring(self.store.settings)
        return self._keyring

    @property
    def ready(self) -> bool:
        """Deployments are loaded and the trace writer writes."""
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why the gateway should not take traffic (deployments not loaded, trace writer failing), or None."""
        if self.generation < 0:
            return "deployments are not loaded yet"
        return self.traces.health(detail=False)  # /readyz answers anyone: the database's error text stays in the log

    def _trace_stats(self) -> dict[str, int]:
        t = self.traces
        return {"written": t.written, "quarantined": t.quarantined, "spilled": t.spilled, "queued": t.queued,
                "healthy": int(t.health() is None)}  # fmt: skip

    def _feedback_stats(self) -> dict[str, int]:
        f, online = self.feedback, self.online
        return {"written": f.written, "quarantined": f.quarantined, "spilled": f.spilled, "queued": f.queued,
                "judged": online.scored, "dropped": online.dropped}  # fmt: skip

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
        await self.feedback.start()
        self._reloader = asyncio.create_task(self._reload_forever(), name="keel-gateway-reload")
        if self.settings.rollout_check_s > 0:
            self._controller = asyncio.create_task(self._step_rollouts_forever(), name="keel-rollout-controller")
        if self.settings.alerts_file:
            self._alerter = asyncio.create_task(self._evaluate_alerts_forever(), name="keel-alert-evaluator")

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
        for task in (self._reloader, self._controller, self._alerter):
            if task is not None:
                task.cancel()
        self._reloader = self._controller = self._alerter = None
        await self.online.close()
        await self.traces.close(timeout_s=self.settings.shutdown_timeout_s)
        await self.feedback.close(timeout_s=self.settings.shutdown_timeout_s)
        for backend in self._backends.values():
            try:
                await asyncio.wait_for(backend.aclose(), self.settings.shutdown_timeout_s)
            except Exception:  # process boundary: a backend that cannot close must not keep the process alive
                log.exception("closing a backend failed")
        self._backends.clear()
        for batcher in self._batchers.values():
            await batcher.aclose()
        self._batchers.clear()
        if self._searcher is not None:
            self._searcher.shutdown(wait=False)
            self._searcher = None
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

    async def _step_rollouts_forever(self) -> None:
        """The guarded-rollout controller inside the gateway: step the rollouts that are due, every few seconds.

        Each check is claimed in the database before it is acted on, so replicas of the gateway and
        `keel monitor watch` processes sharing the workspace never both act on one.
        """
        from keel.monitor import step_rollouts  # monitor acts on deployments through serve: no import cycle at load

        while True:
            await asyncio.sleep(self.settings.rollout_check_s)
            try:
                decisions = await asyncio.to_thread(step_rollouts, self.store)
                for decision in decisions:
                    log.info("guarded rollout of %s: %s at %d%%: %s", decision.deployment, decision.decision,
                                decision.weight, decision.reason)  # fmt: skip
                if any(d.decision not in ("wait", "hold") for d in decisions):
                    await self.reload()  # serve the new weights now, not at the next reload
            except Exception:  # the database blinked: the check is still due at the next look
                log.exception("stepping guarded rollouts failed; trying again in %.0fs", self.settings.rollout_check_s)

    async def _evaluate_alerts_forever(self) -> None:
        """The alert evaluator inside the gateway: `settings.alerts_file`'s rules every `alerts_every_s`.

        One worker of the machine evaluates (it holds a file lease the others try each tick); what
        fires or resolves is stored, audited and sent to the file's sinks as `keel monitor watch` does.
        """
        from keel.monitor import AlertEvaluatorLease, alert_tick, load_alert_config  # monitor above serve: lazy

        assert self.settings.alerts_file is not None
        try:
            config = load_alert_config(self.settings.alerts_file)
        except InputError as exc:  # KEEL_ALERTS_FILE set by hand (`keel serve --alerts` checked it already)
            log.error("not evaluating alert rules: %s", exc)
            return
        lease = AlertEvaluatorLease(self.store)
        try:
            while True:
                try:
                    if await asyncio.to_thread(lease.acquire):
                        tick = await asyncio.to_thread(alert_tick, self.store, config)
                        for event in tick.alerts:
                            log.info("alert %s %s: %s", event.rule, event.status, event.summary)
                        for sink, error in tick.sink_failures.items():
                            log.warning("alert sink %s failed: %s", sink, error)
                except Exception:  # the database blinked: evaluate again at the next tick
                    log.exception("evaluating alert rules failed; trying again in %.0fs", self.settings.alerts_every_s)
                await asyncio.sleep(self.settings.alerts_every_s)
        finally:
            lease.release()

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
                breaker=CircuitBreaker(
                    self.settings.breaker_failures,
                    self.settings.breaker_cooldown_s,
                    failure_rate=self.settings.breaker_failure_rate,
                    window_s=self.settings.breaker_window_s,
                ),
            )
        folder = self._model_dir / route.model.replace("@", "-")
        if not folder.exists():
            await asyncio.to_thread(pull_model, self.store, route.model, folder)
        from keel.serve._local import SentenceTransformersBackend, TransformersBackend

        if route.backend == "llama.cpp":
            from keel.serve._llamacpp import LlamaCppBackend

            return await asyncio.to_thread(LlamaCppBackend, folder, max_output_tokens=self.settings.max_output_tokens)
        if route.backend == "transformers":
            return await asyncio.to_thread(
                TransformersBackend, folder, max_batch=route.max_batch, max_wait_ms=route.max_wait_ms,
                max_batch_tokens=route.max_batch_tokens, max_output_tokens=self.settings.max_output_tokens,
            )  # fmt: skip
        return await asyncio.to_thread(SentenceTransformersBackend, folder)

    async def app(self, route: Route) -> RagApp:
        """The RAG app of `route` (its pinned prompt and index), built on first use; index versions are shared."""
        key = canonical_json([route.prompt, route.index, route.retrieval.model_dump()])
        found = self._apps.get(key)
        if found is not None:
            return found
        lock = self._building.setdefault(f"app:{key}", asyncio.Lock())
        async with lock:
            found = self._apps.get(key)
            if found is None:
                app = await asyncio.to_thread(self.retrievers.app, route.prompt, route.index, route.retrieval)
                found = self._apps[key] = app
        return found

    def _search_thread(self) -> ThreadPoolExecutor:
        if self._searcher is None:
            self._searcher = ThreadPoolExecutor(1, thread_name_prefix="keel-search")
        return self._searcher

    def _batcher(self, app: RagApp) -> EmbedBatcher:
        assert app.retriever is not None
        embedder = app.retriever.embedder
        found = self._batchers.get(embedder.model_id)
        if found is None:
            found = self._batchers[embedder.model_id] = self._new_batcher(embedder)
        return found

    def _new_batcher(self, embedder: Embedder) -> EmbedBatcher:
        return EmbedBatcher(embedder, runtime=self.settings.query_encoder, cache=self.settings.query_encoder_cache)

    async def augment(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        """For a chat request to a RAG route: retrieve, render the prompt, and return the body to send.

        Embedding and search run in worker threads (the event loop keeps serving); each step is timed
        apart for the trace. The request's own messages follow the prompt's system message unchanged.

        Raises:
            BadRequestError: The conversation has no user text to retrieve for.
            RetrievalError: The index or its embedding model failed (503; the trace is flagged).
        """
        route = ctx.route
        if ctx.operation != "chat" or route is None or not route.augmented:
            return body
        ctx.rag_route = route
        if route.prompt is not None:
            ctx.prompt_version = route.prompt
        messages = body.get("messages") or []
        try:
            app = await self.app(route)
            query = app.query(messages)
            started = time.perf_counter()
            hits: list[Hit] = []
            if app.retriever is not None and route.retrieval.mode != "keyword":
                # Searched on the embedding thread right after the query's batch: one thread hop, not two.
                followed = await self._batcher(app).embed_then(query, functools.partial(app.search, query))
                hits, embedded = followed.result, followed.then_started
            else:
                embedded = time.perf_counter()
                if app.retriever is not None:
                    hits = await asyncio.get_running_loop().run_in_executor(
                        self._search_thread(), app.search, query, None
                    )
            searched = time.perf_counter()
            rendered = app.render(messages, query, hits)
        except InputError as exc:
            raise BadRequestError(exc.message, param="messages") from None
        except Exception as exc:  # request boundary: a failing index or model is the service's fault, not the caller's
            log.exception("retrieval failed for deployment %s (index %s)", ctx.deployment, route.index)
            ctx.flags.append("retrieval_failed")
            ctx.rag = RagAnswer([], [], index=route.index)
            raise RetrievalError(
                f"retrieval from {route.index or route.prompt} failed ({type(exc).__name__}); try again later"
            ) from None
        done = time.perf_counter()
        ms = 1000.0
        ctx.rag = RagAnswer(
            hits, rendered, (embedded - started) * ms, (searched - embedded) * ms, (done - searched) * ms, app.index_ref
        )
        ctx.contexts = [h.text for h in hits]  # what online evaluation judges groundedness against
        return {**body, "messages": rendered}

    async def authorize(self, authorization: str | None, deployment: str, client: str | None = None) -> ApiKey | None:
        """The key of a request, checked for `deployment`; None when keys are not required.

        Raises:
            AuthenticationError: No, malformed, unknown, wrong or revoked key.
            RateLimitedError: Too many failed key checks lately for this key id or `client` address.
            PermissionDeniedError: The key's scopes exclude the deployment.
        """
        key = await self._verify(authorization, client)
        if key is not None and not key.allows(deployment):
            raise PermissionDeniedError(f"this API key may not call deployment {shown(deployment, 128)}")
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
            raise PermissionDeniedError(f"this API key may not call deployment {shown(name, 128)}")
        deployment = self.deployments.get(name)
        if deployment is None:
            raise ModelNotFoundError(
                f"no deployment named {shown(name, 128)}", hint="see GET /v1/models", param="model"
            )
        if key is not None:
            if key.rate_per_minute is not None:
                wait = await self.limiter.acquire(key.id, key.rate_per_minute, key.burst or 1)
                if wait > 0:
                    raise RateLimitedError(
                        f"rate limit of {key.rate_per_minute:g} requests/minute reached for this key", retry_after=wait
                    )
        if deployment.settings.pii == "redact":  # its detector runs anyway: index who the request named
            ctx.subjects = self.guardrails.subject_keys(body, self._subject_keyring().value_key)
        try:
            body, ctx.flags = self.guardrails.check_request(body, deployment.settings)
        except PromptBlockedError as exc:
            ctx.flags = exc.flags
            raise
        ctx.prompt_version = headers.get("x-keel-prompt-version")
        self._keep_request(ctx, deployment, body)
        sticky = headers.get(deployment.settings.sticky_header) or body.get("user")
        ctx.route = choose_route(deployment.routes, sticky if isinstance(sticky, str) else None)
        return deployment, body

    def _keep_request(self, ctx: RequestContext, deployment: Deployment, body: dict[str, Any]) -> None:
        """Hold what was asked (after guardrails) when it is recorded or sampled for online evaluation."""
        if ctx.operation == "embeddings":
            return
        policy = deployment.settings
        ctx.record_content = policy.record_content
        ctx.judge = policy.online_eval > 0 and random.random() < policy.online_eval
        if ctx.record_content or ctx.judge:
            ctx.request = {"messages": body["messages"]} if "messages" in body else {"prompt": body.get("prompt")}

    def _cache_key(self, ctx: RequestContext, body: dict[str, Any]) -> str | None:
        if ctx.operation != "embeddings" and body.get("temperature") != 0:
            return None
        assert ctx.route is not None
        content = {k: v for k, v in body.items() if k not in ("model", "stream", "user", "stream_options")}
        return hashlib.sha256(canonical_json([ctx.route.model, ctx.operation, content]).encode()).hexdigest()

    async def complete(self, ctx: RequestContext, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a non-streaming request: retrieval (RAG routes), cache, backend (with fallback), redaction."""
        body = await self.augment(ctx, body)
        ttl = deployment.settings.cache_ttl_s
        cache_key = self._cache_key(ctx, body) if ttl > 0 else None
        if cache_key is not None:
            cached = await self.cache.get(cache_key)
            if cached is not None:
                return self._cached(ctx, cached)
        assert ctx.route is not None
        semantic = await self._semantic_lookup(ctx, deployment, body) if cache_key is not None else None
        if isinstance(semantic, SemanticHit):
            return self._cached(ctx, semantic.answer)
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
        if ctx.rag is not None:  # a top-level field: the openai client keeps it in `response.model_extra`
            answer["citations"] = ctx.rag.citations()
        if deployment.settings.pii == "redact" and self.guardrails.redact_answer(answer):
            ctx.flags.append("pii_redacted_response")
        ctx.usage(answer)
        if ctx.request is not None:
            ctx.response = _answer_text(answer)
        if cache_key is not None:
            await self.cache.put(cache_key, answer, ttl)
        if semantic is not None and self.semantic is not None:
            assert not isinstance(semantic, SemanticHit)
            self.semantic.put(semantic[0], semantic[1], answer, ttl)
        return answer

    def _cached(self, ctx: RequestContext, answer: dict[str, Any]) -> dict[str, Any]:
        ctx.cache_hit = True
        ctx.usage(answer)
        if ctx.request is not None:
            ctx.response = _answer_text(answer)
        return answer

    async def _semantic_lookup(
        self, ctx: RequestContext, deployment: Deployment, body: dict[str, Any]
    ) -> SemanticHit | tuple[str, Any] | None:
        """A semantic hit, else (partition, vector) to store the answer under; None when it does not apply."""
        threshold = deployment.settings.semantic_cache
        if threshold is None or ctx.operation == "embeddings":
            return None
        assert ctx.route is not None
        parts = semantic_parts(ctx.route.model, ctx.operation, body)
        if parts is None:
            return None
        try:
            batcher = self._batchers.get(DEFAULT_EMBEDDER)
            if batcher is None:
                batcher = self._batchers[DEFAULT_EMBEDDER] = self._new_batcher(load_embedder(DEFAULT_EMBEDDER))
            vector = await batcher.embed(parts[1])
        except Exception:  # request boundary: without an embedding the request is answered uncached
            log.exception("embedding a question for the semantic cache of %s failed", deployment.name)
            return None
        if self.semantic is None:
            self.semantic = SemanticCache(len(vector), self.settings.cache_max_entries)
        hit = self.semantic.get(parts[0], vector, threshold)
        if hit is not None:
            ctx.flags.append("semantic_cache")
            return hit
        return parts[0], vector

    async def stream(self, ctx: RequestContext, deployment: Deployment, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Answer a streaming request as SSE bytes; falls back only before the first chunk.

        On a RAG route the first chunk carries the citations.
        """
        body = await self.augment(ctx, body)
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
        cited = False
        said: list[str] | None = [] if ctx.request is not None else None  # the first choice's text, as sent
        chunk = first
        while chunk is not None:
            if ctx.ttft_s is None and chunk.get("choices"):
                ctx.ttft_s = time.perf_counter() - ctx.started
            if chunk.get("usage"):
                ctx.usage(chunk)
            self._finish_chunk(chunk, deployment, want_usage, held)
            if chunk.get("choices") or chunk.get("usage"):
                chunk["trace_id"] = ctx.trace_id
                if ctx.rag is not None and not cited:
                    chunk["citations"], cited = ctx.rag.citations(), True
                if said is not None:
                    said.extend(_delta_text(chunk))
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            chunk = await anext(chunks, None)
        ctx.upstream_ended = time.perf_counter()
        if said is not None:
            ctx.response = "".join(said)
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
            id=ctx.trace_id,
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
            retrieval=self._retrieval_of(ctx, upstream_s),
            request=ctx.request if ctx.record_content else None,
            response=ctx.response if ctx.record_content else None,
            subjects=ctx.subjects,
        )
        self._remember(ctx.trace_id, ctx.deployment, version)
        await self.traces.put(trace)  # made storable there: every string of it may come from the request
        if ctx.judge and ctx.status == 200 and ctx.request is not None and ctx.response is not None:
            sample = EvalSample(ctx.trace_id, ctx.deployment, version, _question(ctx.request), ctx.response,
                                list(ctx.contexts))  # fmt: skip
            self.online.offer(sample)

    @staticmethod
    def _retrieval_of(ctx: RequestContext, upstream_s: float | None) -> TraceRetrieval | None:
        route, rag = ctx.rag_route, ctx.rag
        if route is None or rag is None:
            return None
        return TraceRetrieval(
            index_version=route.index,
            prompt_version=route.prompt,
            chunks=rag.citations(),
            embed_ms=rag.embed_ms,
            search_ms=rag.search_ms,
            render_ms=rag.render_ms,
            generation_ms=None if upstream_s is None else upstream_s * 1000,
            failed="retrieval_failed" in ctx.flags,
        )

    def _remember(self, trace_id: str, deployment: str, version: str | None) -> None:
        self._recent[trace_id] = (deployment, version)
        if len(self._recent) > _RECENT_TRACES:
            self._recent.popitem(last=False)

    async def receive_feedback(self, headers: Mapping[str, str], body: object, client: str | None = None) -> Feedback:
        """Check and queue feedback sent to `POST /v1/feedback`; returns it as it will be stored.

        Raises:
            AuthenticationError: No, malformed, unknown, wrong or revoked key.
            PermissionDeniedError: The key lacks the `feedback` scope, or may not call the trace's deployment.
            BadRequestError: The body is not valid feedback (what was expected, what was found).
            TraceNotFoundError: No trace has this id.
        """
        key = await self._verify(headers.get("authorization"), client)
        if key is not None and not key.allows("feedback"):
            raise PermissionDeniedError(
                "this API key may not send feedback: it needs the `feedback` scope (or `*`)",
                hint="create one with `keel key create NAME --scope feedback --scope DEPLOYMENT`",
            )
        if not isinstance(body, dict):
            raise BadRequestError(f"expected a JSON object with a `trace_id`; got {type(body).__name__}")
        unknown = sorted(set(body) - _FEEDBACK_FIELDS)
        if unknown:
            raise BadRequestError(
                f"unknown feedback field {shown(str(unknown[0]), 64)}; expected {sorted(_FEEDBACK_FIELDS)}",
                param=storable(str(unknown[0]), 64),
            )
        details = body.get("details")
        if details is not None and not isinstance(details, dict):
            raise BadRequestError(f"expected `details` to be a JSON object; got {type(details).__name__}")
        try:
            made = make_feedback(
                body.get("trace_id"), score=body.get("score"), label=body.get("label"), comment=body.get("comment"),
                correction=body.get("correction"), source=body.get("source", "human"),
                actor=f"api-key:{key.id}" if key is not None else "anonymous", at=self.store.clock(), details=details,
            )  # fmt: skip
        except InputError as exc:
            raise BadRequestError(str(exc)) from None
        deployment, version = await self._trace_of(made.trace_id)
        if key is not None and not key.allows(deployment):
            raise PermissionDeniedError(
                f"this API key may not send feedback on deployment {shown(deployment, 128)}'s answers"
            )
        made = replace(made, deployment=deployment, model_version=version).storable()  # itself when already storable
        await self.feedback.put(made)
        return made

    async def _trace_of(self, trace_id: str) -> tuple[str, str | None]:
        """The deployment and model version of a trace: remembered, else read (waiting briefly for a fresh one)."""
        found = self._recent.get(trace_id)
        if found is not None:
            return found

        def read() -> tuple[str, str | None] | None:
            with self.store.db.read() as conn:
                row = conn.execute(
                    select(traces.c.deployment, traces.c.model_version).where(traces.c.id == trace_id)
                ).first()
            return None if row is None else (row.deployment, row.model_version)

        deadline = time.monotonic() + (_TRACE_WAIT_S if _issued_lately(trace_id, self.store.clock()) else 0)
        while True:
            row = await asyncio.to_thread(read)
            if row is not None:
                return row
            if time.monotonic() >= deadline:
                raise TraceNotFoundError(
                    f"no trace with id {trace_id!r}", hint="send the `trace_id` of an answer this gateway served",
                    param="trace_id",
                )  # fmt: skip
            await asyncio.sleep(0.2)


def _issued_lately(trace_id: str, now: datetime) -> bool:
    """Whether a ULID's timestamp is within the last minute (its trace may not be written yet)."""
    try:
        issued = ULID.from_str(trace_id).datetime
    except ValueError:
        return False
    return timedelta(0) <= now - issued <= timedelta(minutes=1)


def _delta_text(chunk: Mapping[str, Any]) -> list[str]:
    """The first choice's new text in a streamed chunk."""
    for choice in chunk.get("choices") or []:
        if isinstance(choice, dict) and int(choice.get("index", 0)) == 0:
            text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
            return [text] if isinstance(text, str) else []
    return []
