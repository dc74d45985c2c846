"""Local inference of SmolLM2-135M-Instruct: transformers fp32 and int8, llama.cpp q8_0 and q4_k_m, one JSON line.

Imports the bundled SmolLM2 GGUF as an fp32 model version, then in the same run: `quantize_model`
(int8 kernels), `export_gguf` to q8_0 and q4_k_m. Decoding speed at batch 1 (greedy, a fixed number of
new tokens, end-of-sequence ignored) is measured for transformers fp32 and int8 (`generate`), and for
each GGUF file both through Keel's `LlamaCppBackend` and through plain llama-cpp-python (`Llama.generate`)
on the same file, alternating the two for `--rounds` rounds (median). Wall-clock and process CPU seconds
per token are both reported: wall figures are noisy on a shared machine. Perplexity of each on the same
held-out token ids (Python standard-library docstrings): transformers for fp32/int8, llama.cpp for GGUF.

    python benchmarks/local_inference.py [--threads 2] [--tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROMPT = "The history of the Python programming language began in the late 1980s, when"


def _timed(run: Callable[[], int]) -> tuple[float, float]:
    """Tokens per wall second and CPU seconds per token of one call returning the tokens it generated."""
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return tokens / wall, cpu / tokens


def _median(samples: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "tokens_per_second": round(statistics.median(s[0] for s in samples), 2),
        "cpu_ms_per_token": round(1000 * statistics.median(s[1] for s in samples), 3),
    }


def _transformers(model: Any, tokenizer: Any, tokens: int, rounds: int) -> dict[str, float]:
    import torch

    ids = tokenizer(PROMPT, return_tensors="pt")

    def run() -> int:
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        return int(out.shape[1] - ids["input_ids"].shape[1])

    run()  # warm-up
    return _median([_timed(run) for _ in range(rounds)])


def _llama_pair(path: Path, threads: int, tokens: int, rounds: int) -> dict[str, Any]:
    """Keel's backend and plain llama-cpp-python on one file, alternated (ABBA…) so load drift hits both."""
    from llama_cpp import Llama

    from keel.serve import LlamaCppBackend

    backend = LlamaCppBackend(path, threads=threads, context=2048)
    plain = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    body = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}

    def keel() -> int:
        answer = asyncio.run(backend.complete("completion", body))
        return int(answer["usage"]["completion_tokens"])

    prompt_ids = plain.tokenize(PROMPT.encode(), add_bos=True, special=True)

    def bare() -> int:
        made = 0
        for _ in plain.generate(prompt_ids, temp=0.0, top_k=0, min_p=0.0, top_p=1.0, repeat_penalty=1.0):
            made += 1
            if made >= tokens:
                break
        return made

    keel(), bare()  # warm-up
    samples: dict[str, list[tuple[float, float]]] = {"keel": [], "plain": []}
    for r in range(rounds):
        for name in ("keel", "plain") if r % 2 == 0 else ("plain", "keel"):
            samples[name].append(_timed(keel if name == "keel" else bare))
    asyncio.run(backend.aclose())
    plain.close()
    return {name: _median(found) for name, found in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    from keel.store import init_workspace
    from keel.train import export_gguf, import_gguf, load_model, quantize_model
    from keel.train._models import model_dir

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = init_workspace(Path(tmp) / "ws")
        base = import_gguf(store, "smollm2")
        int8 = quantize_model(store, base.ref, max_ppl_increase=None)
        ggufs = {q: export_gguf(store, base.ref, q, f"smollm2-{q}", threads=args.threads) for q in ("q8_0", "q4_k_m")}
        rows: dict[str, Any] = {}
        for label, ref, ppl in (("transformers_fp32", base.ref, int8.parent_metrics["perplexity"]),
                                ("transformers_int8", int8.model.ref, int8.metrics["perplexity"])):  # fmt: skip
            model, tokenizer = load_model(store, ref)
            rows[label] = {**_transformers(model, tokenizer, args.tokens, args.rounds), "perplexity": ppl}
            del model
        for quant, result in ggufs.items():
            _, folder = model_dir(store, result.model.ref)
            pair = _llama_pair(next(folder.glob("*.gguf")), args.threads, args.tokens, args.rounds)
            rows[f"llama.cpp_{quant}"] = {
                **pair["keel"], "perplexity": result.metrics["perplexity"], "plain_llama_cpp_python": pair["plain"],
                "keel_vs_plain": round(pair["plain"]["tokens_per_second"] / pair["keel"]["tokens_per_second"], 3),
                "size_bytes": result.metrics["size_bytes"],
            }  # fmt: skip
        store.close()
    fp32 = rows["transformers_fp32"]
    ratios = {
        "int8_speedup_vs_fp32": round(rows["transformers_int8"]["tokens_per_second"] / fp32["tokens_per_second"], 3),
        "int8_perplexity_change": round(int8.details["perplexity_change"], 4),
        **{
            f"{q}_speedup_vs_fp32": round(rows[f"llama.cpp_{q}"]["tokens_per_second"] / fp32["tokens_per_second"], 3)
            for q in ggufs
        },
        **{f"{q}_keel_vs_plain": rows[f"llama.cpp_{q}"]["keel_vs_plain"] for q in ggufs},
        **{f"{q}_perplexity_change": ggufs[q].details["perplexity_change"] for q in ggufs},
    }
    targets = {
        "keel_within_1.2x_of_plain": all(ratios[f"{q}_keel_vs_plain"] <= 1.2 for q in ggufs),
        "llama_cpp_at_least_4x_fp32": all(ratios[f"{q}_speedup_vs_fp32"] >= 4 for q in ggufs),
        "int8_at_least_1.5x_fp32": ratios["int8_speedup_vs_fp32"] >= 1.5,
        "int8_perplexity_under_10pct": ratios["int8_perplexity_change"] < 0.10,
    }
    print(
        json.dumps(
            {
                "benchmark": "local_inference",
                "model": "SmolLM2-135M-Instruct",
                "threads": args.threads,
                "new_tokens": args.tokens,
                "batch": 1,
                "load_average": os.getloadavg()[0],
                "results": rows,
                "ratios": ratios,
                "targets_met": targets,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
