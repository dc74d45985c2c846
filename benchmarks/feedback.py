"""Feedback ingestion: `POST /v1/feedback` at concurrency 32, and what it does to chat latency, in one run.

Two servers run as separate processes on 127.0.0.1: the instant stub upstream and Keel's gateway
(`keel serve`: keys, validation, traces with recorded content, feedback writer, all on; SQLite).
A raw keep-alive HTTP/1.1 client (asyncio streams, as in gateway_overhead.py) first primes traces,
then each round measures, alternately:
  1. chat straight to the stub at concurrency `--chat-concurrency` (the floor);
  2. the same chat through Keel: added p50 = Keel's p50 - the stub's;
  3. a feedback flood through Keel at concurrency 32: feedback/s and server CPU per feedback;
  4. chat through Keel again while feedback arrives at a steady `--paced-rate` per second:
     the added p50 with feedback flowing, to compare with (2).
After the gateway stops (flushing its writers), the feedback rows in the database are counted
against the posts answered 202: none may be missing. Prints one JSON line; the figures are medians over rounds.

    python benchmarks/feedback.py [--rounds 3] [--feedback 8000] [--chat 400] [--paced-rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import _free_port, _keel_workspace, _start, _stop, _wait_ready  # noqa: E402

CHAT = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}).encode()


def _post(port: int, path: str, body: bytes, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def _worker(port: int, requests: list[bytes], expect: int, latencies: list[float], pace_s: float = 0.0) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        next_at = time.perf_counter()
        for request in requests:
            if pace_s:
                next_at += pace_s
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            started = time.perf_counter()
            status, body = await _exchange(reader, writer, request)
            if status != expect:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _run(port: int, requests: list[bytes], expect: int, concurrency: int, pace_s: float = 0.0,
               latencies: list[float] | None = None) -> list[float]:  # fmt: skip
    latencies = [] if latencies is None else latencies
    shares = [requests[i::concurrency] for i in range(concurrency)]
    await asyncio.gather(*(_worker(port, share, expect, latencies, pace_s) for share in shares))
    return latencies


async def _prime(port: int, key: str, n: int) -> list[str]:
    """Trace ids of `n` chat answers (read from the answers' `trace_id` field)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ids = []
    try:
        for _ in range(n):
            status, body = await _exchange(reader, writer, _post(port, "/v1/chat/completions", CHAT, key))
            assert status == 200, body
            ids.append(json.loads(body)["trace_id"])
    finally:
        writer.close()
    return ids


def _feedback_requests(port: int, key: str, ids: list[str], n: int, offset: int) -> list[bytes]:
    bodies = []
    for i in range(offset, offset + n):
        body: dict[str, Any] = {"trace_id": ids[i % len(ids)], "score": "up" if i % 3 else "down"}
        if i % 10 == 0:
            body["correction"] = "A corrected answer, as a reviewer would write it."
        bodies.append(_post(port, "/v1/feedback", json.dumps(body).encode(), key))
    return bodies


def _p50_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def _round(stub: tuple[int, int], keel: tuple[int, int], key: str, ids: list[str], args: argparse.Namespace,
           sent: list[int]) -> dict[str, Any]:  # fmt: skip
    (stub_port, _), (keel_port, keel_pid) = stub, keel
    chat_c = args.chat_concurrency
    direct = asyncio.run(_run(stub_port, [_post(stub_port, "/v1/chat/completions", CHAT, None)] * args.chat, 200,
                              chat_c))  # fmt: skip
    alone = asyncio.run(_run(keel_port, [_post(keel_port, "/v1/chat/completions", CHAT, key)] * args.chat, 200, chat_c))
    flood = _feedback_requests(keel_port, key, ids, args.feedback, sum(sent))
    process = psutil.Process(keel_pid)
    cpu_before = sum(process.cpu_times()[:2])
    started = time.perf_counter()
    asyncio.run(_run(keel_port, flood, 202, 32))
    seconds = time.perf_counter() - started
    cpu = sum(process.cpu_times()[:2]) - cpu_before
    sent.append(len(flood))

    async def mixed() -> list[float]:
        # Enough paced feedback to outlast the chat requests; counted as sent once answered.
        paced = _feedback_requests(keel_port, key, ids, int(args.paced_rate * 60), sum(sent))
        answered: list[float] = []
        pacer = asyncio.ensure_future(_run(keel_port, paced, 202, 32, 32 / args.paced_rate, answered))
        await asyncio.sleep(0.5)  # let the pace settle
        chat = await _run(keel_port, [_post(keel_port, "/v1/chat/completions", CHAT, key)] * args.chat, 200, chat_c)
        pacer.cancel()
        try:
            await pacer
        except asyncio.CancelledError:
            pass
        sent.append(len(answered))  # (a post cut off by the cancel may be stored without being counted here)
        return chat

    with_feedback = asyncio.run(mixed())
    return {
        "feedback_c32_per_s": round(len(flood) / seconds, 1),
        "feedback_cpu_ms": round(cpu / len(flood) * 1000, 3),
        "direct_p50_ms": _p50_ms(direct),
        "added_p50_ms": round(_p50_ms(alone) - _p50_ms(direct), 3),
        "added_p50_ms_with_feedback": round(_p50_ms(with_feedback) - _p50_ms(direct), 3),
    }


def _stored_feedback(workspace: Path) -> int:
    from sqlalchemy import func, select

    from keel.core.settings import load_settings
    from keel.store import open_store
    from keel.store.schema import feedback

    store = open_store(load_settings(workspace))
    try:
        with store.db.read() as conn:
            return int(conn.scalar(select(func.count()).select_from(feedback)) or 0)
    finally:
        store.close()


def main() -> None:
    """Run the rounds and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--feedback", type=int, default=8000, help="feedback posts per flood (concurrency 32)")
    parser.add_argument("--chat", type=int, default=400, help="chat requests per latency measurement")
    parser.add_argument("--chat-concurrency", type=int, default=4)
    parser.add_argument("--paced-rate", type=float, default=500.0, help="feedback/s sent while chat is measured")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "feedback", "rounds": args.rounds, "feedback_concurrency": 32,
                              "chat_concurrency": args.chat_concurrency, "paced_rate": args.paced_rate}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stub_port, keel_port = _free_port(), _free_port()
        stub_code = ("import uvicorn; from keel.serve import stub_upstream_app; uvicorn.run(stub_upstream_app(), "
                     f"host='127.0.0.1', port={stub_port}, log_level='warning')")  # fmt: skip
        stub = _start([sys.executable, "-c", stub_code])
        servers = [stub]
        runs: list[dict[str, Any]] = []
        sent: list[int] = []
        try:
            _wait_ready(stub_port, None, stub)
            key = _keel_workspace(folder, f"http://127.0.0.1:{stub_port}/v1")
            keel = _start([sys.executable, "-m", "keel", "-w", str(folder / "ws"), "serve", "--port", str(keel_port)])
            servers.append(keel)
            _wait_ready(keel_port, key, keel)
            ids = asyncio.run(_prime(keel_port, key, 500))
            time.sleep(1.5)  # the primed traces are written: feedback finds them remembered or in the database
            for _ in range(args.rounds):
                runs.append(_round((stub_port, stub.pid), (keel_port, keel.pid), key, ids, args, sent))
        finally:
            for proc in servers:
                if proc.poll() is None:
                    _stop(proc)
        stored = _stored_feedback(folder / "ws")
    for name in runs[0]:
        result[name] = round(statistics.median(r[name] for r in runs), 3)
        result[f"{name}_by_round"] = [r[name] for r in runs]
    result["feedback_stored"] = stored
    result["feedback_answered_202"] = sum(sent)
    result["added_p50_ratio_with_over_without"] = round(
        result["added_p50_ms_with_feedback"] / max(result["added_p50_ms"], 1e-3), 2
    )
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
