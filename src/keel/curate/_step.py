"""What a curation step is: typed params, a per-batch method, and (for dedup) a two-phase global method.

A step returns its output table and, if it filters, one drop reason per row (None keeps the row);
augmentation steps append new rows after their input's.
The engine applies the mask, counts drops by reason and keeps dropped rows aside when
asked, so no step can drop silently. Steps know nothing of processes, shards or Ray.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

__all__ = ["GlobalStep", "Step", "StepParams", "StepResult", "StepStats"]


class StepParams(BaseModel):
    """Base of every step's parameters: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class StepResult:
    """A step's output: the table and, if it filters, one drop reason per output row.

    The table holds the input's rows in order; an augmentation step appends the rows it made after them.
    """

    table: pa.Table
    drop_reasons: list[str | None] | None = None


@dataclass
class StepStats:
    """Counters of one step over one or many shards; they add up with `merge`."""

    records_in: int = 0
    records_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    dropped: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)

    def merge(self, other: StepStats) -> None:
        """Add `other`'s counts into these."""
        self.records_in += other.records_in
        self.records_out += other.records_out
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.seconds += other.seconds
        self.dropped.update(other.dropped)
        self.counters.update(other.counters)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with reasons sorted for stable reports."""
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "dropped": dict(sorted(self.dropped.items())),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 3),
            **({"counters": dict(sorted(self.counters.items()))} if self.counters else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepStats:
        """The inverse of `to_json`."""
        return cls(
            records_in=data["records_in"],
            records_out=data["records_out"],
            bytes_in=data["bytes_in"],
            bytes_out=data["bytes_out"],
            seconds=data["seconds"],
            dropped=Counter(data["dropped"]),
            counters=Counter(data.get("counters", {})),
        )


class Step(ABC):
    """A per-record step: `apply` maps one table of records to another with the same rows.

    Subclasses set `name` (the key in recipes), `Params` (a `StepParams` model) and
    `requires` (optional packages, for a clear error when one is missing).
    """

    name: ClassVar[str]
    Params: ClassVar[type[StepParams]]
    requires: ClassVar[tuple[str, ...]] = ()
    adds_rows: ClassVar[bool] = False  # an augmentation step: appends rows after its input's

    def __init__(self, params: StepParams) -> None:
        self.params = params
        self.counters: Counter[str] = Counter()

    def count(self, label: str, n: int = 1) -> None:
        """Add to a named counter reported with the step's stats (e.g. `lines_removed.javascript`)."""
        self.counters[label] += n

    @abstractmethod
    def apply(self, table: pa.Table) -> StepResult:
        """Process one table of records."""


class GlobalStep(Step):
    """A step that must see every shard before deciding (deduplication, decontamination).

    The engine calls `observe` on each shard (in workers), `decide` once on all observations (in
    the parent), then `apply_decision` on each shard. `apply` is not used.
    """

    @abstractmethod
    def observe(self, table: pa.Table) -> Any:
        """What this shard contributes to the decision: compact plain data (numbers, str, containers, numpy arrays)."""

    @abstractmethod
    def decide(self, observations: list[Any]) -> Any:
        """Combine every shard's observation into the decision each shard then applies."""

    @abstractmethod
    def apply_decision(self, table: pa.Table, decision: Any) -> StepResult:
        """Apply the decision to one shard."""

    def report(self, decision: Any) -> dict[str, Any]:
        """Extra facts for the run report (clusters, examples); empty by default."""
        return {}

    def apply(self, table: pa.Table) -> StepResult:
        """Global steps run through observe/decide/apply_decision."""
        raise NotImplementedError(f"{self.name} is a global step; the engine calls observe/decide/apply_decision")
