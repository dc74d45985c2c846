"""Gateway overhead: Keel's gateway vs the LiteLLM proxy in front of the same instant stub upstream.

Three servers run as separate processes on 127.0.0.1: the stub OpenAI-compatible upstream
(`keel.serve.stub_upstream_app`, answers at once), Keel's gateway (`keel serve`: API key auth,
request validation against the OpenAI schema, traces to SQLite, Prometheus metrics, all on) and
the LiteLLM proxy (installed by this script into benchmarks/.venv-litellm, master key on). A raw
keep-alive HTTP/1.1 client (asyncio streams, far cheaper per request than httpx, so the client is
not what is measured) sends the same chat request to the stub directly and through each gateway,
at concurrency 1 and 32. The three run alternately, round by round (`--rounds`), so a noisy
neighbour on the shared machine hits all of them alike; each figure is the median over rounds.
Also prints the CPU per request of Keel's request validation alone (parse + pydantic schema),
and the continuous-batching gain of the `transformers` backend on a tiny random Llama at
concurrency 16 (max batch 16 against max batch 1).

    python benchmarks/gateway_overhead.py [--requests 300] [--rounds 3] [--skip-litellm]

Prints one JSON line. The machine is shared, so absolute numbers are noisy; the ratios measured
in the same run are the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent
LITELLM_VENV = ROOT / ".venv-litellm"
BODY = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}).encode()
CONCURRENCY = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(port: int, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


async def _worker(port: int, request: bytes, n: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(n):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _load(port: int, request: bytes, concurrency: int, total: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    started = time.perf_counter()
    per = total // concurrency
    await asyncio.gather(*(_worker(port, request, per, latencies) for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


def measure(port: int, key: str | None, pid: int | None, requests: int) -> dict[str, Any]:
    """Latency at concurrency 1 and 32, throughput at 32, and the server's CPU per request."""
    request = _request(port, key)
    asyncio.run(_load(port, request, 4, 100))  # warm up connections, caches, lazy imports
    one, _ = asyncio.run(_load(port, request, 1, requests))
    process = psutil.Process(pid) if pid else None
    cpu_before = sum(process.cpu_times()[:2]) if process else 0.0
    many, seconds = asyncio.run(_load(port, request, CONCURRENCY, requests * 4))
    cpu = (sum(process.cpu_times()[:2]) - cpu_before) if process else 0.0
    return {
        "c1_p50_ms": _pct(one, 0.5),
        "c1_p99_ms": _pct(one, 0.99),
        "c32_p50_ms": _pct(many, 0.5),
        "c32_p99_ms": _pct(many, 0.99),
        "c32_rps": round(len(many) / seconds, 1),
        "cpu_ms_per_request": round(cpu / len(many) * 1000, 3) if process else None,
    }


def _start(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip


def _wait_ready(port: int, key: str | None, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            asyncio.run(_load(port, _request(port, key), 1, 1))
            return
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            time.sleep(0.3)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _keel_workspace(folder: Path, upstream: str) -> str:
    from keel.govern import create_key
    from keel.registry import register_model
    from keel.serve import create_deployment
    from keel.store import init_workspace

    store = init_workspace(folder / "ws")
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}")
    register_model(store, "chat", folder / "model")
    create_deployment(store, "chat", "chat@v1", route={"upstream": upstream, "price_in": 0.1, "price_out": 0.2})
    secret = create_key(store, "bench").secret
    store.close()
    return secret


def _install_litellm() -> Path:
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "litellm[proxy]"], check=True)
    (LITELLM_VENV / ".gitignore").write_text("*\n")
    return LITELLM_VENV / "bin" / "litellm"


