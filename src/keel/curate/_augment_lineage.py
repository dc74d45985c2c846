"""Lineage of augmented rows, and `dedup_against_parent`, which drops an augmented row that copies its parent.

An augmentation step keeps its input rows and appends new ones after them. Every row then carries three
columns: `parent_id` (the id of the record it was made from; null for a row no step made), `augment_op` (the
operation: `paraphrase`, `back_translate`, `synonym`, `eda`) and `augment_detail` (JSON: model, pivot
language, seed, the word edits made). A child's id is derived from its parent's id, the operation, the copy
number and its text, so the same input, recipe and seed give the same ids.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field

from keel.core.ids import sha256_hex
from keel.curate._step import GlobalStep, StepParams, StepResult

__all__ = ["LINEAGE_COLUMNS", "DedupAgainstParentStep", "append_children", "word_shingles"]

LINEAGE_COLUMNS = ("parent_id", "augment_op", "augment_detail")
_KEPT_FROM_PARENT = ("source", "meta")  # a child comes from where its parent came from; other columns are reset
_WORD = re.compile(r"\w+")


def with_lineage_columns(table: pa.Table) -> pa.Table:
    """`table` with the lineage columns, all null where missing (rows no step made)."""
    for name in LINEAGE_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table


def child_id(parent_id: str, op: str, copy: int, text: str) -> str:
    """A child record's id: 24 hex digits of sha256(parent id, operation, copy number, text)."""
    return sha256_hex(f"{parent_id}\x00{op}\x00{copy}\x00{text}")[:24]


def append_children(
    table: pa.Table, parents: list[int], texts: list[str], op: str, copies: list[int], details: list[dict[str, Any]]
) -> pa.Table:
    """`table` (with lineage columns) followed by one new row per entry of `parents`.

    Row k is made from row `parents[k]`: text `texts[k]`, copy number `copies[k]`, `augment_detail` `details[k]`
    as JSON. It keeps its parent's `source` and `meta`; other columns added by earlier steps (quality signals,
    PII spans) are null, since they described the parent's text.
    """
    table = with_lineage_columns(table)
    if not parents:
        return table
    ids = table.column("id").to_pylist()
    columns = []
    for name in table.column_names:
        kind = table.schema.field(name).type
        if name == "id":
            column = pa.array([child_id(ids[p], op, c, t) for p, c, t in zip(parents, copies, texts, strict=True)])
        elif name == "text":
            column = pa.array(texts, pa.string())
        elif name == "parent_id":
            column = pa.array([ids[p] for p in parents], pa.string())
        elif name == "augment_op":
            column = pa.array([op] * len(parents), pa.string())
        elif name == "augment_detail":
            column = pa.array([json.dumps(d, sort_keys=True, ensure_ascii=False) for d in details], pa.string())
        elif name in _KEPT_FROM_PARENT:
            column = table.column(name).take(pa.array(parents, pa.int64())).combine_chunks()
        else:
            column = pa.nulls(len(parents), kind)
        columns.append(column.cast(kind))
    children = pa.Table.from_arrays(columns, schema=table.schema)
    return pa.concat_tables([table, children]).combine_chunks()


def word_shingles(text: str, n: int) -> np.ndarray[Any, Any]:
    """The distinct 64-bit hashes of a text's lowercased word n-grams (the whole text if shorter), sorted."""
    words = _WORD.findall(text.lower())
    grams = [" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))]
    return np.unique(np.array([xxhash.xxh3_64_intdigest(g.encode()) for g in grams], dtype=np.uint64))


def jaccard(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """Jaccard similarity of two sorted sets of hashes."""
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b, assume_unique=True)) / union if union else 1.0


class DedupAgainstParentParams(StepParams):
    """Parameters of `dedup_against_parent`."""

    ngram: int = Field(5, ge=1, le=16, description="Compare texts as sets of word n-grams of this length.")
    threshold: float = Field(
        0.8, gt=0, le=1, description="Drop a child whose n-gram Jaccard similarity to its parent is at least this."
    )


class DedupAgainstParentStep(GlobalStep):
    """Drop an augmented row (one with a `parent_id`) whose text is a near copy of its parent's.

    Global, so a parent and its child may sit in different shards: each shard contributes the n-gram hashes of
    its children and of every row (a possible parent), the parent decides, each shard drops its copies as
    `copies_parent`. A child whose parent is not in the data (filtered out earlier) is kept and counted.
    """

    name = "dedup_against_parent"
    Params = DedupAgainstParentParams
    requires = ("xxhash",)

    def observe(self, table: pa.Table) -> Any:
        """Ids, parent ids, and every row's n-gram hashes (concatenated, with offsets: two arrays per shard)."""
        p: DedupAgainstParentParams = self.params  # type: ignore[assignment]
        ids = table.column("id").to_pylist()
        parents = (
            table.column("parent_id").to_pylist() if "parent_id" in table.column_names else [None] * table.num_rows
        )
        shingles = [word_shingles(t or "", p.ngram) for t in table.column("text").to_pylist()]
        offsets = np.cumsum([0, *(len(s) for s in shingles)]).astype(np.int64)
        hashes = np.concatenate(shingles) if shingles else np.zeros(0, np.uint64)
        return {"ids": ids, "parents": parents, "hashes": hashes, "offsets": offsets}

    def decide(self, observations: list[Any]) -> list[Any]:
        """For each shard, the positions of children at least `threshold` similar to their parent."""
        p: DedupAgainstParentParams = self.params  # type: ignore[assignment]

        def rows(obs: Any) -> list[np.ndarray[Any, Any]]:
            bounds = obs["offsets"]
            return [obs["hashes"][bounds[i] : bounds[i + 1]] for i in range(len(obs["ids"]))]

        shingles = [rows(obs) for obs in observations]
        by_id = {
            i: s
            for obs, mine in zip(observations, shingles, strict=True)
            for i, s in zip(obs["ids"], mine, strict=True)
        }
        drops, orphans = [], 0
        for obs, mine in zip(observations, shingles, strict=True):
            shard = []
            for position, (parent, own) in enumerate(zip(obs["parents"], mine, strict=True)):
                if parent is None:
                    continue
                if parent not in by_id:
                    orphans += 1
                elif jaccard(own, by_id[parent]) >= p.threshold:
                    shard.append(position)
            drops.append(shard)
        self._report = {"copies": sum(len(d) for d in drops), "parent_not_found": orphans}
        return drops

    def apply_decision(self, table: pa.Table, decision: Any) -> StepResult:
        """Drop the children the decision names as `copies_parent`."""
        drop = set(decision)
        return StepResult(table, ["copies_parent" if i in drop else None for i in range(table.num_rows)])

    def report(self, decision: Any) -> dict[str, Any]:
        """How many children copied their parent, and how many named a parent not in the data."""
        return getattr(self, "_report", {"copies": sum(len(d) for d in decision)})
