"""LoRA on SmolLM2-135M-Instruct on CPU: Keel's `train` against a plain transformers + peft loop, and int8.

Both sides train the same LoRA (r=8, q/v projections) on the same prompt/completion examples (Python
standard-library docstrings) for one epoch with the same batch size, learning rate and seed, in the
same process, alternating rounds so machine load hits both alike; the best round of each is kept.
Keel's time includes what tracking costs: metrics streamed into the run, a checkpoint uploaded as
blobs, the adapter registered. Then held-out perplexity (other modules' docstrings) before and after,
and `keel.train.quantize_model`'s int8 version against fp32.

    python benchmarks/train.py [--examples 32] [--batch-size 4] [--rounds 2] [--threads 2]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

# This folder holds benchmarks/datasets.py, which would shadow the `datasets` library the trainers import.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

TARGET_RATIO = 0.95
TRAIN_MODULES = ("json", "pathlib", "collections", "functools", "itertools", "os.path", "shutil", "string")
HELDOUT_MODULES = ("argparse", "statistics", "textwrap", "heapq", "fractions", "inspect", "re", "csv")


def _examples(n: int, max_chars: int = 400) -> list[dict[str, str]]:
    import importlib

    rows = []
    for module_name in TRAIN_MODULES:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if callable(obj) and not name.startswith("_") else None
            if doc and len(doc) > 80:
                prompt = f"Explain what `{module_name}.{name}` does in Python.\n"
                rows.append({"prompt": prompt, "completion": doc[:max_chars]})
    random.Random(0).shuffle(rows)
    return rows[:n]


def _commit(store: Any, rows: list[dict[str, str]]) -> str:
    from keel.data import commit_version

    table = pa.Table.from_pylist([{"id": f"doc-{i}", **row} for i, row in enumerate(rows)])
    made = commit_version(store, "pydocs", table)
    return str(made[0].ref)


def _heldout() -> list[str]:
    import importlib

    return [d for m in HELDOUT_MODULES if (d := importlib.import_module(m).__doc__) and len(d) > 200]


def plain_loop(folder: Path, rows: list[dict[str, str]], batch_size: int, lr: float, seed: int) -> dict[str, Any]:
    """Transformers + peft, no tracking: tokenise, shuffle, pad, AdamW with a linear schedule."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        get_linear_schedule_with_warmup,
    )

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    examples = []
    for row in rows:
        p = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        a = tokenizer(row["completion"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        examples.append({"input_ids": (p + a)[:128], "labels": ([-100] * len(p) + a)[:128]})
    random.Random(seed).shuffle(examples)
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = len(examples) // batch_size
    schedule = get_linear_schedule_with_warmup(optimiser, 0, steps)
    model.train()
    tokens = 0
    started = time.perf_counter()
    for step in range(steps):
        batch = collate(examples[step * batch_size : (step + 1) * batch_size])
        loss = model(**batch).loss
        loss.backward()
        optimiser.step()
        schedule.step()
        optimiser.zero_grad()
        tokens += int(batch["attention_mask"].sum())
    seconds = time.perf_counter() - started
    model.eval()
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "model": model,
        "tok": tokenizer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    import torch
    import transformers

    from keel.store import init_workspace
    from keel.train import import_gguf, load_model, parse_train_config, quantize_model, train
    from keel.train._measure import measure
    from keel.train._models import model_dir

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    load_before = os.getloadavg()[0]
    heldout = _heldout()
    with tempfile.TemporaryDirectory(prefix="keel-bench-train-") as tmp:
        store = init_workspace(Path(tmp) / "ws")
        started = time.perf_counter()
        base = import_gguf(store, "smollm2")
        import_seconds = time.perf_counter() - started
        _, folder = model_dir(store, base.ref)
        rows = _examples(args.examples)
        ref = _commit(store, rows)
        base_model, tokenizer = load_model(store, base.ref)
        before = measure(base_model, tokenizer, heldout)
        del base_model
        steps = len(rows) // args.batch_size
        config = parse_train_config(
            {
                "name": "smollm2-pydocs",
                "base": base.ref,
                "data": {"train": ref, "max_length": 128},
                "method": "lora",
                "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
                "training": {
                    "epochs": 1,
                    "batch_size": args.batch_size,
                    "learning_rate": args.lr,
                    "save_steps": steps,
                    "threads": args.threads,
                },
                "seed": 0,
            }
        )
        keel_rounds, plain_rounds = [], []
        keel_result = plain = None
        for _ in range(args.rounds):
            keel_result = train(store, config, resume=None)
            keel_rounds.append(keel_result.tokens_per_second)
            plain = plain_loop(folder, rows, args.batch_size, args.lr, seed=0)
            plain_rounds.append(plain["tokens_per_second"])
        assert keel_result is not None and keel_result.model is not None and plain is not None
        tuned, tuned_tokenizer = load_model(store, keel_result.model.ref)
        after_keel = measure(tuned, tuned_tokenizer, heldout)
        after_plain = measure(plain["model"], plain["tok"], heldout)
        del tuned, plain
        int8 = quantize_model(store, base.ref, dataset=None, max_ppl_increase=0.10)
        store.close()
    keel_best, plain_best = max(keel_rounds), max(plain_rounds)
    print(
        json.dumps(
            {
                "benchmark": "train",
                "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised to fp32)",
                "import_gguf_seconds": round(import_seconds, 1),
                "examples": len(rows),
                "batch_size": args.batch_size,
                "steps": steps,
                "threads": args.threads,
                "keel_tokens_per_second": round(keel_best, 1),
                "plain_tokens_per_second": round(plain_best, 1),
                "ratio": round(keel_best / plain_best, 3),
                "target_ratio": TARGET_RATIO,
                "rounds": {"keel": [round(x, 1) for x in keel_rounds], "plain": [round(x, 1) for x in plain_rounds]},
                "heldout_perplexity": {
                    "before": round(before.perplexity, 3),
                    "after_keel": round(after_keel.perplexity, 3),
                    "after_plain": round(after_plain.perplexity, 3),
                },
                "int8": {
                    "fp32_perplexity": int8.parent_metrics["perplexity"],
                    "int8_perplexity": int8.metrics["perplexity"],
                    "perplexity_change": int8.details["perplexity_change"],
                    "fp32_tokens_per_second": int8.parent_metrics["tokens_per_second"],
                    "int8_tokens_per_second": int8.metrics["tokens_per_second"],
                    "fp32_bytes": int(int8.parent_metrics["size_bytes"]),
                    "int8_bytes": int(int8.metrics["size_bytes"]),
                },
                "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
