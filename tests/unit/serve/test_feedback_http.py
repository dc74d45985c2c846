"""Feedback over HTTP: the `openai` client's trace id, `POST /v1/feedback`, bad input, online evaluation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from keel.core.ids import new_ulid
from keel.govern import create_key
from keel.monitor import feedback_scores, get_trace_contents, list_feedback, summarize
from keel.serve import DeploymentSettings, create_deployment
from keel.serve._online_eval import EvalSample
from keel.store import Store, walk


def _until(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_feedback_over_http_with_the_openai_clients_trace_id(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    create_deployment(store, "other", "chat@v2", route={"upstream": f"{upstream}/v1"})
    key = create_key(store, "app", scopes=["chat", "feedback"]).secret
    no_scope = create_key(store, "chat-only", scopes=["chat"]).secret
    other_key = create_key(store, "other", scopes=["other"]).secret  # before the gateway starts: its key list is fresh
    with gateway_server() as (url, _gateway):
        client = openai_client(url, key)
        raw = client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "How long do returns take?"}]
        )
        chat = raw.parse()
        trace_id = chat.model_extra["trace_id"]
        assert raw.headers["x-keel-trace-id"] == trace_id and len(trace_id) == 26
        question = [{"role": "user", "content": "a b"}]
        stream = client.chat.completions.create(model="chat", messages=question, stream=True)
        streamed_ids = {c.model_extra["trace_id"] for c in stream}
        assert len(streamed_ids) == 1 and streamed_ids != {trace_id}
        other = openai_client(url, other_key)
        other_trace = other.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])

        auth = {"Authorization": f"Bearer {key}"}
        refused_chat = httpx.post(
            f"{url}/v1/chat/completions", headers=auth, json={"model": "other", "messages": question}
        )
        assert refused_chat.status_code == 403 and len(refused_chat.headers["x-keel-trace-id"]) == 26
        sent = httpx.post(f"{url}/v1/feedback", headers=auth, json={
            "trace_id": trace_id, "score": "down", "comment": "wrong: 30 days, café ☕",
            "correction": "Returns take 30 days."})  # fmt: skip
        assert sent.status_code == 202, sent.text
        assert sent.json()["trace_id"] == trace_id and sent.json()["score"] == 0.0
        rated = httpx.post(f"{url}/v1/feedback", headers=auth, json={"trace_id": trace_id.lower(), "score": 0.75,
                                                                     "label": "helpfulness"})  # fmt: skip
        assert rated.status_code == 202, rated.text

        def post(body: Any, secret: str | None = key, **kw: Any) -> httpx.Response:
            headers = {"Authorization": f"Bearer {secret}"} if secret else {}
            if body is not None:
                kw["json"] = body
            return httpx.post(f"{url}/v1/feedback", headers=headers, **kw)

        refused = {
            "score out of range": (post({"trace_id": trace_id, "score": 2}), 400, "a number from 0 to 1"),
            "score not a number": (post({"trace_id": trace_id, "score": "meh"}), 400, "thumbs 'up'/'down'"),
            "NaN score": (
                post(None, content=b'{"trace_id": "%s", "score": NaN}' % trace_id.encode()),
                400,
                "a number from 0 to 1",
            ),
            "nothing given": (post({"trace_id": trace_id}), 400, "at least one of `score`"),
            "unknown field": (post({"trace_id": trace_id, "score": 1, "rating": 5}), 400, "unknown feedback field"),
            "bad source": (post({"trace_id": trace_id, "score": 1, "source": "bot"}), 400, "`source`"),
            "bad label": (post({"trace_id": trace_id, "score": 1, "label": ""}), 400, "`label`"),
            "bad trace id": (post({"trace_id": "x'; DROP TABLE feedback", "score": 1}), 400, "26-character"),
            "not an object": (post([trace_id]), 400, "JSON object"),
            "unknown trace": (post({"trace_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "score": 1}), 404, "no trace"),
            "no key": (post({"trace_id": trace_id, "score": 1}, secret=None), 401, "API key"),
            "no feedback scope": (post({"trace_id": trace_id, "score": 1}, secret=no_scope), 403, "`feedback` scope"),
            "other deployment": (post({"trace_id": other_trace.model_extra["trace_id"], "score": 1}), 403, "other"),
        }
        for case, (response, status, words) in refused.items():
            assert response.status_code == status, (case, response.text)
            assert words in response.json()["error"]["message"], (case, response.text)
        garbage = httpx.post(f"{url}/v1/feedback", headers=auth, content=b"\xff{not json")
        assert garbage.status_code == 400 and "JSON" in garbage.json()["error"]["message"]
        huge = httpx.post(f"{url}/v1/feedback", headers=auth, json={"trace_id": trace_id, "comment": "x" * 70_000})
        assert huge.status_code == 413
        odd = b'{"trace_id": "%s", "score": 1, "comment": "\\ud800 \\u0000 ok"}' % trace_id.encode()
        lone = httpx.post(f"{url}/v1/feedback", headers={**auth, "Content-Type": "application/json"}, content=odd)
        assert lone.status_code == 202, lone.text

        async def many() -> list[int]:
            async with httpx.AsyncClient(base_url=url, headers=auth) as http:
                answers = await asyncio.gather(*(http.post("/v1/feedback", json={"trace_id": trace_id, "score": i % 2})
                                                 for i in range(64)))  # fmt: skip
            return [a.status_code for a in answers]

        assert asyncio.run(many()) == [202] * 64
        _until(lambda: _gateway.feedback.written == 3 + 64)
        assert "keel_feedback_written_total 67.0" in httpx.get(f"{url}/metrics").text
    # The gateway stopped: its feedback writer flushed everything it accepted.
    stored = list_feedback(store, trace_id=trace_id, limit=None)
    assert len(stored) == 3 + 64
    corrected = next(f for f in stored if f.correction)
    assert corrected.correction == "Returns take 30 days." and corrected.comment == "wrong: 30 days, café ☕"
    assert corrected.deployment == "chat" and corrected.model_version == "chat@v1" and corrected.source == "human"
    assert corrected.actor.startswith("api-key:")
    assert next(f for f in stored if f.comment and "ok" in f.comment and "\\ud800" in f.comment).score == 1.0
    assert feedback_scores(store, "chat", label="helpfulness") == [0.75]
    with store.db.read() as conn:
        below = {hit.node for hit in walk(conn, f"trace:{trace_id}", "downstream")}
    assert {f.node for f in stored} <= below
    rows = {r.deployment: r for r in summarize(store)}
    assert rows["chat"].feedback == 67 and rows["chat"].requests == 2 and rows["other"].feedback == 0
    assert rows["chat"].feedback_score == pytest.approx((0 + 0.75 + 1 + 32) / 67)
    contents = get_trace_contents(store, [trace_id])
    assert contents[trace_id].messages == [{"role": "user", "content": "How long do returns take?"}]
    assert contents[trace_id].response == "chat: How long do returns take?"


def test_feedback_waits_briefly_for_a_trace_written_by_another_replica(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, openai_client: Any, api_key: str
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    with gateway_server() as (url, _), gateway_server() as (other_url, _):
        answer = openai_client(url, api_key).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        # The other replica never saw this answer: it reads the trace, waiting for its batch if needed.
        sent = httpx.post(f"{other_url}/v1/feedback", headers={"Authorization": f"Bearer {api_key}"},
                          json={"trace_id": answer.model_extra["trace_id"], "score": "up"})  # fmt: skip
        assert sent.status_code == 202, sent.text
        stale = httpx.post(f"{other_url}/v1/feedback", headers={"Authorization": f"Bearer {api_key}"},
                           json={"trace_id": new_ulid(), "score": "up"})  # fmt: skip
        assert stale.status_code == 404 and stale.json()["error"]["code"] == "trace_not_found"
    assert [f.model_version for f in list_feedback(store)] == ["chat@v1"]


def test_online_evaluation_scores_a_sample_in_the_background(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, openai_client: Any, api_key: str
) -> None:
    settings = DeploymentSettings(online_eval=1.0, record_content=False)
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"}, settings=settings)
    with gateway_server() as (url, gateway):
        client = openai_client(url, api_key)
        ids = [
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": text}]).model_extra[
                "trace_id"
            ]
            for text in ("What is the refund window?", "Mail me at jane.doe@example.com please")
        ]
        _until(lambda: gateway.online.scored == 2, timeout=120)
        metrics = httpx.get(f"{url}/metrics").text
        assert "keel_online_eval_scored_total 2.0" in metrics and "keel_online_eval_dropped_total 0.0" in metrics
    judged = list_feedback(store, source="judge", limit=None)
    assert {(f.trace_id, f.label) for f in judged} == {
        (t, label) for t in ids for label in ("answer_relevance", "guardrail:pii", "guardrail:injection")
    }
    by = {(f.trace_id, f.label): f for f in judged}
    assert by[(ids[1], "guardrail:pii")].score == 0.0 and by[(ids[0], "guardrail:pii")].score == 1.0
    assert all(0 <= f.score <= 1 and f.actor == "online-eval" and f.model_version == "chat@v1" for f in judged)  # type: ignore[operator]
    assert get_trace_contents(store, ids) == {}  # judged, but content not recorded
    (row,) = summarize(store)
    assert row.judge_score is not None and row.feedback == 6 and row.feedback_score is None


def test_online_evaluation_judges_groundedness_only_with_retrieved_contexts(store: Store) -> None:
    from keel.monitor import FeedbackWriter
    from keel.serve._guardrails import Guardrails
    from keel.serve._online_eval import OnlineEvaluator

    evaluator = OnlineEvaluator(store, FeedbackWriter(store), Guardrails())
    question, answer = "How long is the refund window?", "The refund window is 30 days."
    plain = evaluator.score(EvalSample(new_ulid(), "chat", "chat@v1", question, answer))
    assert [f.label for f in plain] == ["answer_relevance", "guardrail:pii", "guardrail:injection"]
    grounded = evaluator.score(EvalSample(new_ulid(), "rag", "chat@v1", question, answer,
                                          ["Refunds are accepted within 30 days of delivery."]))  # fmt: skip
    ungrounded = evaluator.score(EvalSample(new_ulid(), "rag", "chat@v1", question, answer,
                                            ["Our office is in Lyon and opens at 9."]))  # fmt: skip
    score = {f.label: f.score for f in grounded}
    assert score["groundedness"] == 1.0 and {f.label: f.score for f in ungrounded}["groundedness"] == 0.0
    assert all(f.source == "judge" for f in grounded)
