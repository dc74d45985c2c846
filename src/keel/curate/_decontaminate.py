"""`decontaminate`: drop training documents that share a long n-gram with an evaluation set.

Follows GPT-3's practice (Brown et al. 2020, appendix C): lowercase word 13-grams, any shared
n-gram marks the document as contaminated. The evaluation n-grams are hashed once into a set when
the step is built; each document costs one pass over its words.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import xxhash
from pydantic import Field

from keel.core.errors import InputError
from keel.core.settings import read_text_file
from keel.curate._step import Step, StepParams, StepResult

__all__ = ["DecontaminateStep", "ngram_hashes"]

_WORD = re.compile(r"\w+")


def ngram_hashes(words: list[str], n: int) -> set[int]:
    """The 64-bit hashes of the word n-grams of a list of (lowercase) words.

    Examples:
        >>> len(ngram_hashes(["a", "b", "c", "d"], 2))
        3
    """
    return {xxhash.xxh3_64_intdigest(" ".join(words[i : i + n]).encode()) for i in range(len(words) - n + 1)}


class DecontaminateParams(StepParams):
    """Parameters of `decontaminate`."""

    eval_files: list[Path] = Field(min_length=1, description="JSONL or text files holding the evaluation set.")
    text_fields: list[str] = Field(
        default_factory=lambda: ["text", "input", "prompt", "question", "expected_output", "answer"],
        description="JSONL fields whose text counts as evaluation text.",
    )
    ngram: int = Field(13, ge=3, le=50, description="Words per n-gram; GPT-3 used 13.")
    min_eval_words: int = Field(8, ge=1, description="Ignore evaluation texts shorter than this (too generic).")


def _eval_texts(path: Path, fields: list[str]) -> list[str]:
    content = read_text_file(path, "decontaminate eval file", error=InputError)
    if not path.name.endswith((".jsonl", ".json")):
        return [content]
    texts = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise InputError(
                f"decontaminate eval file {path} line {number}: expected one JSON object per line ({reason})"
            ) from None
        texts += [str(obj[f]) for f in fields if isinstance(obj, dict) and obj.get(f)]
    return texts


class DecontaminateStep(Step):
    """Drop documents sharing any word n-gram with the evaluation set, as `eval_contamination`."""

    name = "decontaminate"
    Params = DecontaminateParams
    requires = ("xxhash",)

    def __init__(self, params: StepParams) -> None:
        super().__init__(params)
        p: DecontaminateParams = params  # type: ignore[assignment]
        # An evaluation text shorter than `ngram` words is matched whole, at its own length.
        self._by_size: dict[int, set[int]] = {}
        for path in p.eval_files:
            for text in _eval_texts(path, p.text_fields):
                words = _WORD.findall(text.lower())
                if len(words) >= p.min_eval_words:
                    size = min(p.ngram, len(words))
                    self._by_size.setdefault(size, set()).update(ngram_hashes(words, size))

    def apply(self, table: pa.Table) -> StepResult:
        """Mark documents with at least one shared n-gram."""
        reasons: list[str | None] = []
        for text in table.column("text").to_pylist():
            words = _WORD.findall(text.lower())
            hit = any(not known.isdisjoint(ngram_hashes(words, size)) for size, known in self._by_size.items())
            reasons.append("eval_contamination" if hit else None)
        return StepResult(table, reasons)
