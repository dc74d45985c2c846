"""Prometheus metrics of one gateway, following the OpenTelemetry GenAI semantic conventions.

Names are the conventions' instruments as the OpenTelemetry→Prometheus mapping writes them (dots
become underscores, the unit `s` becomes the suffix `_seconds`), with the conventions' bucket
boundaries. The gateway is a GenAI *server* to its callers (request duration, time to first token,
time per output token) and a GenAI *client* of the backend it calls (operation duration, token
usage): the two durations measure different spans of time. Label values come only from the
deployment table and fixed sets, never from a request, so no caller can grow the exposition.
Each gateway owns its `CollectorRegistry` (no process-global state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["GatewayMetrics", "RequestMeasure", "UNKNOWN"]

UNKNOWN = "unknown"
"""The one label value of anything not in the deployment table (a bad `model`, a request never routed)."""

# Bucket boundaries the GenAI semantic conventions advise for each instrument.
_OPERATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# Keel's operation names → `gen_ai.operation.name` values.
OPERATION_NAMES = {"chat": "chat", "completion": "text_completion", "embeddings": "embeddings"}

_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")


@dataclass(frozen=True, slots=True)
class RequestMeasure:
    """One finished, authenticated request, with every label value already taken from known sets.

    `upstream_s` is None when no backend was called (cache hit, refused before routing);
    `ttft_s` is set for streams only.
    """

    operation: str
    provider: str
    request_model: str
    response_model: str
    status: int
    seconds: float
    error_type: str = ""
    upstream_s: float | None = None
    ttft_s: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cache_hit: bool = False


class _TraceWriterCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, doc in (("written", "Traces stored."), ("quarantined", "Traces the database refused, kept aside in "
                          ".keel/traces/quarantine.jsonl."), ("spilled", "Traces written to a spill file instead "
                          "(shutdown, or a failing writer); stored at the next start.")):  # fmt: skip
            yield CounterMetricFamily(f"keel_traces_{name}", doc, value=stats[name])
        yield GaugeMetricFamily("keel_trace_queue_depth", "Traces waiting to be written.", value=stats["queued"])
        yield GaugeMetricFamily("keel_trace_writer_healthy", "1 when the trace writer writes.", value=stats["healthy"])


class _FeedbackCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, doc in (("written", "Feedback rows stored."), ("quarantined", "Feedback the database refused, kept "
                          "aside in .keel/feedback/quarantine.jsonl."), ("spilled", "Feedback written to a spill file "
                          "instead; stored at the next start.")):  # fmt: skip
            yield CounterMetricFamily(f"keel_feedback_{name}", doc, value=stats[name])
        yield GaugeMetricFamily("keel_feedback_queue_depth", "Feedback waiting to be written.", value=stats["queued"])
        yield CounterMetricFamily("keel_online_eval_scored", "Answers scored by online evaluation.",
                                  value=stats["judged"])  # fmt: skip
        yield CounterMetricFamily("keel_online_eval_dropped", "Samples dropped because the judging queue was full.",
                                  value=stats["dropped"])  # fmt: skip


class GatewayMetrics:
    """The gateway's metrics and their text exposition.

    Examples:
        >>> metrics = GatewayMetrics()
        >>> metrics.observe(RequestMeasure("chat", "openai", "chat", "chat@v1", 200, 0.01, upstream_s=0.008,
        ...                                tokens_in=5, tokens_out=7))
        >>> b"gen_ai_client_token_usage_count" in metrics.render()
        True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.server_duration = Histogram(
            "gen_ai_server_request_duration", "Time the gateway took to answer a request (server side).",
            [*_LABELS, "error_type"], unit="seconds", buckets=_OPERATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.client_duration = Histogram(
            "gen_ai_client_operation_duration", "Time of the gateway's call to the backend (the gateway as client).",
            [*_LABELS, "error_type"], unit="seconds", buckets=_OPERATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Histogram(
            "gen_ai_client_token_usage", "Tokens the backend reports per call, by gen_ai_token_type (input, output).",
            [*_LABELS, "gen_ai_token_type"], buckets=_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token", "Time from the request to the first streamed chunk.",
            _LABELS, unit="seconds", buckets=_TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.tpot = Histogram(
            "gen_ai_server_time_per_output_token", "Time per output token after the first, of streamed answers.",
            _LABELS, unit="seconds", buckets=_TPOT_BUCKETS, registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "keel_gateway_requests", "Authenticated requests answered, by HTTP status.",
            ["gen_ai_request_model", "status"], registry=r,
        )  # fmt: skip
        self.cache_hits = Counter(
            "keel_gateway_cache_hits", "Requests answered from the response cache.", ["gen_ai_request_model"],
            registry=r,
        )  # fmt: skip
        self.unauthenticated = Counter(
            "keel_gateway_unauthenticated_requests", "Requests refused before authentication (not traced), by code.",
            ["reason"], registry=r,
        )  # fmt: skip

        self._series: dict[tuple[str, tuple[str, ...]], Any] = {}

    def watch_traces(self, stats: Callable[[], dict[str, int]]) -> None:
        """Expose the trace writer's counters; `stats` returns written, quarantined, spilled, queued, healthy."""
        self.registry.register(_TraceWriterCollector(stats))

    def watch_feedback(self, stats: Callable[[], dict[str, int]]) -> None:
        """Expose the feedback writer's and online evaluation's counters (`stats`: written, …, judged, dropped)."""
        self.registry.register(_FeedbackCollector(stats))

    def observe(self, m: RequestMeasure) -> None:
        """Record one finished, authenticated request."""
        values = (OPERATION_NAMES.get(m.operation, m.operation), m.provider, m.request_model, m.response_model)
        child = self._child
        child(self.server_duration, (*values, m.error_type)).observe(m.seconds)
        if m.upstream_s is not None:
            child(self.client_duration, (*values, m.error_type)).observe(m.upstream_s)
            if m.status < 400:
                child(self.tokens, (*values, "input")).observe(m.tokens_in)
                if m.operation != "embeddings":
                    child(self.tokens, (*values, "output")).observe(m.tokens_out)
        if m.ttft_s is not None:
            child(self.ttft, values).observe(m.ttft_s)
            if m.status < 400 and m.tokens_out > 1:
                child(self.tpot, values).observe((m.seconds - m.ttft_s) / (m.tokens_out - 1))
        child(self.requests, (m.request_model, str(m.status))).inc()
        if m.cache_hit:
            child(self.cache_hits, (m.request_model,)).inc()

    def _child(self, metric: Any, values: tuple[str, ...]) -> Any:
        # Hand-written for speed: `labels()` takes a lock and validates on every call (~5 µs each), so
        # each series is looked up once and then found in a dict. Label values come from known sets only.
        key = (metric._name, values)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = metric.labels(*values)
        return found

    def refused(self, reason: str) -> None:
        """Count a request refused before it was authenticated (`reason` from a fixed set of error codes)."""
        self.unauthenticated.labels(reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
