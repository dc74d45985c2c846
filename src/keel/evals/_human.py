"""Human evaluation: export a result's cases for annotation, read ratings back, measure agreement.

Ratings are binary judgements (1 = good/supported, 0 = bad/unsupported; `yes`/`no`, `true`/`false`
and `pass`/`fail` are accepted). Agreement with each judge-scored metric is Cohen's kappa after
thresholding the judge's score at `threshold`.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Literal

from keel.core.errors import InputError
from keel.core.settings import read_text_file
from keel.evals._results import EvalResult
from keel.evals._stats import cohen_kappa

__all__ = ["export_for_annotation", "judge_agreement", "read_ratings"]

_FIELDS = ("result", "case_id", "input", "expected", "contexts", "output", "rating", "note")
_TRUE = {"1", "yes", "y", "true", "pass", "good", "supported"}
_FALSE = {"0", "no", "n", "false", "fail", "bad", "unsupported"}


def export_for_annotation(
    result: EvalResult, path: str | os.PathLike[str], *, format: Literal["csv", "jsonl"] | None = None
) -> int:
    """Write one row per case with an empty `rating` column for annotators; returns the row count.

    The format follows the file suffix (`.csv` or `.jsonl`) unless given.
    """
    target = Path(path)
    fmt = format or ("csv" if target.suffix.lower() == ".csv" else "jsonl")
    rows = [
        {
            "result": result.id,
            "case_id": case.id,
            "input": case.input,
            "expected": case.expected or "",
            "contexts": json.dumps(list(case.contexts), ensure_ascii=False),
            "output": output,
            "rating": "",
            "note": "",
        }
        for case, output in zip(result.cases, result.outputs, strict=True)
    ]
    with target.open("w", encoding="utf-8", newline="") as handle:
        if fmt == "csv":
            writer = csv.DictWriter(handle, fieldnames=_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        else:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return len(rows)


def _rating(value: Any, where: str) -> int | None:
    text = str(value).strip().lower() if value is not None else ""
    if not text:
        return None
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise InputError(f"{where}: expected a rating of 1/0, yes/no, true/false or pass/fail; got {value!r}")


def read_ratings(path: str | os.PathLike[str]) -> dict[str, int]:
    """Read annotated ratings (CSV or JSONL with `case_id` and `rating`); unrated rows are skipped.

    Raises:
        InputError: The file is missing, a directory, not UTF-8 or empty; a line is not a JSON object;
            or a row lacks `case_id` or has a rating that is not a yes/no judgement.
    """
    source = Path(path)
    where = f"ratings file {source}"
    text = read_text_file(source, "ratings file", error=InputError)
    if not text.strip():
        raise InputError(f"{where}: expected rows with `case_id` and `rating`; the file is empty")
    rows: list[Any] = []
    if source.suffix.lower() == ".csv":
        try:
            rows = list(csv.DictReader(text.splitlines()))
        except csv.Error as exc:
            raise InputError(f"{where}: expected CSV; {exc}") from None
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise InputError(f"{where} line {number}: expected one JSON object ({reason})") from None
    ratings: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise InputError(f"{where} row {i}: expected an object with `case_id` and `rating`; found {row!r:.40}")
        if not row.get("case_id"):
            raise InputError(f"{where} row {i}: expected a `case_id`")
        value = _rating(row.get("rating"), f"{where} row {i}")
        if value is not None:
            ratings[str(row["case_id"])] = value
    return ratings


def judge_agreement(result: EvalResult, ratings: dict[str, int], *, threshold: float = 0.5) -> dict[str, Any]:
    """Cohen's kappa between human ratings and each 0–1 metric of the result, on the rated cases.

    Returns:
        {"rated": n, "metrics": {metric: {"kappa", "agreement", "n"}}}.

    Raises:
        InputError: No rated case belongs to the result.
    """
    index = {case.id: i for i, case in enumerate(result.cases)}
    rated = [(index[case_id], rating) for case_id, rating in ratings.items() if case_id in index]
    if not rated:
        raise InputError(f"expected ratings of cases in eval result {result.id}; none of {len(ratings)} matched")
    humans = [rating for _, rating in rated]
    metrics: dict[str, Any] = {}
    for metric, scores in result.scores.items():
        if metric == "perplexity" or metric in ("bleu", "chrf"):  # not on a 0–1 scale
            continue
        judged = [int(scores[i].value >= threshold) for i, _ in rated]
        agreement = sum(h == j for h, j in zip(humans, judged, strict=True)) / len(humans)
        metrics[metric] = {"kappa": cohen_kappa(humans, judged), "agreement": agreement, "n": len(humans)}
    return {"rated": len(rated), "threshold": threshold, "metrics": metrics}
