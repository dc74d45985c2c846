"""`keel pipeline validate|run|diff|show` on shell stages: exit codes, output and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from keel.cli import app

PIPELINE = """\
name: files
params: {n: 3, must: 1}
stages:
  make:
    run: "seq ${params.n} > numbers.txt"
    inputs: [seed.txt]
    outputs: [numbers.txt]
  count:
    run: "wc -l < numbers.txt > count.txt"
    inputs: [numbers.txt]
    outputs: [count.txt]
  check:
    run: "test $(cat count.txt) -ge ${params.must} || { echo only $(cat count.txt) numbers; exit 3; }"
    gate: true
    inputs: [count.txt]
  publish:
    run: "cp count.txt published.txt"
    inputs: [count.txt]
    outputs: [published.txt]
    needs: [check]
"""


def _invoke(workspace: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-w", str(workspace), *args])
    return result.exit_code, result.output


def _project(workspace: Path) -> Path:
    (workspace / "seed.txt").write_text("1\n")
    (workspace / "pipeline.yaml").write_text(PIPELINE)
    return workspace / "pipeline.yaml"


def test_run_twice_diff_show_and_dry_run(workspace: Path) -> None:
    file = str(_project(workspace))
    code, out = _invoke(workspace, "pipeline", "validate", "-f", file)
    assert code == 0 and "4 stages in order make → count → check → publish" in out
    code, out = _invoke(workspace, "pipeline", "run", "-f", file, "--dry-run", "--json")
    assert code == 0 and json.loads(out)["would_run"] == ["make", "count", "check", "publish"]
    assert not (workspace / "numbers.txt").exists()  # a dry run runs nothing

    code, out = _invoke(workspace, "pipeline", "run", "-f", file)
    assert code == 0, out
    assert "4 stage(s) ran, 0 cached" in out and (workspace / "published.txt").read_text().strip() == "3"
    code, out = _invoke(workspace, "pipeline", "run", "-f", file, "--json")
    assert code == 0 and {s["status"] for s in json.loads(out)["stages"]} == {"cached"}

    (workspace / "seed.txt").write_text("2\n")
    code, out = _invoke(workspace, "pipeline", "diff", "-f", file, "--json")
    reasons = {s["stage"]: s["reasons"] for s in json.loads(out)["stages"]}
    assert reasons["make"][0].startswith("input seed.txt changed (") and reasons["count"] == [
        "upstream stage make runs first"
    ]
    code, out = _invoke(workspace, "pipeline", "run", "-f", file, "--json")
    statuses = {s["stage"]: s["status"] for s in json.loads(out)["stages"]}
    # make re-ran but wrote the same numbers, so everything after it is a cache hit again
    assert statuses == {"make": "finished", "count": "cached", "check": "cached", "publish": "cached"}

    code, out = _invoke(workspace, "pipeline", "run", "count", "-f", file, "--force", "count", "--json")
    assert [(s["stage"], s["status"]) for s in json.loads(out)["stages"]] == [("make", "cached"), ("count", "finished")]

    code, out = _invoke(workspace, "pipeline", "show", "-f", file, "--json")
    last = {s["name"]: s["last"]["status"] for s in json.loads(out)["stages"]}
    assert last == {"make": "cached", "count": "finished", "check": "cached", "publish": "cached"}
    code, out = _invoke(workspace, "pipeline", "show", "-f", file)
    assert code == 0 and "publish" in out and "(also after count)" in out


def test_a_failing_gate_exits_1_with_its_evidence_and_bad_input_exits_2(workspace: Path) -> None:
    file = str(_project(workspace))
    code, out = _invoke(workspace, "pipeline", "run", "-f", file, "--set", "must=5")
    assert code == 1, out
    assert "only 3 numbers" in out and "GateFailedError: stage 'check' failed: gate said no (exit 3)" in out
    assert not (workspace / "published.txt").exists()

    code, out = _invoke(workspace, "pipeline", "run", "nope", "-f", file)
    assert code == 2 and "no stage named 'nope'" in out and "Traceback" not in out
    code, out = _invoke(workspace, "pipeline", "run", "-f", file, "--set", "must")
    assert code == 2 and "expected --set KEY=VALUE" in out
    (workspace / "bad.yaml").write_text("name: x\nstages:\n  a: {run: echo, inputs: ['dataset:'], needs: [b]}\n")
    code, out = _invoke(workspace, "pipeline", "validate", "-f", str(workspace / "bad.yaml"))
    assert code == 2 and "stages.a.inputs[0]:" in out and "stages.a.needs[0]: no stage named 'b'" in out
