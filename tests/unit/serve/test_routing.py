from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from keel.core.errors import InputError, NotFoundError
from keel.serve import (
    Route,
    canary_deployment,
    choose_route,
    create_deployment,
    deployment_history,
    get_deployment,
    list_deployments,
    promote_deployment,
    rollback_deployment,
)
from keel.store import Store, events

MESSAGES = [{"role": "user", "content": "hi"}]


def test_deployment_lifecycle_history_and_audit(store: Store, chat_versions: tuple[str, str]) -> None:
    created = create_deployment(store, "chat", "chat", route={"upstream": "http://u/v1", "price_in": 0.5})
    assert [r.model for r in created.routes] == ["chat@v2"]  # a bare name pins the latest version
    with pytest.raises(InputError, match="already exists"):
        create_deployment(store, "chat", "chat@v1", route={"upstream": "http://u/v1"})
    with pytest.raises(InputError, match="needs an upstream URL"):
        create_deployment(store, "x", "chat@v1")
    with pytest.raises(NotFoundError):
        create_deployment(store, "x", "missing@v1", route={"upstream": "http://u/v1"})
    with pytest.raises(InputError, match="nothing to promote"):
        promote_deployment(store, "chat")
    with pytest.raises(InputError, match="nothing to roll back"):
        rollback_deployment(store, "chat")
    with pytest.raises(InputError, match="between 1 and 99"):
        canary_deployment(store, "chat", "chat@v1", weight=100)

    canary = canary_deployment(store, "chat", "chat@v1", weight=10)
    assert [(r.model, r.weight, r.upstream, r.price_in) for r in canary.routes] == [
        ("chat@v2", 90, "http://u/v1", 0.5),
        ("chat@v1", 10, "http://u/v1", 0.5),  # the canary inherits the primary's backend
    ]
    promoted = promote_deployment(store, "chat")
    assert [(r.model, r.weight) for r in promoted.routes] == [("chat@v1", 100)]
    rolled = rollback_deployment(store, "chat")
    assert rolled.routes == canary.routes  # back to the routes before the last change
    history = deployment_history(store, "chat")
    assert [e.action for e in history] == ["create", "canary", "promote", "rollback"]
    assert history[0].from_routes is None and history[-1].from_routes == history[-2].to_routes
    with store.db.read() as conn:
        actions = [e.action for e in events(conn) if e.object_id == "deployment:chat"][::-1]  # newest first
    assert actions == ["deployment.create", "deployment.canary", "deployment.promote", "deployment.rollback"]
    assert [d.name for d in list_deployments(store)] == ["chat"]
    with pytest.raises(NotFoundError, match="no deployment named 'nope'"):
        get_deployment(store, "nope")


def test_sticky_routing_is_stable_and_weighted() -> None:
    routes = (Route(model="m@v1", upstream="u", weight=75), Route(model="m@v2", upstream="u", weight=25))
    picks = Counter(choose_route(routes, f"user-{i}").model for i in range(4000))
    assert 2700 < picks["m@v1"] < 3300
    assert all(choose_route(routes, "user-42") == choose_route(routes, "user-42") for _ in range(50))


@pytest.mark.slow
def test_canary_split_over_1000_requests(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    canary_deployment(store, "chat", "chat@v2", weight=10)
    with gateway_server() as (url, _):
        client = openai_client(url, api_key)
        seen: Counter[str] = Counter()
        for _ in range(1000):
            raw = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
            seen[raw.headers["x-keel-model-version"]] += 1
        # 10% of 1,000 is 100 with a standard deviation of ~9.5: ±40 is four of them.
        assert 60 <= seen["chat@v2"] <= 140 and seen["chat@v1"] + seen["chat@v2"] == 1000
        sticky = {
            client.chat.completions.with_raw_response.create(
                model="chat", messages=MESSAGES, extra_headers={"x-keel-user": "ada"}
            ).headers["x-keel-model-version"]
            for _ in range(30)
        }
        assert len(sticky) == 1


def test_rollback_under_load_drops_nothing(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    with gateway_server() as (url, gateway):
        client = openai_client(url, api_key)
        stop = threading.Event()
        versions: list[str] = []

        def load() -> int:
            done = 0
            while not stop.is_set():
                raw = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
                assert raw.http_response.status_code == 200
                versions.append(raw.headers["x-keel-model-version"])
                done += 1
            return done

        with ThreadPoolExecutor(4) as pool:
            workers = [pool.submit(load) for _ in range(4)]
            _wait_for_requests(versions, 10)
            canary_deployment(store, "chat", "chat@v2", weight=50)
            _wait_for_generation(gateway, 2)
            _wait_for_requests(versions, 20)
            promote_deployment(store, "chat")
            _wait_for_generation(gateway, 3)
            _wait_for_requests(versions, 10)
            rollback_deployment(store, "chat")  # back to the 50/50 canary
            rollback_deployment(store, "chat")  # and back to the promote: chat@v2 only
            _wait_for_generation(gateway, 5)
            marker = len(versions)
            _wait_for_requests(versions, 20)
            stop.set()
            counts = [w.result() for w in workers]  # re-raises any failed request
        assert sum(counts) == len(versions)
        # Requests in flight at the switch may still answer from the old routes; later ones never do.
        assert {"chat@v1", "chat@v2"} <= set(versions[:marker]) and set(versions[marker + 8 :]) == {"chat@v2"}


def _wait_for_requests(versions: list[str], more: int) -> None:
    target = len(versions) + more
    deadline = time.monotonic() + 60
    while len(versions) < target:
        assert time.monotonic() < deadline, "the load stalled"
        time.sleep(0.01)


def _wait_for_generation(gateway: Any, generation: int) -> None:
    deadline = time.monotonic() + 10
    while gateway.generation < generation:
        assert time.monotonic() < deadline, "the gateway did not pick up the change"
        time.sleep(0.02)
