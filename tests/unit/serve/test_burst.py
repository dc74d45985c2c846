from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from keel.serve import Gateway, ServeSettings, create_app, create_deployment
from keel.store import Store
from keel.store.schema import lineage_edges, traces

# 2,000 requests, 31 times the 64 in flight: the count is what is checked, not the size. At 10,000 the test took
# ~27 CPU-s per database backend (5x this); the queue was never full at a put in either size on the shared 2-core
# machine (the writer keeps up), so the larger burst exercised no more of the writer than this one.
N = 2_000


@pytest.mark.slow
def test_trace_count_equals_request_count_after_a_burst(
    store: Store, upstream: str, chat_versions: tuple[str, str], api_key: str
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    # A small queue forces back-pressure: requests wait for the writer instead of traces being dropped.
    settings = ServeSettings(trace_queue_size=256, trace_batch_size=500)
    gateway = Gateway(store, settings)
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}

    async def burst() -> list[tuple[int, str]]:
        await gateway.start()
        limit = asyncio.Semaphore(64)
        transport = httpx.ASGITransport(create_app(gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:

            async def one() -> tuple[int, str]:
                async with limit:
                    response = await client.post(
                        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {api_key}"}
                    )
                    return response.status_code, "" if response.status_code == 200 else response.text

            statuses = await asyncio.gather(*(one() for _ in range(N)))
        await gateway.close()  # flushes the trace queue
        return statuses

    answers = asyncio.run(burst())
    failed = [answer for answer in answers if answer[0] != 200]
    assert not failed, f"{len(failed)} of {N} failed; first: {failed[:3]}"
    with store.db.read() as conn:
        assert conn.scalar(select(func.count()).select_from(traces)) == N
        served = select(func.count()).select_from(lineage_edges).where(lineage_edges.c.kind == "served")
        assert conn.scalar(served) == N
