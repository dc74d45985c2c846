"""Gateway soak: many requests with 1% hostile ones mixed in, at concurrency 32, against `keel serve`.

Two processes on 127.0.0.1: the stub OpenAI-compatible upstream (`keel.serve.stub_upstream_app`,
answers at once) and Keel's gateway (`keel serve`: keys, traces to SQLite, metrics, all on). A raw
keep-alive HTTP/1.1 client (asyncio streams; cheap, so the gateway is what is measured) sends
chat and embeddings requests; 1% are hostile: lone surrogates (with and without a key), huge
bodies, wrong or malformed keys, bad parameters, unknown or 100 KB model names, deep JSON.

Each request with a valid key carries a unique `x-keel-prompt-version` header, so after the gateway
is stopped (SIGTERM, which flushes its traces) the trace table shows whether every authenticated
request was traced exactly once. Also reports 5xx answers (normal and hostile apart), the gateway's
RSS after the first 10,000 requests and at the end, and the size of `/metrics`.

    python benchmarks/gateway_soak.py [--requests 100000] [--concurrency 32] [--huge-kb 1024]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import _free_port, _keel_workspace, _wait_ready  # noqa: E402

CHECKPOINT = 10_000


def _chat(i: int, **extra: Any) -> bytes:
    return json.dumps({"model": "chat", "messages": [{"role": "user", "content": f"hello {i}"}], **extra}).encode()


# kind -> (path, key: "valid" | "none" | a wrong key's template, body of request i)
_BUILDERS: dict[str, Any] = {
    "normal": lambda i, kb: ("/v1/chat/completions", "valid", _chat(i)),
    "normal_embeddings": lambda i, kb: (
        "/v1/embeddings", "valid", json.dumps({"model": "chat", "input": [f"text {i}"]}).encode()),
    "surrogate_model_no_key": lambda i, kb: ("/v1/chat/completions", "none", b'{"model":"\\ud800","messages":[]}'),
    "surrogate_model_with_key": lambda i, kb: ("/v1/chat/completions", "valid", b'{"model":"\\ud800","messages":[]}'),
    "surrogate_content_with_key": lambda i, kb: (
        "/v1/chat/completions", "valid", b'{"model":"chat","messages":[{"role":"user","content":"\\udfff"}]}'),
    "huge_body": lambda i, kb: ("/v1/chat/completions", "valid", json.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": "x" * (kb * 1024)}]}).encode()),
    "wrong_secret": lambda i, kb: ("/v1/chat/completions", "wrong", _chat(i)),
    "malformed_key": lambda i, kb: ("/v1/chat/completions", f"sk-not-a-keel-key-{i}", _chat(i)),
    "bad_messages": lambda i, kb: ("/v1/chat/completions", "valid", json.dumps(
        {"model": "chat", "messages": [["hi"], [None], [[None, None]]][i % 3]}).encode()),
    "bad_max_tokens": lambda i, kb: ("/v1/chat/completions", "valid", _chat(i, max_tokens=["abc", -5][i % 2])),
    "bad_temperature": lambda i, kb: ("/v1/chat/completions", "valid", _chat(i, temperature=[-1, "hot"][i % 2])),
    "bad_embedding_input": lambda i, kb: (
        "/v1/embeddings", "valid", json.dumps({"model": "chat", "input": [None]}).encode()),
    "deep_json": lambda i, kb: (
        "/v1/chat/completions", "valid", b'{"model":"chat","messages":' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
    "unknown_model": lambda i, kb: ("/v1/chat/completions", "valid", json.dumps(
        {"model": f"nope-{i}", "messages": []}).encode()),
    "long_model_no_key": lambda i, kb: ("/v1/chat/completions", "none", json.dumps(
        {"model": f"{i}" + "m" * 100_000, "messages": []}).encode()),
    "not_json": lambda i, kb: ("/v1/chat/completions", "valid", b"{not json"),
}  # fmt: skip


def _request(kind: str, i: int, port: int, key: str, huge_kb: int) -> tuple[bytes, bool]:
    """The raw HTTP request number `i` of kind `kind`, and whether it carries a valid key."""
    path, auth, body = _BUILDERS[kind](i, huge_kb)
    auth = {"valid": key, "none": "", "wrong": key[:-6] + "AAAAAA"}.get(auth, auth)
    valid = auth == key
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    if auth:
        head += f"Authorization: Bearer {auth}\r\n"
    if valid:
        head += f"x-keel-prompt-version: soak-{i}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body, valid


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool, bytes]:
    # No drain() before reading: a server may answer (401, 413) without reading a large body, and
    # waiting for it to take the body would deadlock. The transport buffers the rest.
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
            close = True
    return status, close, await reader.readexactly(length)


class Soak:
    """Sends the requests from 32 workers and keeps the tallies."""

    def __init__(self, port: int, key: str, kinds: list[str], huge_kb: int, gateway: psutil.Process) -> None:
        self.port, self.key, self.kinds, self.huge_kb, self.gateway = port, key, kinds, huge_kb, gateway
        self.next = 0
        self.done = 0
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.authenticated: set[str] = set()
        self.samples: list[str] = []
        self.at_checkpoint: dict[str, Any] = {}

    async def worker(self) -> None:
        reader = writer = None
        while self.next < len(self.kinds):
            i = self.next
            self.next += 1
            kind = self.kinds[i]
            request, valid = _request(kind, i, self.port, self.key, self.huge_kb)
            if valid:
                self.authenticated.add(f"soak-{i}")
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**24)
                assert reader is not None
                status, close, body = await _exchange(reader, writer, request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, close, body = 0, True, b""  # the connection dropped: counted as status 0
            self.statuses[(kind, status)] += 1
            if status >= 500 and len(self.samples) < 20:
                self.samples.append(f"{kind}: {status} {body[:200]!r}")
            if (close or len(request) > 65_536) and writer is not None:  # a large body may be left unread
                writer.close()
                reader = writer = None
            self.done += 1
            if self.done == CHECKPOINT:
                await self.checkpoint()
        if writer is not None:
            writer.close()

    async def checkpoint(self) -> None:
        self.at_checkpoint = {"rss_mb": round(self.gateway.memory_info().rss / 2**20, 1),
                              "metrics_bytes": len(await _get(self.port, "/metrics"))}  # fmt: skip


async def _get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        _, _, body = await _exchange(reader, writer, b"")
        return body
    finally:
        writer.close()


HOSTILE = [kind for kind in _BUILDERS if not kind.startswith("normal")]


def _start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    # The server's log goes to a file: a pipe nobody reads fills up and blocks the server on its next log line.
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out)


def _kinds(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(HOSTILE) if rng.random() < 0.01 else ("normal_embeddings" if rng.random() < 0.1 else "normal")
            for _ in range(n)]  # fmt: skip


def main() -> None:
    """Run the soak and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--huge-kb", type=int, default=1024, help="size of the message of a huge-body request")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kinds = _kinds(args.requests, args.seed)
    result: dict[str, Any] = {"benchmark": "gateway_soak", "requests": args.requests, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stub_port, keel_port = _free_port(), _free_port()
        stub_code = ("import uvicorn; from keel.serve import stub_upstream_app; uvicorn.run(stub_upstream_app(), "
                     f"host='127.0.0.1', port={stub_port}, log_level='critical')")  # fmt: skip
        stub = _start([sys.executable, "-c", stub_code], folder / "stub.log")
        servers = [stub]
        try:
            _wait_ready(stub_port, None, stub)
            key = _keel_workspace(folder, f"http://127.0.0.1:{stub_port}/v1")
            keel = _start(
                [sys.executable, "-m", "keel", "-w", str(folder / "ws"), "serve", "--port", str(keel_port)],
                folder / "keel.log",
            )
            servers.append(keel)
            _wait_ready(keel_port, key, keel)
            soak = Soak(keel_port, key, kinds, args.huge_kb, psutil.Process(keel.pid))

            async def run() -> float:
                started = time.perf_counter()
                await asyncio.gather(*(soak.worker() for _ in range(args.concurrency)))
                return time.perf_counter() - started

            seconds = asyncio.run(run())
            metrics = asyncio.run(_get(keel_port, "/metrics"))
            ready = asyncio.run(_get(keel_port, "/readyz"))
            rss_end = round(psutil.Process(keel.pid).memory_info().rss / 2**20, 1)
            keel.send_signal(signal.SIGTERM)
            stopped = time.perf_counter()
            keel.wait(timeout=120)
            result["shutdown_s"] = round(time.perf_counter() - stopped, 2)
        finally:
            for proc in servers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        with sqlite3.connect(folder / "ws" / ".keel" / "keel.db") as db:
            rows = db.execute("SELECT prompt_version, count(*) FROM traces GROUP BY prompt_version").fetchall()
            total_traces = db.execute("SELECT count(*) FROM traces").fetchone()[0]
        traced = {version: n for version, n in rows if version is not None}
        gateway_log = (folder / "keel.log").read_text(errors="replace")
        normal_5xx = sum(
            n for (kind, status), n in soak.statuses.items() if kind.startswith("normal") and status >= 500
        )
        hostile_5xx = Counter({kind: n for (kind, status), n in soak.statuses.items()
                               if not kind.startswith("normal") and (status >= 500 or status == 0)})  # fmt: skip
        by_kind: dict[str, dict[str, int]] = {}
        for (kind, status), n in sorted(soak.statuses.items()):
            by_kind.setdefault(kind, {})[str(status)] = n
        result.update({
            "seconds": round(seconds, 1),
            "rps": round(args.requests / seconds, 1),
            "normal_5xx": normal_5xx,
            "hostile_5xx_or_dropped": dict(hostile_5xx),
            "five_xx_total": sum(n for (_, status), n in soak.statuses.items() if status >= 500),
            "statuses_by_kind": by_kind,
            "authenticated_requests": len(soak.authenticated),
            "traces_written": total_traces,
            "authenticated_traced_exactly_once": sum(1 for v in soak.authenticated if traced.get(v) == 1),
            "authenticated_not_traced": sum(1 for v in soak.authenticated if v not in traced),
            "traced_more_than_once": sum(1 for n in traced.values() if n > 1),
            "traces_without_a_sent_request": sum(1 for v in traced if v not in soak.authenticated),
            "warm_up_traces": total_traces - sum(traced.values()),  # the readiness probe's request
            "rss_mb_after_10k": soak.at_checkpoint.get("rss_mb"),
            "rss_mb_end": rss_end,
            "rss_growth_pct": round((rss_end / soak.at_checkpoint["rss_mb"] - 1) * 100, 1)
            if soak.at_checkpoint else None,
            "metrics_bytes_after_10k": soak.at_checkpoint.get("metrics_bytes"),
            "metrics_bytes_end": len(metrics),
            "readyz_end": json.loads(ready),
            "samples_5xx": soak.samples,
            "gateway_log_errors": gateway_log.count("ERROR") + gateway_log.count("Traceback"),
            "gateway_log_tail": gateway_log[-600:],
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
        })  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
