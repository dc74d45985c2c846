"""Schemathesis against the gateway's own `/openapi.json`: generated requests never get a 5xx."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from keel.registry import register_model
from keel.serve import create_deployment
from keel.store import Store

OPERATIONS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]


def test_generated_requests_never_get_a_server_error(
    store: Store,
    upstream: str,
    chat_versions: tuple[str, str],
    tiny_llama: Path,
    gateway_server: Any,
    api_key: str,
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    tiny = register_model(store, "tiny", tiny_llama)[0].ref
    create_deployment(store, "tiny", tiny, route={"backend": "transformers", "max_wait_ms": 0.0})
    with gateway_server(max_output_tokens=8) as (url, _), requests.Session() as session:
        served = session.get(f"{url}/openapi.json").json()
        # Generated `model` names would almost all be unknown (404): aim them at the two deployments.
        schema = copy.deepcopy(served)
        for model in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest"):
            schema["components"]["schemas"][model]["properties"]["model"] = {"enum": ["chat", "tiny"]}
        loaded = schemathesis.openapi.from_dict(schema)
        statuses: dict[str, list[int]] = {path: [] for path in OPERATIONS}
        # Valid requests (50 per operation), then invalid ones (25: wrong types, missing fields, …).
        for path, mode, examples in [(p, GenerationMode.POSITIVE, 50) for p in OPERATIONS] + [
            (p, GenerationMode.NEGATIVE, 25) for p in OPERATIONS
        ]:

            @given(case=loaded[path]["POST"].as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def call(case: schemathesis.Case) -> None:
                headers = {"authorization": f"Bearer {api_key}"}
                response = case.call(base_url=url, session=session, headers=headers, timeout=300)
                statuses[case.path].append(response.status_code)
                assert response.status_code < 500, (case.path, case.body, response.text[:500])

            call()
    for path, seen in statuses.items():
        assert len(seen) >= 40 and 200 in seen and 400 in seen, (path, seen)
