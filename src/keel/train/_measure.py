"""Quality and speed of a causal LM on held-out text: perplexity, scoring tokens/s, size on disk.

Held-out text comes from a dataset version, or (when none is given) from the docstrings of a fixed
list of Python standard-library modules: offline, deterministic and unlike any training set here.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.store import Store
from keel.train._data import dataset_texts

__all__ = ["Measurement", "folder_size", "heldout_texts", "measure"]

_DOC_MODULES = (
    "argparse",
    "collections",
    "functools",
    "json",
    "pathlib",
    "statistics",
    "textwrap",
    "inspect",
    "re",
    "heapq",
    "fractions",
    "string",
)


@dataclass(frozen=True)
class Measurement:
    """Perplexity over held-out tokens and scoring throughput."""

    perplexity: float
    tokens: int
    tokens_per_second: float

    def to_json(self) -> dict[str, float]:
        """A JSON-ready dict."""
        return {
            "perplexity": round(self.perplexity, 4),
            "tokens": self.tokens,
            "tokens_per_second": round(self.tokens_per_second, 2),
        }


def heldout_texts(store: Store | None, dataset_ref: str | None, *, limit: int = 64) -> list[str]:
    """Texts to measure on: a dataset version's, or Python standard-library docstrings."""
    if dataset_ref is not None and store is not None:
        return dataset_texts(store, dataset_ref)[0][:limit]
    texts = []
    for name in _DOC_MODULES:
        doc = importlib.import_module(name).__doc__
        if doc and len(doc) > 200:
            texts.append(doc.strip())
    return texts[:limit]


def measure(model: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int = 256) -> Measurement:
    """Perplexity (exp of mean next-token loss) over `texts`, one text at a time, and tokens scored per second."""
    import torch

    total, count = 0.0, 0
    started = time.perf_counter()
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :max_length]
            if ids.shape[1] < 2:
                continue
            loss = model(input_ids=ids, labels=ids).loss
            scored = ids.shape[1] - 1
            total += float(loss) * scored
            count += scored
    seconds = time.perf_counter() - started
    if count == 0:
        return Measurement(math.nan, 0, 0.0)
    return Measurement(math.exp(total / count), count, count / seconds if seconds > 0 else 0.0)


def folder_size(folder: Path) -> int:
    """Bytes of every file under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
