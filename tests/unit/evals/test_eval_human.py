from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keel.core.errors import InputError
from keel.evals import CaseScore, EvalCase, EvalResult, export_for_annotation, judge_agreement, read_ratings


def _result() -> EvalResult:
    cases = [EvalCase(str(i), f"q{i}", f"a{i}", (f"ctx {i}",)) for i in range(6)]
    judged = [0.9, 0.8, 0.2, 0.1, 0.7, 0.3]
    return EvalResult(
        id="01JD0000000000000000000000",
        suite="s",
        suite_digest="0" * 64,
        subject="endpoint:m@x",
        dataset=None,
        seed=0,
        passed=True,
        aggregates={},
        config={},
        created_by="me",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        cases=cases,
        outputs=[f"out{i}" for i in range(6)],
        scores={"groundedness": [CaseScore(v) for v in judged], "bleu": [CaseScore(50.0)] * 6},
    )


def test_jsonl_export_ratings_and_kappa(tmp_path: Path) -> None:
    sheet = tmp_path / "rate.jsonl"
    assert export_for_annotation(_result(), sheet) == 6
    rows = [json.loads(line) for line in sheet.read_text().splitlines()]
    assert rows[0] == {
        "result": "01JD0000000000000000000000",
        "case_id": "0",
        "input": "q0",
        "expected": "a0",
        "contexts": '["ctx 0"]',
        "output": "out0",
        "rating": "",
        "note": "",
    }
    # The human agrees with the judge on 5 of 6 (disagrees on case 4) and skips none.
    for row, rating in zip(rows, ["yes", "1", "no", "false", "fail", "0"], strict=True):
        row["rating"] = rating
    rows.append({"case_id": "not-in-result", "rating": "yes"})
    sheet.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ratings = read_ratings(sheet)
    assert ratings["0"] == 1 and ratings["4"] == 0
    report = judge_agreement(_result(), ratings)
    assert report["rated"] == 6 and list(report["metrics"]) == ["groundedness"]  # BLEU is not on a 0–1 scale
    # human 1,1,0,0,0,0 vs judge 1,1,0,0,1,0: p_o = 5/6, p_e = (2/6)(3/6) + (4/6)(3/6) = 1/2 -> kappa 2/3.
    assert report["metrics"]["groundedness"]["kappa"] == pytest.approx(2 / 3)


def test_bad_ratings_are_reported_with_their_row(tmp_path: Path) -> None:
    sheet = tmp_path / "r.csv"
    sheet.write_text("case_id,rating\n0,yes\n1,maybe\n")
    with pytest.raises(InputError, match="row 2: expected a rating"):
        read_ratings(sheet)
    sheet.write_text("case_id,rating\n0,\n")
    assert read_ratings(sheet) == {}
    with pytest.raises(InputError, match="none of 0 matched"):
        judge_agreement(_result(), {})
    with pytest.raises(InputError, match="ratings file .*missing.csv: expected a file; nothing is there"):
        read_ratings(tmp_path / "missing.csv")
