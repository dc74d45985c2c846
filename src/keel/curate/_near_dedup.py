"""`near_dedup`: MinHash-LSH near-duplicate removal as a global step of the curation engine.

Workers compute signatures per shard (the expensive part, parallel), and the keep score of each record when
the `keep` policy needs one; the parent builds one `NearDuplicateIndex` from all of them and decides, per
shard, which records to drop and which kept record each cluster member belongs to. Texts never leave the
workers unless exact verification is asked.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from keel.core.errors import InputError
from keel.curate._minhash import (
    MinHashParams,
    NearDuplicateIndex,
    Sketches,
    keep_rank,
    minhash_signatures,
    minhash_sketches,
)
from keel.curate._step import GlobalStep, StepParams, StepResult

__all__ = ["KeepHighest", "KeepNewest", "NearDedupParams", "NearDedupStep", "keep_scores"]


class KeepNewest(BaseModel):
    """Keep the record with the latest value of a field (ISO date/time or number); records without one last."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    newest: str = Field(min_length=1, description="A column, `struct.field` of a column, or a key of `meta`.")


class KeepHighest(BaseModel):
    """Keep the record with the highest numeric value of a field (e.g. a quality score); records without one last."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    highest: str = Field(min_length=1, description="A column, `struct.field` of a column, or a key of `meta`.")


KeepPolicy = Literal["first", "longest"] | KeepNewest | KeepHighest


class NearDedupParams(StepParams):
    """Parameters of `near_dedup`; see docs/curation.md for how bands x rows shape the S-curve."""

    threshold: float | None = Field(0.8, gt=0, lt=1, description="Jaccard similarity that counts as a near-duplicate.")
    ngram: int = Field(5, ge=1, le=64, description="Shingle length in words (or characters with unit=char).")
    unit: Literal["word", "char"] = "word"
    num_perm: int = Field(112, ge=8, le=1024, description="MinHash permutations per signature.")
    bands: int | None = Field(None, ge=1, description="LSH bands; with rows, instead of threshold-derived values.")
    rows: int | None = Field(None, ge=1, description="Rows per band.")
    verification: Literal["signature", "exact", "none"] = Field(
        "signature",
        description="How candidate pairs are checked: by signature and shingle sketch, exact shingle Jaccard, or not.",
    )
    sketch: int = Field(
        384, ge=0, le=4096, description="Shingles kept per record to verify by signature: exact below this many."
    )
    keep: KeepPolicy = Field(
        "first",
        description="Which record of a cluster stays: first (input order), longest, {newest: field}, "
        "{highest: field}; ties go to the first in input order.",
    )
    seed: int = 1

    @model_validator(mode="after")
    def _valid_minhash(self) -> NearDedupParams:
        try:
            self.minhash()
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return self

    def minhash(self) -> MinHashParams:
        """The library's parameters for these step parameters."""
        return MinHashParams(
            ngram=self.ngram,
            unit=self.unit,
            num_perm=self.num_perm,
            bands=self.bands,
            rows=self.rows,
            threshold=self.threshold,
            seed=self.seed,
            verify=self.verification != "none",
            sketch=self.sketch,
        )

    def keep_label(self) -> str:
        """The keep policy as one word for the report: `first`, `longest`, `newest:FIELD`, `highest:FIELD`."""
        if isinstance(self.keep, KeepNewest):
            return f"newest:{self.keep.newest}"
        if isinstance(self.keep, KeepHighest):
            return f"highest:{self.keep.highest}"
        return self.keep


def _field_values(table: pa.Table, name: str) -> list[Any]:
    """`name`'s value per row: a column, a field of a struct column (`quality_signals.x`), else a `meta` key."""
    if name in table.column_names:
        return list(table.column(name).to_pylist())
    head, _, rest = name.partition(".")
    if rest and head in table.column_names and pa.types.is_struct(table.schema.field(head).type):
        return list(pc.struct_field(table.column(head).combine_chunks(), rest).to_pylist())
    if "meta" not in table.column_names:
        return [None] * table.num_rows
    values = []
    for meta in table.column("meta").to_pylist():
        try:
            parsed = json.loads(meta) if isinstance(meta, str) else meta
        except json.JSONDecodeError:
            parsed = None
        values.append(parsed.get(name) if isinstance(parsed, dict) else None)
    return values


