"""Rows per second of the augmentation steps: `paraphrase` batched vs one by one, and `eda`.

`paraphrase` runs against the stub OpenAI-compatible server (`keel.serve.stub_upstream_app`) on 127.0.0.1,
wrapped to wait a fixed `--delay-ms` before each answer, the way a model's latency dominates a real
endpoint. The same rows go through the step twice, each time with an empty answer cache: `concurrency: 1`
(one request at a time, the peer) and `--concurrency` requests in flight. Wall-clock rows/s and the ratio
come from the same run; CPU seconds of this process are reported too. `eda` (4 copies per row, all four
operations, the shipped WordNet lexicon) runs on the paragraphs of Keel's own docs/*.md: real English.
`--local-rows N` adds `paraphrase` with a registered local model (a tiny model Keel trains in a temporary
workspace, loaded in process): `batch_size: 1` (the peer) vs `--local-batch` rows per generate call, greedy,
`--local-tokens` new tokens each, CPU seconds and the same-run ratio.

    python -P benchmarks/augment.py [--rows 200] [--delay-ms 20] [--concurrency 16] [--eda-rows 2000]
        [--local-rows 64] [--local-batch 16] [--local-tokens 16]

Prints one JSON line; the target is a batched/one-by-one ratio >= 3. The accuracy of a classifier trained on 50
labels + weak labels vs 50 labels alone is measured by `benchmarks/weak_supervision.py` (docs/weak-supervision.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from keel.curate import build_steps
from keel.data import records_to_table
from keel.data._records import make_record
from keel.serve import serve_in_thread, stub_upstream_app

ROOT = Path(__file__).resolve().parents[1]


def _paragraphs(limit: int) -> list[str]:
    out: list[str] = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for block in page.read_text(encoding="utf-8").split("\n\n"):
            words = block.split()
            if len(words) >= 12 and not block.lstrip().startswith(("|", "```", "#", "    ")):
                out.append(" ".join(words))
    return (out * (limit // max(len(out), 1) + 1))[:limit]


def _table(texts: list[str]) -> pa.Table:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return records_to_table(make_record(t, f"file:///b/{i}", i, t.encode(), now) for i, t in enumerate(texts))


def _delayed(app: Any, seconds: float) -> Any:
    """`app` answering each HTTP request after `seconds` (requests wait concurrently, as on a real server)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(seconds)
        await app(scope, receive, send)

    return wrapped


def _timed(step: Any, table: pa.Table) -> tuple[pa.Table, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    out = step.apply(table).table
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _local(rows: int, batch: int, tokens: int) -> dict[str, Any]:
    """Paraphrase with the tiny local model, one row per generate call vs `batch` rows."""
    import torch

    from keel.store import init_workspace
    from keel.train import TinyModelOptions, new_tiny_model

    torch.set_num_threads(1)
    texts = _paragraphs(rows)
    out: dict[str, Any] = {"rows": len(texts), "batch_size": batch, "max_tokens": tokens}
    with tempfile.TemporaryDirectory() as tmp:
        store = init_workspace(Path(tmp) / "ws")
        new_tiny_model(store, "tiny", texts, TinyModelOptions(steps=20))
        store.close()
        for label, size in (("one_by_one", 1), ("batched", batch)):
            params = {"model": "tiny@v1", "workspace": str(Path(tmp) / "ws"), "batch_size": size, "temperature": 0,
                      "max_tokens": tokens, "cache_dir": str(Path(tmp) / label)}  # fmt: skip
            (step,) = build_steps([("paraphrase", params)])
            step.backend().model  # noqa: B018 - load the model before the clock starts
            _, wall, cpu = _timed(step, _table(texts))
            out[label] = {"rows_per_s": round(len(texts) / wall, 2), "rows_per_cpu_s": round(len(texts) / cpu, 2),
                          "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}  # fmt: skip
    out["ratio_batched_vs_one_by_one"] = round(out["batched"]["rows_per_s"] / out["one_by_one"]["rows_per_s"], 2)
    out["ratio_by_cpu"] = round(out["batched"]["rows_per_cpu_s"] / out["one_by_one"]["rows_per_cpu_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--eda-rows", type=int, default=2000)
    parser.add_argument("--local-rows", type=int, default=0, help="Rows for the local-model run (0: skip it).")
    parser.add_argument("--local-batch", type=int, default=16)
    parser.add_argument("--local-tokens", type=int, default=16)
    args = parser.parse_args()

    texts = _paragraphs(args.rows)
    table = _table(texts)
    result: dict[str, Any] = {"benchmark": "augment", "rows": len(texts), "delay_ms": args.delay_ms}
    with (
        serve_in_thread(_delayed(stub_upstream_app(), args.delay_ms / 1000)) as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        runs = {}
        for label, concurrency in (("one_by_one", 1), ("batched", args.concurrency)):
            params = {"base_url": f"{url}/v1", "model": "stub", "concurrency": concurrency,
                      "cache_dir": str(Path(tmp) / label)}  # fmt: skip
            (step,) = build_steps([("paraphrase", params)])
            out, wall, cpu = _timed(step, table)
            assert out.num_rows == 2 * len(texts), out.num_rows
            runs[label] = {"rows_per_s": round(len(texts) / wall, 1), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
        (step,) = build_steps([("paraphrase", {**params, "concurrency": args.concurrency})])
        _, wall, cpu = _timed(step, table)  # the batched run's cache, again: a rerun
        runs["rerun_from_cache"] = {"rows_per_s": round(len(texts) / wall, 1), "cpu_s": round(cpu, 3)}
    result["paraphrase"] = {**runs, "concurrency": args.concurrency,
                            "ratio_batched_vs_one_by_one": round(runs["batched"]["rows_per_s"]
                                                                 / runs["one_by_one"]["rows_per_s"], 2)}  # fmt: skip
    eda_table = _table(_paragraphs(args.eda_rows))
    (eda,) = build_steps([("eda", {"seed": 0})])
    out, wall, cpu = _timed(eda, eda_table)
    result["eda"] = {"rows_in": eda_table.num_rows, "rows_made": out.num_rows - eda_table.num_rows,
                     "input_rows_per_cpu_s": round(eda_table.num_rows / cpu, 1), "cpu_s": round(cpu, 3)}  # fmt: skip
    if args.local_rows:
        result["paraphrase_local"] = _local(args.local_rows, args.local_batch, args.local_tokens)
    result["target_ratio"] = 3.0
    result["load_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
