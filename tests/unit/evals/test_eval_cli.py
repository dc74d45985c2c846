from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from eval_schemas import AGREEMENT, CALIBRATION, COMPARE, GATE, RESULT, RESULT_LIST, RESULT_WITH_CASES, parse_valid
from evals_fakes import FakeOpenAI
from typer.testing import CliRunner

from keel.cli import app
from keel.cli._context import dumps_json

runner = CliRunner()

CASES = [
    ("Which planet is largest?", "Jupiter", "Jupiter is the largest planet in the Solar System."),
    ("Which planet is closest to the Sun?", "Mercury", "Mercury is the planet closest to the Sun."),
    ("Which planet has the most famous rings?", "Saturn", "Saturn is famous for its bright rings."),
    ("Which planet is called the red planet?", "Mars", "Mars is called the red planet because of iron oxide."),
    ("Which planet is the hottest?", "Venus", "Venus is the hottest planet because of its thick atmosphere."),
    ("Which planet do we live on?", "Earth", "We live on Earth, the third planet from the Sun."),
    ("Which planet rotates on its side?", "Uranus", "Uranus rotates on its side."),
    ("Which planet is farthest from the Sun?", "Neptune", "Neptune is the farthest planet from the Sun."),
] * 3


def _suite_file(tmp_path: Path, base_url: str) -> Path:
    suite = {
        "name": "planets",
        "cases": [{"id": f"c{i}", "input": q, "expected": a, "contexts": [ctx]} for i, (q, a, ctx) in enumerate(CASES)],
        "subject": {"kind": "endpoint", "base_url": base_url, "model": "v1"},
        "metrics": [{"name": "exact_match", "threshold": 0.9}, {"name": "groundedness"}, {"name": "rougeL"}],
        "resamples": 300,
    }
    path = tmp_path / "planets.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def _invoke(workspace: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--workspace", str(workspace), *args])
    return result.exit_code, result.stdout if "--json" in args else result.output


