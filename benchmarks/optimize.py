"""int8 quantisation and pruning of SmolLM2-135M-Instruct against its fp32 parent, in one JSON line.

Imports the bundled SmolLM2-135M-Instruct GGUF into a temporary workspace and runs
`quantize_model`, `prune_model` (unstructured, 30%) and `prune_model` (MLP channels, 30%) on it.
Each compares the child with the parent on the same held-out text (Python standard-library
docstrings): perplexity, size on disk, and scoring tokens/s measured warm and alternating (ABBA,
median of 4 rounds), the peer being the parent in the same process.

    python benchmarks/optimize.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def _row(result: Any) -> dict[str, Any]:
    d = result.details
    return {
        "perplexity": result.metrics["perplexity"],
        "parent_perplexity": result.parent_metrics["perplexity"],
        "perplexity_change": d["perplexity_change"],
        "size_ratio": d["size_ratio"],
        "tokens_per_second": result.metrics["tokens_per_second"],
        "parent_tokens_per_second": result.parent_metrics["tokens_per_second"],
        "speedup": d["speedup"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from keel.store import init_workspace
    from keel.train import import_gguf, prune_model, quantize_model

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = init_workspace(Path(tmp) / "ws")
        base = import_gguf(store, "smollm2")
        int8 = quantize_model(store, base.ref, max_ppl_increase=None)
        unstructured = prune_model(store, base.ref, "smollm2-sparse", sparsity=0.3)
        channels = prune_model(store, base.ref, "smollm2-narrow", sparsity=0.3, structure="mlp-channels")
        store.close()
    print(
        json.dumps(
            {
                "benchmark": "optimize",
                "model": "SmolLM2-135M-Instruct",
                "threads": args.threads,
                "int8": _row(int8),
                "prune_unstructured_0.3": _row(unstructured),
                "prune_mlp_channels_0.3": {
                    **_row(channels),
                    "parameter_ratio": channels.details["parameter_ratio"],
                    "mlp_channels": [channels.details["mlp_channels_before"], channels.details["mlp_channels_after"]],
                },
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
