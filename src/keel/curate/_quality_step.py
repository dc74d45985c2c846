"""`quality`: Gopher, C4 and FineWeb heuristics, every signal kept in a `quality_signals` column.

Signals and rules live in keel.curate._quality (documented in docs/quality-rules.md); this module
turns a batch's signal columns into a struct column and the first failed rule into a drop reason.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import ConfigDict, Field, model_validator

from keel.core.errors import InputError
from keel.curate._quality import (
    QualityPreset,
    QualityThresholds,
    c4_clean_lines,
    quality_signal_columns,
    rule_failures,
    thresholds_from_params,
)
from keel.curate._step import Step, StepParams, StepResult

__all__ = ["QualityStep"]


class QualityParams(StepParams):
    """`preset`, `clean_lines`, plus any threshold of docs/quality-rules.md (null switches a rule off)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    preset: QualityPreset = Field(
        "web",
        description="Threshold set to start from: `web` (Gopher, C4, FineWeb for crawls) or `documents` "
        "(manuals, policies, tickets, code docs); thresholds given beside it override it.",
    )
    clean_lines: bool = Field(False, description="Remove C4's bad lines (no end punctuation, javascript, …) first.")

    @model_validator(mode="after")
    def _valid_thresholds(self) -> QualityParams:
        try:
            thresholds_from_params(self.model_extra, self.preset)
        except InputError as exc:
            raise ValueError(exc.message) from None
        return self

    def thresholds(self) -> QualityThresholds:
        """The validated thresholds."""
        return thresholds_from_params(self.model_extra, self.preset)


class QualityStep(Step):
    """Add `quality_signals`; drop by the first failed rule (e.g. `gopher_min_words`)."""

    name = "quality"
    Params = QualityParams

    def __init__(self, params: StepParams) -> None:
        super().__init__(params)
        self._thresholds = params.thresholds()  # type: ignore[attr-defined]

    def _clean(self, texts: list[str]) -> list[str]:
        cleaned = []
        for text in texts:
            kept, removed = c4_clean_lines(text, self._thresholds)
            for reason, n in removed.items():
                self.count(f"lines_removed.{reason}", n)
            cleaned.append(kept)
        return cleaned

    def apply(self, table: pa.Table) -> StepResult:
        """Compute every signal for the batch at once, then apply the enabled rules."""
        texts: pa.ChunkedArray | pa.Array = table.column("text")  # measured as Arrow, never as Python strings
        if self.params.clean_lines:  # type: ignore[attr-defined]
            texts = pa.array(self._clean(texts.to_pylist()), pa.string())
            table = table.set_column(table.schema.get_field_index("text"), "text", texts)
        columns = quality_signal_columns(texts)
        failures = rule_failures(columns, self._thresholds)
        reasons: list[str | None] = [None] * table.num_rows
        for reason, failed in failures.items():  # rule order: the first failed rule names the drop
            for index in np.flatnonzero(failed):
                if reasons[index] is None:
                    reasons[index] = str(reason)
        signals = pa.StructArray.from_arrays(
            [pa.array(np.asarray(values, dtype=np.float32)) for values in columns.values()], names=list(columns)
        )
        return StepResult(table.append_column("quality_signals", signals), reasons)
