"""Prometheus metrics of one gateway, named after the OpenTelemetry GenAI semantic conventions.

Each gateway owns its `CollectorRegistry` (no process-global state), so several apps can live in
one process, as tests and benchmarks do. Durations are in seconds, as the conventions say.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["GatewayMetrics"]

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)


class GatewayMetrics:
    """The gateway's metrics and their text exposition.

    Examples:
        >>> metrics = GatewayMetrics()
        >>> metrics.observe("chat", "chat", "chat@v1", 200, 0.01, None, 5, 7)
        >>> b"gen_ai_client_token_usage_count" in metrics.render()
        True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        labels = ("gen_ai_operation_name", "gen_ai_request_model", "gen_ai_response_model")
        self.duration = Histogram(
            "gen_ai_client_operation_duration",
            "GenAI operation duration in seconds, as the gateway's callers see it.",
            [*labels, "error_type"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.server_duration = Histogram(
            "gen_ai_server_request_duration",
            "Time the gateway spent on a request, in seconds.",
            [*labels, "error_type"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per request, by gen_ai_token_type (input or output).",
            [*labels, "gen_ai_token_type"],
            buckets=_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token",
            "Time to the first streamed token, in seconds.",
            labels,
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "keel_gateway_requests", "Requests answered, by HTTP status.", ["gen_ai_request_model", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.cache_hits = Counter(
            "keel_gateway_cache_hits", "Requests answered from the response cache.", ["gen_ai_request_model"],
            registry=self.registry,
        )  # fmt: skip

    def observe(
        self,
        operation: str,
        deployment: str,
        model_version: str | None,
        status: int,
        seconds: float,
        ttft_s: float | None,
        tokens_in: int,
        tokens_out: int,
        *,
        error_type: str = "",
        cache_hit: bool = False,
    ) -> None:
        """Record one finished request."""
        values = (operation, deployment, model_version or "")
        self.duration.labels(*values, error_type).observe(seconds)
        self.server_duration.labels(*values, error_type).observe(seconds)
        if status < 400:
            self.tokens.labels(*values, "input").observe(tokens_in)
            self.tokens.labels(*values, "output").observe(tokens_out)
        if ttft_s is not None:
            self.ttft.labels(*values).observe(ttft_s)
        self.requests.labels(deployment, str(status)).inc()
        if cache_hit:
            self.cache_hits.labels(deployment).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
