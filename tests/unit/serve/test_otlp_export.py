"""OTLP export against a small OTLP/HTTP receiver on 127.0.0.1 that decodes the protobuf payload."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from keel.core.settings import load_settings
from keel.monitor import list_traces
from keel.serve import Gateway, ServeSettings, create_app, create_deployment, serve_in_thread
from keel.store import Store, open_store


class _Receiver(BaseHTTPRequestHandler):
    spans: list[Any]

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
            for scope in resource.scope_spans:
                self.server.spans.extend((self.path, service, span) for span in scope.spans)  # type: ignore[attr-defined]
        body = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.spans = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.spans  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        value = getattr(a.value, kind)
        out[a.key] = [v.string_value for v in value.values] if kind == "array_value" else value
    return out


def _serve(store: Store, endpoint: str, api_key: str, requests: list[dict[str, Any]]) -> list[int]:
    exporting = open_store(load_settings(store.settings.workspace, otlp_endpoint=endpoint))
    try:
        with serve_in_thread(create_app(Gateway(exporting, ServeSettings(reload_interval_s=0.1)))) as url:
            auth = {"authorization": f"Bearer {api_key}"}
            return [httpx.post(f"{url}{r.pop('path')}", json=r, headers=auth).status_code for r in requests]
    finally:
        exporting.close()


def test_traces_are_exported_as_genai_spans(
    store: Store, upstream: str, chat_versions: tuple[str, str], api_key: str, receiver: tuple[str, list[Any]]
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    endpoint, spans = receiver
    statuses = _serve(store, endpoint, api_key, [
        {"path": "/v1/chat/completions", "model": "chat", "messages": [{"role": "user", "content": "one two"}]},
        {"path": "/v1/completions", "model": "chat", "prompt": "x"},
        {"path": "/v1/chat/completions", "model": "nope", "messages": [{"role": "user", "content": "hi"}]},
    ])  # fmt: skip
    assert statuses == [200, 200, 404]
    # The gateway stopped: its exporter sent every span before close returned.
    assert sorted(span.name for _, _, span in spans) == ["chat chat", "chat nope", "text_completion chat"]
    assert {(path, service) for path, service, _ in spans} == {("/v1/traces", "keel-gateway")}
    by_name = {span.name: span for _, _, span in spans}
    chat = _attributes(by_name["chat chat"])
    trace = next(t for t in list_traces(store) if t.deployment == "chat" and t.operation == "chat")
    assert chat == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "chat",
        "gen_ai.response.model": "chat@v1", "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 3,
        "http.response.status_code": 200, "keel.trace.id": trace.id, "keel.cache_hit": False, "keel.cost": 0.0,
        "keel.flags": [], "keel.key_id": trace.key_id,
    }  # fmt: skip
    assert by_name["chat chat"].kind == 2  # SPAN_KIND_SERVER
    span_ms = (by_name["chat chat"].end_time_unix_nano - by_name["chat chat"].start_time_unix_nano) / 1e6
    assert span_ms == pytest.approx(trace.latency_ms, abs=0.01)
    missing = _attributes(by_name["chat nope"])
    assert missing["error.type"] == "invalid_request_error" and missing["gen_ai.provider.name"] == "unknown"


def test_an_unreachable_collector_costs_no_request_and_no_trace(
    store: Store, upstream: str, chat_versions: tuple[str, str], api_key: str
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    request = {"path": "/v1/chat/completions", "model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    assert _serve(store, dead, api_key, [dict(request) for _ in range(5)]) == [200] * 5
    assert len(list_traces(store)) == 5
