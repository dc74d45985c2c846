"""`near_dedup`: MinHash-LSH near-duplicate removal as a global step of the curation engine.

Workers compute signatures per shard (the expensive part, parallel); the parent builds one
`NearDuplicateIndex` from all of them and decides, per shard, which records to drop and which
cluster each member belongs to. Texts never leave the workers unless exact verification is asked.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from keel.core.errors import InputError
from keel.curate._minhash import MinHashParams, NearDuplicateIndex, minhash_signatures
from keel.curate._step import GlobalStep, StepParams, StepResult

__all__ = ["NearDedupStep"]


class NearDedupParams(StepParams):
    """Parameters of `near_dedup`; see docs/curation.md for how bands x rows shape the S-curve."""

    threshold: float | None = Field(0.8, gt=0, lt=1, description="Jaccard similarity that counts as a near-duplicate.")
    ngram: int = Field(5, ge=1, le=64, description="Shingle length in words (or characters with unit=char).")
    unit: Literal["word", "char"] = "word"
    num_perm: int = Field(112, ge=8, le=1024, description="MinHash permutations per signature.")
    bands: int | None = Field(None, ge=1, description="LSH bands; with rows, instead of threshold-derived values.")
    rows: int | None = Field(None, ge=1, description="Rows per band.")
    verification: Literal["signature", "exact", "none"] = Field(
        "signature", description="How candidate pairs are checked: estimated Jaccard, exact shingle Jaccard, or not."
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
        )


class NearDedupStep(GlobalStep):
    """Drop near-duplicates (keeping the smallest id of each cluster) and tag members with `dup_cluster`."""

    name = "near_dedup"
    Params = NearDedupParams
    requires = ("numpy", "xxhash")

    def _minhash(self) -> MinHashParams:
        return self.params.minhash()  # type: ignore[attr-defined, no-any-return]

    def observe(self, table: pa.Table) -> Any:
        """The shard's ids and signatures (4 bytes x num_perm per record), plus texts for exact checks."""
        texts = table.column("text").to_pylist()
        exact = self.params.verification == "exact"  # type: ignore[attr-defined]
        return table.column("id").to_pylist(), minhash_signatures(texts, self._minhash()), texts if exact else None

    def decide(self, observations: list[Any]) -> list[Any]:
        """One index over every shard; per shard, {id: cluster id} of its members in clusters."""
        index = NearDuplicateIndex(self._minhash())
        for ids, signatures, texts in observations:
            if ids:
                index.add(ids, np.asarray(signatures), texts)
        clusters = index.clusters()
        self._report = {**index.report(), "s_curve": [[round(s, 2), round(p, 4)] for s, p in self._minhash().s_curve()]}
        return [{key: clusters[key] for key in ids if key in clusters} for ids, _, _ in observations]

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
        """Clusters, candidate and verified pairs, examples, and the S-curve used."""
        return getattr(self, "_report", {})