def test_eval_cli_round_trip(workspace: Path, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.answers["v1"] = {q: a for q, a, _ in CASES}
    fake_openai.answers["v2"] = {q: (a if i % 2 else "Pluto") for i, (q, a, _) in enumerate(CASES[:8])}
    suite = _suite_file(tmp_path, fake_openai.base_url)

    code, out = _invoke(workspace, "eval", "run", str(suite), "--json")
    assert code == 0, out
    first = parse_valid(out, RESULT)
    assert first["passed"] and first["aggregates"]["exact_match"]["mean"] == 1.0 and first["num_cases"] == 24

    code, out = _invoke(workspace, "eval", "show", first["id"], "--cases")
    assert code == 0 and "exact_match" in out and "Jupiter" in out
    code, out = _invoke(workspace, "eval", "show", first["id"], "--json")
    assert code == 0 and parse_valid(out, RESULT)["id"] == first["id"]
    code, out = _invoke(workspace, "eval", "show", first["id"], "--cases", "--json")
    assert code == 0 and len(parse_valid(out, RESULT_WITH_CASES)["cases"]) == 24
    code, out = _invoke(workspace, "eval", "list", "--json")
    assert code == 0 and [r["id"] for r in parse_valid(out, RESULT_LIST)] == [first["id"]]

    md, report = tmp_path / "gate.md", tmp_path / "gate.json"
    args = ["eval", "gate", "--suite", str(suite), "--markdown", str(md), "--report", str(report)]
    code, out = _invoke(workspace, *args, "--baseline", first["id"], "--candidate", "v1")
    assert code == 0, out
    assert "Eval gate PASSED" in out and "Eval gate PASSED" in md.read_text()
    code, out = _invoke(workspace, *args, "--baseline", first["id"], "--candidate", "v2")
    assert code == 1, out
    verdict = parse_valid(report.read_text(), GATE)
    assert not verdict["passed"] and any("exact_match regressed" in r for r in verdict["reasons"])
    assert "Eval gate FAILED" in md.read_text()
    candidate_id = verdict["candidate"]["id"]

    code, out = _invoke(workspace, "eval", "compare", first["id"], candidate_id, "--method", "paired-permutation")
    assert code == 0 and "regression" in out
    code, out = _invoke(workspace, "eval", "compare", first["id"], candidate_id, "--json")
    compared = parse_valid(out, COMPARE)
    assert {c["metric"]: c["regression"] for c in compared["comparisons"]}["exact_match"] is True

    # Human ratings round trip: export, annotate (a rater who agrees with exact match), import, kappa.
    sheet = tmp_path / "rate.csv"
    code, out = _invoke(workspace, "eval", "export", candidate_id, "--out", str(sheet))
    assert code == 0 and "Wrote 24 cases" in out
    code, out = _invoke(workspace, "eval", "export", candidate_id, "--out", str(sheet), "--json")
    assert code == 0 and json.loads(out) == {"result": candidate_id, "path": str(sheet), "cases": 24}
    rows = list(csv.DictReader(sheet.read_text().splitlines()))
    for row in rows:
        row["rating"] = "yes" if row["output"] == row["expected"] else "no"
    with sheet.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, out = _invoke(workspace, "eval", "agreement", candidate_id, str(sheet), "--json")
    assert code == 0, out
    agreement = parse_valid(out, AGREEMENT)
    assert agreement["rated"] == 24 and agreement["metrics"]["exact_match"]["kappa"] == 1.0
    assert -1.0 <= agreement["metrics"]["groundedness"]["kappa"] <= 1.0


def test_eval_cli_user_errors_exit_2_without_traceback(workspace: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmetrics: [{name: nope}]\n")
    code, out = _invoke(workspace, "eval", "run", str(bad))
    assert code == 2 and "metrics.0.name" in out and "Traceback" not in out
    code, out = _invoke(workspace, "eval", "show", "01JD0000000000000000000000")
    assert code == 2 and "no eval result" in out


def test_gate_report_and_json_hold_real_booleans_when_a_change_is_not_significant(
    workspace: Path, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    # One wrong answer in 24: every metric's p lies in [0.05, 1), where numpy booleans used to reach
    # json.dumps (`--report` crashed with exit 1) and print_json (`"regression": "False"`).
    fake_openai.answers["v1"] = {q: a for q, a, _ in CASES}
    fake_openai.answers["v3"] = {q: (a if i else "Pluto") for i, (q, a, _) in enumerate(CASES[:8])}
    fake_openai.answers["v3"][CASES[0][0]] = "Pluto"
    suite = _suite_file(tmp_path, fake_openai.base_url)
    report = tmp_path / "gate.json"
    args = ["eval", "gate", "--suite", str(suite), "--report", str(report), "--baseline", "v1"]
    code, out = _invoke(workspace, *args, "--candidate", "v1", "--json")
    assert code == 0, out
    code, out = _invoke(workspace, *args, "--candidate", "v1")
    assert code == 0, out
    parse_valid(report.read_text(), GATE)

    # v3 gets 21/24 = 0.875 exact matches, below the 0.9 threshold: drop it so only the test decides.
    loose = yaml.safe_load(suite.read_text())
    loose["metrics"][0].pop("threshold")
    suite.write_text(yaml.safe_dump(loose))
    code, out = _invoke(workspace, *args, "--candidate", "v3", "--json")
    verdict = parse_valid(out, GATE)
    exact = {c["metric"]: c for c in verdict["comparisons"]}["exact_match"]
    assert 0.05 <= exact["p_value"] < 1 and exact["regression"] is False and exact["delta"] < 0
    assert code == 0 and verdict["passed"] is True
    assert parse_valid(report.read_text(), GATE) == verdict
    assert any("suite too small to detect" in note and "exact_match" in note for note in verdict["notes"])


@pytest.mark.parametrize("value", [np.bool_(False), np.int64(3), np.float32(0.5), object()])
def test_json_output_refuses_values_it_cannot_write_faithfully(value: object) -> None:
    # numpy.float64 subclasses float and is written as a number; the others would go through str().
    with pytest.raises(TypeError, match="convert it to a plain JSON type"):
        dumps_json({"regression": value})


def test_json_output_writes_times_and_paths_as_text() -> None:
    import datetime as dt

    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert json.loads(dumps_json({"at": when, "path": Path("/x/y")})) == {"at": str(when), "path": "/x/y"}


def test_results_without_thresholds_say_no_gate(workspace: Path, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.answers["v1"] = {q: "Pluto" for q, _, _ in CASES}  # all wrong: still nothing was gated
    suite = _suite_file(tmp_path, fake_openai.base_url)
    spec = yaml.safe_load(suite.read_text())
    spec["metrics"] = [{"name": "exact_match"}, {"name": "rougeL"}]
    suite.write_text(yaml.safe_dump(spec))
    code, out = _invoke(workspace, "eval", "run", str(suite))
    assert code == 0 and "no gate" in out and "passed" not in out.splitlines()[0]
    code, listed = _invoke(workspace, "eval", "list")
    assert code == 0 and "no gate" in listed and "yes" not in listed


GROUNDED = [
    ("How long?", "Keel routers have a two-year warranty.", "All Keel routers come with a two-year warranty."),
    ("How long?", "Keel routers have a five-year warranty.", "All Keel routers come with a two-year warranty."),
    ("Where?", "The plant is in Leeds.", "The plant is in Leeds and employs 40 people."),
    ("Where?", "The plant is in Munich and was built by Bayer.", "The plant is in Leeds and employs 40 people."),
]


def test_calibrate_judge_against_the_offline_judge(workspace: Path, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    suite = {
        "name": "grounded",
        "cases": [{"id": f"g{i}", "input": q, "expected": a, "contexts": [c]} for i, (q, a, c) in enumerate(GROUNDED)],
        "subject": {"kind": "endpoint", "base_url": fake_openai.base_url, "model": "v1"},
        "metrics": [{"name": "groundedness"}],
        "judge": {"kind": "llm", "base_url": fake_openai.base_url, "model": "judge-1", "pin_model": True},
    }
    path = tmp_path / "grounded.yaml"
    path.write_text(yaml.safe_dump(suite))
    # The stub judge agrees with the offline verdicts on three cases and scores the fabricated one 0.9.
    fake_openai.scripts["judge-1"] = ['{"score": 1}', '{"score": 0.1}', "Yes, supported.", '{"score": 0.9}']
    code, out = _invoke(workspace, "eval", "calibrate-judge", str(path), "--json")
    assert code == 0, out
    report = parse_valid(out, CALIBRATION)
    assert report["n"] == 4 and report["reference"] == "offline" and report["judge"]["model"] == "judge-1"
    assert report["agreement"] == 0.75 and report["kappa"] == 0.5
    # Offline passes cases 0 and 2 (judge 1, 1) and fails 1 and 3 (judge 0.1, 0.9): the judge ranks
    # every pair right (AUC 1) though its 0.5 threshold lets the fabricated answer through.
    assert report["auc"] == 1.0
    assert [r["messages"][0]["content"].count("two-year") for r in fake_openai.requests[-4:]][:2] == [2, 1]

    # A URL judge with --model; the human table names the model and the reference.
    fake_openai.scripts["judge-2"] = ['{"score": 1}', '{"score": 0}', '{"score": 1}', '{"score": 0}']
    code, out = _invoke(workspace, "eval", "calibrate-judge", str(path), "--judge", fake_openai.base_url,
                        "--model", "judge-2")  # fmt: skip
    assert code == 0, out
    assert "judge-2" in out and "offline" in out and "100.0%" in out

    # Bad input: one clear line and exit 2.
    code, out = _invoke(workspace, "eval", "calibrate-judge", str(path), "--judge", "gpt-4o")
    assert code == 2 and "expected --judge suite, smollm2 or an http(s) base URL" in out
    suite["judge"] = {"kind": "offline"}
    path.write_text(yaml.safe_dump(suite))
    code, out = _invoke(workspace, "eval", "calibrate-judge", str(path))
    assert code == 2 and "expected an llm judge" in out
