"""Why a record was dropped: the step, the rule, the measured value and the threshold, from a run's kept drops.

A run with `keep_dropped: true` writes each step's dropped rows (with the columns that step added and the
`drop_reason`) under `output/dropped/<step>/`; this module finds a record there and sets what was measured
beside the recipe's limits. It does not re-run any step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from keel.core.errors import NotFoundError
from keel.curate._quality import RuleCheck, explain_rules
from keel.curate._recipe import Recipe, build_steps

__all__ = ["DropExplanation", "explain_record"]


@dataclass(frozen=True)
class DropExplanation:
    """What happened to one record: dropped by `step` (at `steps[position]`) for `reason`, or kept (step None)."""

    record_id: str
    step: str | None
    position: int | None
    reason: str | None
    checks: list[RuleCheck] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    preview: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's `--json`)."""
        return {
            "id": self.record_id,
            "dropped": self.step is not None,
            "step": self.step,
            "position": self.position,
            "reason": self.reason,
            "checks": [check._asdict() for check in self.checks],
            "details": self.details,
            "preview": self.preview,
        }


def _find(files: list[Any], record_id: str) -> dict[str, Any] | None:
    for path in files:
        table = pq.read_table(path, filters=[("id", "=", record_id)])
        if table.num_rows:
            return table.slice(0, 1).to_pylist()[0]  # type: ignore[no-any-return]
    return None


def explain_record(recipe: Recipe, record_id: str) -> DropExplanation:
    """Explain what the last run of `recipe` did with record `record_id`.

    Args:
        recipe: The recipe that was run (its output folder and step parameters are read).
        record_id: The record's `id`.

    Returns:
        For a dropped record: the step and reason, with the measured values against the limits (every
        enabled quality rule, failed ones marked); for a kept record: `step` None.

    Raises:
        NotFoundError: The record is in neither the output nor the kept drops (or drops were not kept).
    """
    out = recipe.output_dir
    specs = recipe.step_specs()
    for name in dict.fromkeys(name for name, _ in specs):
        row = _find(sorted((out / "dropped" / name).glob("*.parquet")), record_id)
        if row is not None:
            position = next(i for i, (n, _) in enumerate(specs) if n == name)
            return _explain(record_id, name, position, specs[position][1], row)
    kept = _find(sorted((out / "data").glob("*.parquet")), record_id)
    if kept is not None:
        return DropExplanation(record_id, None, None, None, preview=_preview(kept.get("text")))
    hint = "run again with `keep_dropped: true` in the recipe, so dropped records are kept aside with their reason"
    raise NotFoundError(
        f"expected record {record_id!r} in {out / 'data'} or {out / 'dropped'}; found it in neither",
        hint=hint if not recipe.keep_dropped else "check the id (e.g. `keel data trace`) and that the run finished",
    )


def _preview(text: Any) -> str:
    text = str(text or "")
    return str(text[:200]) + ("…" if len(text) > 200 else "")


def _explain(record_id: str, name: str, position: int, params: dict[str, Any], row: dict[str, Any]) -> DropExplanation:
    reason = row.get("drop_reason")
    (step,) = build_steps([(name, params)])
    p = step.params
    details: dict[str, Any] = {}
    checks: list[RuleCheck] = []
    if name == "quality" and row.get("quality_signals"):
        checks = explain_rules(row["quality_signals"], p.thresholds())  # type: ignore[attr-defined]
        checks.sort(key=lambda c: (c.reason != reason, not c.failed))  # the deciding rule first, then other failures
    elif name == "length":
        details = {"chars": len(row.get("text") or ""), "min_chars": p.min_chars, "max_chars": p.max_chars}  # type: ignore[attr-defined]
    elif name == "language":
        details = {"lang": row.get("lang"), "lang_score": row.get("lang_score"),
                   "languages": p.languages, "min_score": p.min_score}  # type: ignore[attr-defined]  # fmt: skip
    elif name == "near_dedup":
        details = {"kept": row.get("dup_cluster"), "threshold": p.threshold}  # type: ignore[attr-defined]
    elif name == "pii":
        details = {"types": sorted({span["type"] for span in row.get("pii_spans") or []})}
    return DropExplanation(record_id, name, position, reason, checks, details, _preview(row.get("text")))