def _litellm(folder: Path, upstream: str, port: int) -> subprocess.Popen[bytes]:
    config = folder / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: chat\n    litellm_params:\n      model: openai/chat\n"
        f"      api_base: {upstream}\n      api_key: stub\n"
        "general_settings:\n  master_key: sk-bench\nlitellm_settings:\n  telemetry: false\n"
    )
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    return _start([str(_install_litellm()), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                  env=env, cwd=folder)  # fmt: skip


def batching_gain(folder: Path) -> dict[str, Any]:
    """Tokens/s of the transformers backend at concurrency 16: max batch 16 against max batch 1."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from keel.serve._local import TransformersBackend

    torch.manual_seed(0)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<unk>", "<pad>", "</s>"])
    tokenizer.train_from_iterator([Path(__file__).read_text()] * 5, trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="</s>"
    )
    config = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, pad_token_id=fast.pad_token_id,
                         eos_token_id=fast.eos_token_id)  # fmt: skip
    path = folder / "tiny"
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    prompts = [f"request number {i}: tell me about gateways" for i in range(32)]

    async def run(max_batch: int) -> float:
        backend = TransformersBackend(path, max_batch=max_batch, max_wait_ms=5, threads=1)
        limit = asyncio.Semaphore(16)

        async def one(prompt: str) -> int:
            async with limit:
                answer = await backend.complete("completion", {"prompt": prompt, "max_tokens": 32, "temperature": 0})
                return int(answer["usage"]["completion_tokens"])

        await one("warm up")
        started = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(p) for p in prompts)))
        seconds = time.perf_counter() - started
        await backend.aclose()
        return tokens / seconds

    single, batched = asyncio.run(run(1)), asyncio.run(run(16))
    params = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    return {"tokens_per_s_batch1": round(single, 1), "tokens_per_s_batch16": round(batched, 1),
            "gain": round(batched / single, 2), "params": params}  # fmt: skip


def validation_cpu(iterations: int = 20_000) -> dict[str, float]:
    """CPU microseconds per request of parsing and validating a request body, in this process."""
    from keel.serve._schema import parse_body, validate_request

    long_chat = json.dumps({"model": "chat", "temperature": 0.2, "max_tokens": 256, "messages": [
        {"role": "system" if i == 0 else ("user" if i % 2 else "assistant"), "content": "hello there " * 40}
        for i in range(10)]}).encode()  # fmt: skip
    out = {}
    for name, raw in (("bench_body", BODY), ("ten_message_chat", long_chat)):
        started = time.process_time()
        for _ in range(iterations):
            validate_request("chat", parse_body(raw))
        out[f"{name}_us"] = round((time.process_time() - started) / iterations * 1e6, 2)
    return out


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0] if runs[0][k] is not None}


def main() -> None:
    """Run everything and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="requests at concurrency 1 (x4 at 32)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over the servers")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-batching", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "gateway_overhead", "concurrency": [1, CONCURRENCY], "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stub_port, keel_port, litellm_port = _free_port(), _free_port(), _free_port()
        stub_code = (
            "import uvicorn; from keel.serve import stub_upstream_app; uvicorn.run(stub_upstream_app(), "
            f"host='127.0.0.1', port={stub_port}, log_level='warning')"
        )
        stub = _start([sys.executable, "-c", stub_code])
        servers = [stub]
        runs: dict[str, list[dict[str, Any]]] = {"direct": [], "keel": [], "litellm": []}
        try:
            _wait_ready(stub_port, None, stub)
            upstream = f"http://127.0.0.1:{stub_port}/v1"
            key = _keel_workspace(folder, upstream)
            keel = _start([sys.executable, "-m", "keel", "-w", str(folder / "ws"), "serve", "--port", str(keel_port)])
            servers.append(keel)
            _wait_ready(keel_port, key, keel)
            targets: dict[str, tuple[int, str | None, int]] = {
                "direct": (stub_port, None, stub.pid), "keel": (keel_port, key, keel.pid)}  # fmt: skip
            if not args.skip_litellm:
                try:
                    litellm = _litellm(folder, upstream, litellm_port)
                    servers.append(litellm)
                    _wait_ready(litellm_port, "sk-bench", litellm)
                    targets["litellm"] = (litellm_port, "sk-bench", litellm.pid)
                except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
                    result["litellm"] = {"error": f"LiteLLM could not be installed or started: {exc}"[:500]}
            for _ in range(args.rounds):  # alternate: every server is measured once per round
                for name, (port, secret, pid) in targets.items():
                    runs[name].append(measure(port, secret, pid, args.requests))
        finally:
            for proc in servers:
                if proc.poll() is None:
                    _stop(proc)
        for name, measured in runs.items():
            if measured:
                result[name] = _median(measured)
        result["keel_c32_rps_by_round"] = [r["c32_rps"] for r in runs["keel"]]
        result["litellm_c32_rps_by_round"] = [r["c32_rps"] for r in runs["litellm"]]
        direct, keel_numbers, lite = result["direct"], result["keel"], result.get("litellm", {})
        result["keel_added_p50_ms"] = round(keel_numbers["c1_p50_ms"] - direct["c1_p50_ms"], 3)
        result["keel_added_p99_ms"] = round(keel_numbers["c1_p99_ms"] - direct["c1_p99_ms"], 3)
        if "c1_p50_ms" in lite:
            result["litellm_added_p50_ms"] = round(lite["c1_p50_ms"] - direct["c1_p50_ms"], 3)
            result["litellm_added_p99_ms"] = round(lite["c1_p99_ms"] - direct["c1_p99_ms"], 3)
            result["rps_ratio_keel_over_litellm_c32"] = round(keel_numbers["c32_rps"] / lite["c32_rps"], 2)
            result["added_p50_ratio_litellm_over_keel"] = round(
                result["litellm_added_p50_ms"] / max(result["keel_added_p50_ms"], 1e-3), 2
            )
        result["validation_cpu"] = validation_cpu()
        if not args.skip_batching:
            result["batching"] = batching_gain(folder)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
