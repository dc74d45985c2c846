"""Guarded rollouts end to end: the gateway serves, traces are written, the controller steps the canary."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import openai
import pytest
from sqlalchemy import func, select

from keel.core.errors import InputError
from keel.monitor import check_guard, get_rollout, parse_guard, start_rollout, step_rollouts
from keel.monitor._observe import Observation
from keel.serve import create_deployment, deployment_history, get_deployment
from keel.store import Store, events
from keel.store.schema import traces

MESSAGES = [{"role": "user", "content": "How much does the Summit Trail Tent cost?"}]
INTERVAL = timedelta(seconds=0.5)


def _traffic(store: Store, url: str, key: str, openai_client: Any, count: int) -> int:
    """Send `count` chat requests (8 at a time); returns how many failed. Waits until all are traced."""
    client = openai_client(url, key)
    with store.db.read() as conn:
        before = conn.scalar(select(func.count()).select_from(traces)) or 0

    def one(_: int) -> bool:
        try:
            client.chat.completions.create(model="chat", messages=MESSAGES)
            return False
        except openai.APIStatusError:
            return True

    with ThreadPoolExecutor(8) as pool:
        failed = sum(pool.map(one, range(count)))
    deadline = time.monotonic() + 30
    while True:
        with store.db.read() as conn:
            if (conn.scalar(select(func.count()).select_from(traces)) or 0) >= before + count:
                return failed
        assert time.monotonic() < deadline, "the traces were not written"
        time.sleep(0.05)


def _tick(store: Store) -> Any:
    rollout = get_rollout(store, "chat")
    assert rollout is not None
    wait = (max(rollout.window_start, rollout.updated_at) + INTERVAL - store.clock()).total_seconds()
    if wait > 0:
        time.sleep(wait)
    decisions = step_rollouts(store)
    assert len(decisions) == 1
    return decisions[0]


def _wait_for_routes(gateway: Any, models: list[str]) -> None:
    deadline = time.monotonic() + 10
    while [r.model for r in gateway.deployments["chat"].routes] != models:
        assert time.monotonic() < deadline, "the gateway did not pick up the change"
        time.sleep(0.02)


def test_a_canary_failing_20_percent_of_requests_is_rolled_back_automatically(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    start_rollout(store, "chat", "chat@v2", guards=["error_rate<1%", "p95_ms<800"], steps=[10, 50, 100],
                  interval=INTERVAL, route={"upstream": f"{upstream}/flaky/20/v1"}, min_requests=20)  # fmt: skip
    with gateway_server(rollout_check_s=0) as (url, gateway):  # this test ticks the controller itself
        _wait_for_routes(gateway, ["chat@v1", "chat@v2"])
        failed = _traffic(store, url, api_key, openai_client, 400)
        assert failed > 0  # the canary's upstream fails every fifth request
        decision = _tick(store)
        assert decision.decision == "rollback", decision.reason
        _wait_for_routes(gateway, ["chat@v1"])
        assert _traffic(store, url, api_key, openai_client, 50) == 0  # stable alone again: nothing fails
    assert [(r.model, r.weight) for r in get_deployment(store, "chat").routes] == [("chat@v1", 100)]
    rollback = deployment_history(store, "chat")[-1]
    assert rollback.action == "rollback" and rollback.evidence is not None
    error_guard = rollback.evidence["guards"][0]
    assert error_guard["guard"] == "error_rate<1%" and error_guard["breached"] and error_guard["confirmed"]
    assert 0.1 < error_guard["canary"] < 0.3 and error_guard["stable"] == 0.0 and error_guard["p_value"] < 0.05
    assert "breached" in decision.reason
    rollout = get_rollout(store, "chat")
    assert rollout is not None and rollout.state == "rolled_back"
    with store.db.read() as conn:
        actions = [e.action for e in events(conn) if e.object_id == "deployment:chat"][::-1]
    assert actions[-2:] == ["deployment.rollback", "rollout.rolled_back"]
    assert step_rollouts(store) == []  # a finished rollout is not checked again


def test_a_healthy_canary_is_promoted_step_by_step_to_100_percent(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    start_rollout(store, "chat", "chat@v2", guards=["error_rate<1%", "p95_ms<800", "feedback>=baseline-0.05"],
                  steps=[10, 50, 100], interval=INTERVAL, min_requests=20)  # fmt: skip
    with gateway_server(rollout_check_s=0) as (url, gateway):  # this test ticks the controller itself
        _wait_for_routes(gateway, ["chat@v1", "chat@v2"])
        # Too little canary traffic yet: the controller waits and says why.
        _traffic(store, url, api_key, openai_client, 5)
        waited = _tick(store)
        assert waited.decision == "wait" and "waiting for 20" in waited.reason
        assert _traffic(store, url, api_key, openai_client, 300) == 0
        stepped = _tick(store)
        assert stepped.decision == "step" and stepped.weight == 50, stepped.reason
        assert "feedback>=baseline-0.05: no feedback data" in stepped.reason  # no feedback recorded: not judged
        assert [r.weight for r in get_deployment(store, "chat").routes] == [50, 50]
        assert _traffic(store, url, api_key, openai_client, 200) == 0
        promoted = _tick(store)
        assert promoted.decision == "promote", promoted.reason
        _wait_for_routes(gateway, ["chat@v2"])
    assert [(r.model, r.weight) for r in get_deployment(store, "chat").routes] == [("chat@v2", 100)]
    history = deployment_history(store, "chat")
    assert [e.action for e in history] == ["create", "canary", "analysis", "canary", "promote"]
    assert [e.evidence["decision"] for e in history[1:]] == ["start", "wait", "step", "promote"]  # type: ignore[index]
    assert history[-1].evidence["canary"]["requests"] >= 20  # type: ignore[index]
    rollout = get_rollout(store, "chat")
    assert rollout is not None and rollout.state == "promoted"


def test_guards_parse_and_bad_rollouts_are_refused(store: Store, upstream: str, chat_versions: tuple[str, str]) -> None:
    assert parse_guard("error_rate<1%").value == pytest.approx(0.01)
    assert parse_guard("p95_ms < 0.8s").value == pytest.approx(800)
    relative = parse_guard("feedback>=baseline-0.05")
    assert relative.relative and relative.value == pytest.approx(-0.05) and relative.limit(0.9) == pytest.approx(0.85)
    for bad in ("error_rate", "latency<5", "error_rate<<1", "p95_ms<", "feedback>=baseline-x", "é<1"):
        with pytest.raises(InputError, match="guard"):
            parse_guard(bad)
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    with pytest.raises(InputError, match="ending at 100"):
        start_rollout(store, "chat", "chat@v2", guards=["error_rate<1%"], steps=[50, 10, 100], interval=INTERVAL)
    with pytest.raises(InputError, match="at least one --guard"):
        start_rollout(store, "chat", "chat@v2", guards=[], steps=[10, 100], interval=INTERVAL)
    with pytest.raises(InputError, match="other than the stable"):
        start_rollout(store, "chat", "chat@v1", guards=["error_rate<1%"], steps=[10, 100], interval=INTERVAL)
    start_rollout(store, "chat", "chat@v2", guards=["error_rate<1%"], steps=[10, 100], interval=INTERVAL)
    with pytest.raises(InputError, match="already has a rollout running"):
        start_rollout(store, "chat", "chat@v2", guards=["error_rate<1%"], steps=[10, 100], interval=INTERVAL)


def test_a_breach_stable_shares_is_held_not_blamed_on_the_canary() -> None:
    slow = [Observation(status=200, latency_ms=900.0 + i) for i in range(60)]
    held = check_guard(parse_guard("p95_ms<800"), slow, slow, 0.05)
    assert held.breached and not held.confirmed and held.p_value is not None and held.p_value > 0.05
    worse = check_guard(parse_guard("feedback>=baseline-0.05"), [Observation(feedback=0.5)] * 40,
                        [Observation(feedback=0.9)] * 40, 0.05)  # fmt: skip
    assert worse.breached and worse.confirmed and worse.limit == pytest.approx(0.85)
    # The evidence names the test's p-value as a reader expects it: "p<0.001", never "p=<0.001".
    assert worse.sentence.endswith("(canary worse than stable: p<0.001)"), worse.sentence
    assert held.sentence.endswith(f"(canary worse than stable: p={held.p_value:.3f})"), held.sentence


def test_two_controllers_ticking_at_once_take_each_check_once(
    store: Store, upstream: str, chat_versions: tuple[str, str]
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    start_rollout(store, "chat", "chat@v2", guards=["error_rate<1%"], steps=[10, 100], interval=timedelta(seconds=2))
    # Due once; the next check is 2 s after whichever tick takes this one (with a 1 ms interval a tick that
    # read the rollout just after another's claim found a new check due and rightly took it too).
    time.sleep(2.05)
    barrier = threading.Barrier(4)

    def tick(_: int) -> int:
        barrier.wait()
        return len(step_rollouts(store))

    with ThreadPoolExecutor(4) as pool:
        taken = list(pool.map(tick, range(4)))
    assert sum(taken) == 1
    assert [e.action for e in deployment_history(store, "chat")] == ["create", "canary", "analysis"]


def test_two_gateway_replicas_drive_a_rollout_to_promotion_and_take_each_check_once(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    # (No latency guard: on a loaded test machine the p95 of a stub answer may pass 800 ms.)
    start_rollout(store, "chat", "chat@v2", guards=["error_rate<1%"], steps=[10, 50, 100], interval=INTERVAL,
                  min_requests=20)  # fmt: skip
    # Two replicas on one workspace, each looking for due checks every 20 ms; nobody calls step_rollouts here.
    with gateway_server(rollout_check_s=0.02) as (first, _), gateway_server(rollout_check_s=0.02) as (second, _):
        deadline = time.monotonic() + 120
        while (rollout := get_rollout(store, "chat")) is not None and rollout.state == "running":
            assert time.monotonic() < deadline, "the gateways did not finish the rollout"
            for url in (first, second):
                assert _traffic(store, url, api_key, openai_client, 30) == 0
    history = deployment_history(store, "chat")
    assert rollout is not None and rollout.state == "promoted", [e.evidence for e in history]
    assert [(r.model, r.weight) for r in get_deployment(store, "chat").routes] == [("chat@v2", 100)]
    checks = [e.evidence for e in history if e.evidence and "window" in e.evidence]
    decisions = [c["decision"] for c in checks]
    assert decisions.count("step") == 1 and decisions[-1] == "promote" and set(decisions) <= {"wait", "step", "promote"}
    # One actor per check: consecutive checks are at least one interval apart (two replicas acting on one
    # check would leave two decisions milliseconds apart).
    ends = [datetime.fromisoformat(c["window"][1].replace("Z", "+00:00")) for c in checks]
    assert all(later - earlier >= INTERVAL for earlier, later in itertools.pairwise(ends)), ends
