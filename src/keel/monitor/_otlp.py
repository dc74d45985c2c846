"""OTLP export of traces as OpenTelemetry spans with the GenAI semantic conventions' attributes.

Off unless `KEEL_OTLP_ENDPOINT` is set. Spans go through the OpenTelemetry SDK's batch processor and
OTLP/HTTP (protobuf) exporter, both on the SDK's own thread: a slow or absent collector costs the
gateway nothing but dropped spans (the SDK's bounded queue), never a blocked or failed request.
The provider is this exporter's own (no global tracer provider is installed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from keel.monitor._traces import Trace

__all__ = ["OtlpExporter"]

log = logging.getLogger(__name__)

# Keel's operation names → `gen_ai.operation.name` values.
_OPERATIONS = {"chat": "chat", "completion": "text_completion", "embeddings": "embeddings"}


class OtlpExporter:
    """Sends traces as spans to an OTLP/HTTP endpoint (Jaeger, Tempo, Phoenix, Langfuse, a collector).

    Args:
        endpoint: The collector's base URL (`http://host:4318`) or its full `/v1/traces` URL.
        provider_of: The `gen_ai.provider.name` of a trace (the backend that answered it).
        service_name: The `service.name` of the spans' resource.
        queue_size: Spans the SDK holds while the collector is slow; beyond it new spans are dropped.
        timeout_s: Timeout of one export request.

    Examples:
        >>> exporter = OtlpExporter("http://127.0.0.1:4318")  # doctest: +SKIP
        >>> exporter.export([trace]); exporter.shutdown()  # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint: str,
        *,
        provider_of: Callable[[Trace], str] | None = None,
        service_name: str = "keel-gateway",
        queue_size: int = 8192,
        timeout_s: float = 5.0,
    ) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
        self.url = url
        self._provider_of = provider_of
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        exporter = OTLPSpanExporter(endpoint=url, timeout=timeout_s)
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=queue_size, schedule_delay_millis=500)
        )
        self._tracer = self._provider.get_tracer("keel.monitor")

    def export(self, batch: list[Trace]) -> None:
        """Queue one span per trace; returns at once (the SDK's thread sends them)."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        for trace in batch:
            end = int(trace.at.timestamp() * 1e9)
            start = end - int(trace.latency_ms * 1e6)
            operation = _OPERATIONS.get(trace.operation, trace.operation)
            span = self._tracer.start_span(
                f"{operation} {trace.deployment}",
                kind=SpanKind.SERVER,
                start_time=start,
                attributes=self._attributes(trace, operation),
            )
            if trace.status >= 500:
                span.set_status(Status(StatusCode.ERROR, trace.error or str(trace.status)))
            span.end(end_time=end)

    def _attributes(self, trace: Trace, operation: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": trace.deployment,
            "gen_ai.usage.input_tokens": trace.tokens_in,
            "gen_ai.usage.output_tokens": trace.tokens_out,
            "http.response.status_code": trace.status,
            "keel.trace.id": trace.id,
            "keel.cache_hit": trace.cache_hit,
            "keel.cost": trace.cost,
            "keel.flags": list(trace.flags),
        }
        if self._provider_of is not None:
            attributes["gen_ai.provider.name"] = self._provider_of(trace)
        optional = {"gen_ai.response.model": trace.model_version, "error.type": trace.error,
                    "keel.prompt_version": trace.prompt_version, "keel.key_id": trace.key_id,
                    "keel.time_to_first_token_ms": trace.ttft_ms}  # fmt: skip
        attributes.update({k: v for k, v in optional.items() if v is not None})
        return attributes

    def shutdown(self) -> None:
        """Send what is queued (bounded by the export timeout) and stop the SDK's thread."""
        self._provider.shutdown()
