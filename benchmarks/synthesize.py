"""Rows per second of `keel data synthesize`: the offline extractive generator, and the model generator.

The documents are the demo corpus's (keel.pipeline's sample corpus: product pages, policies and support
tickets, curated with `exact_dedup`) committed in a temporary workspace. The extractive generator runs with
and without the offline groundedness judge (the judge's first load, the embedding model, is timed apart).
The model generator runs against a stub OpenAI-compatible server on 127.0.0.1 that writes a JSON question
per context after `--delay-ms`, the way a model's latency dominates a real endpoint: one request at a time
(the peer) and `--concurrency` in flight, each with its own seed so no answer comes from the cache, then a
rerun answered from the cache. Wall-clock and CPU seconds (this process and its children) from one run.

    python -P benchmarks/synthesize.py [--delay-ms 20] [--concurrency 8] [--per-doc 2]

Prints one JSON line. `-P` keeps benchmarks/ off sys.path (its datasets.py would shadow the `datasets` package).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keel.curate import SynthesizeOptions, curate, load_recipe, synthesize
from keel.pipeline._sample_corpus import write_sample_corpus
from keel.serve import serve_in_thread
from keel.store import Store, init_workspace

RECIPE = """inputs:
  - path: corpus/raw/pages/*.html
  - path: corpus/raw/policies/*.md
  - path: corpus/raw/tickets.jsonl
output: curated
steps:
  - exact_dedup: {}
"""


def _qa_stub(delay: float) -> Starlette:
    """A chat endpoint answering `{"question", "answer"}` about the first sentence with a number, after `delay`."""

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        await asyncio.sleep(delay)
        context = body["messages"][-1]["content"].split("Context:\n", 1)[-1]
        sentences = re.split(r"(?<=\.)\s+", context)
        sentence = next((s for s in sentences if re.search(r"\d", s)), sentences[0])
        number = re.search(r"\d+(?:\.\d+)? \w+", sentence)
        answer = number.group(0) if number else sentence
        reply = json.dumps({"question": f"What does the document state about {answer.split()[-1]}?", "answer": answer})
        choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
        return JSONResponse({"id": "b", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [choice]})  # fmt: skip

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _run(store: Store, name: str, options: SynthesizeOptions) -> dict[str, Any]:
    cpu, wall = _cpu(), time.perf_counter()
    report = synthesize(store, "kb@v1", name, options)
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    rows, made = sum(report.kept.values()), sum(report.generated.values())
    return {"rows": rows, "generated": made, "rows_per_s": round(rows / wall, 1),
            "rows_per_cpu_s": round(rows / cpu, 1), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "requests": report.requests}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--per-doc", type=int, default=2)
    args = parser.parse_args()

    result: dict[str, Any] = {"benchmark": "synthesize", "delay_ms": args.delay_ms, "per_doc": args.per_doc}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        store = init_workspace(root)
        write_sample_corpus(root / "corpus")
        (root / "kb.yaml").write_text(RECIPE)
        version = curate(store, load_recipe(root / "kb.yaml"), dataset="kb").version
        result["documents"] = version.num_rows
        extractive = {"no_judge": _run(store, "x1", SynthesizeOptions(per_doc=args.per_doc, judge=False))}
        cpu, wall = _cpu(), time.perf_counter()
        from keel.evals import OfflineJudge

        OfflineJudge().groundedness("Warm-up.", ["Warm-up."])  # loads the embedding model once per process
        extractive["judge_first_load"] = {
            "wall_s": round(time.perf_counter() - wall, 3),
            "cpu_s": round(_cpu() - cpu, 3),
        }
        extractive["judge"] = _run(store, "x2", SynthesizeOptions(per_doc=args.per_doc))
        result["extractive"] = extractive

        model: dict[str, Any] = {}
        with serve_in_thread(_qa_stub(args.delay_ms / 1000)) as url:
            base = {"generator": "model", "base_url": f"{url}/v1", "model_name": "stub", "per_doc": args.per_doc,
                    "judge": False}  # fmt: skip
            model["one_by_one"] = _run(store, "m1", SynthesizeOptions(**base, concurrency=1, seed=100))
            model["concurrent"] = _run(store, "m2", SynthesizeOptions(**base, concurrency=args.concurrency, seed=200))
            model["rerun_from_cache"] = _run(
                store, "m3", SynthesizeOptions(**base, concurrency=args.concurrency, seed=200)
            )
            model["concurrent_with_judge"] = _run(
                store, "m4", SynthesizeOptions(**{**base, "judge": True}, concurrency=args.concurrency, seed=300)
            )
        model["concurrency"] = args.concurrency
        model["ratio_concurrent_vs_one_by_one"] = round(
            model["concurrent"]["rows_per_s"] / model["one_by_one"]["rows_per_s"], 2
        )
        result["model"] = model
        store.close()
    result["load_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