def _as_number(value: Any, dates: bool) -> float:
    """A float for a keep value: numbers as they are, numeric strings, ISO dates/times (if `dates`); else NaN."""
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        if dates:
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                return math.nan
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return math.nan


def keep_scores(table: pa.Table, keep: KeepPolicy) -> np.ndarray | None:
    """Per row, the score the keep policy ranks by (higher kept first, NaN last); None for `first`.

    Examples:
        >>> table = pa.table({"text": ["short", "a longer text"], "meta": ['{"at": "2024-05-01"}', "{}"]})
        >>> keep_scores(table, "longest").tolist(), keep_scores(table, KeepNewest(newest="at")).tolist()
        ([5.0, 13.0], [1714521600.0, nan])
    """
    if keep == "first":
        return None
    if keep == "longest":
        return np.asarray(pc.utf8_length(table.column("text")).to_numpy(zero_copy_only=False), dtype=np.float64)
    field, dates = (keep.newest, True) if isinstance(keep, KeepNewest) else (keep.highest, False)
    return np.array([_as_number(v, dates) for v in _field_values(table, field)], dtype=np.float64)


class NearDedupStep(GlobalStep):
    """Drop near-duplicates (keeping one record per cluster by the `keep` policy) and tag members with `dup_cluster`."""

    name = "near_dedup"
    Params = NearDedupParams
    requires = ("numpy", "xxhash")

    def _minhash(self) -> MinHashParams:
        return self.params.minhash()  # type: ignore[attr-defined, no-any-return]

    def observe(self, table: pa.Table) -> Any:
        """The shard's ids, signatures, keep scores, and texts (exact verification) or sketches (signature).

        Per record: 4 bytes x num_perm of signature, and up to 4 bytes x `sketch` of sketch.
        """
        params: NearDedupParams = self.params  # type: ignore[assignment]
        texts = table.column("text")  # signatures are computed on the Arrow column, not on Python strings
        scores = keep_scores(table, params.keep)
        ids = table.column("id").to_pylist()
        mh = self._minhash()
        if params.verification == "signature" and params.sketch:
            signatures, sketches = minhash_sketches(texts, mh)
            # plain arrays, not a Sketches object: observations go to work files, which hold data only
            return ids, signatures, None, scores, (sketches.values, sketches.offsets)
        exact = params.verification == "exact"
        return ids, minhash_signatures(texts, mh), texts.to_pylist() if exact else None, scores, None

    def decide(self, observations: list[Any]) -> list[Any]:
        """One index over every shard (shards in input order); per shard, {id: kept id} of its cluster members."""
        index = NearDuplicateIndex(self._minhash())
        missing = 0
        for ids, signatures, texts, scores, sketch_arrays in observations:
            if ids:
                sketches = None if sketch_arrays is None else Sketches(*sketch_arrays)
                index.add(ids, np.asarray(signatures), texts, scores=scores, sketches=sketches)
                missing += 0 if scores is None else int(np.isinf(keep_rank(scores)).sum())
        clusters = index.clusters()
        params: NearDedupParams = self.params  # type: ignore[assignment]
        self._report = {
            **index.report(),
            "keep": {"policy": params.keep_label(), "records_without_value": missing},
            "s_curve": [[round(s, 2), round(p, 4)] for s, p in self._minhash().s_curve()],
        }
        return [{key: clusters[key] for key in ids if key in clusters} for ids, *_ in observations]

    def apply_decision(self, table: pa.Table, decision: Any) -> StepResult:
        """Add `dup_cluster` (the kept record's id; null outside clusters) and drop all but the kept one."""
        members: dict[str, str] = decision
        ids = table.column("id").to_pylist()
        cluster = [members.get(key) for key in ids]
        table = table.append_column("dup_cluster", pa.array(cluster, pa.string()))
        reasons: list[str | None] = [
            "near_duplicate" if kept is not None and kept != key else None
            for key, kept in zip(ids, cluster, strict=True)
        ]
        return StepResult(table, reasons)

    def report(self, decision: Any) -> dict[str, Any]:
        """Clusters, candidate and verified pairs, dropped-to-kept similarities, examples, keep policy, S-curve."""
        return getattr(self, "_report", {})
