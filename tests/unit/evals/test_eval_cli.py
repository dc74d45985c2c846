from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml
from evals_fakes import FakeOpenAI
from typer.testing import CliRunner

from keel.cli import app

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
    first = json.loads(out)
    assert first["passed"] and first["aggregates"]["exact_match"]["mean"] == 1.0 and first["num_cases"] == 24

    code, out = _invoke(workspace, "eval", "show", first["id"], "--cases")
    assert code == 0 and "exact_match" in out and "Jupiter" in out
    code, out = _invoke(workspace, "eval", "list", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [first["id"]]

    md, report = tmp_path / "gate.md", tmp_path / "gate.json"
    args = ["eval", "gate", "--suite", str(suite), "--markdown", str(md), "--report", str(report)]
    code, out = _invoke(workspace, *args, "--baseline", first["id"], "--candidate", "v1")
    assert code == 0, out
    assert "Eval gate PASSED" in out and "Eval gate PASSED" in md.read_text()
    code, out = _invoke(workspace, *args, "--baseline", first["id"], "--candidate", "v2")
    assert code == 1, out
    verdict = json.loads(report.read_text())
    assert not verdict["passed"] and any("exact_match regressed" in r for r in verdict["reasons"])
    assert "Eval gate FAILED" in md.read_text()
    candidate_id = verdict["candidate"]["id"]

    code, out = _invoke(workspace, "eval", "compare", first["id"], candidate_id, "--method", "paired-permutation")
    assert code == 0 and "regression" in out

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
    agreement = json.loads(out)
    assert agreement["rated"] == 24 and agreement["metrics"]["exact_match"]["kappa"] == 1.0
    assert -1.0 <= agreement["metrics"]["groundedness"]["kappa"] <= 1.0


def test_eval_cli_user_errors_exit_2_without_traceback(workspace: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmetrics: [{name: nope}]\n")
    code, out = _invoke(workspace, "eval", "run", str(bad))
    assert code == 2 and "metrics.0.name" in out and "Traceback" not in out
    code, out = _invoke(workspace, "eval", "show", "01JD0000000000000000000000")
    assert code == 2 and "no eval result" in out
