from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from keel.cli import app

runner = CliRunner()


def _setup(tmp_path: Path) -> Path:
    (tmp_path / "raw").mkdir()
    lines = [json.dumps({"text": f"Support ticket {i}: the anvil arrived dented."}) for i in range(12)]
    (tmp_path / "raw" / "t.jsonl").write_text("\n".join([*lines, lines[0], "not json"]) + "\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("inputs:\n  - path: raw/*.jsonl\noutput: out\nsteps:\n  - normalize: {}\n  - exact_dedup: {}\n")
    return recipe


def test_validate_and_run(tmp_path: Path) -> None:
    recipe = _setup(tmp_path)
    valid = runner.invoke(app, ["curate", "validate", str(recipe)])
    assert valid.exit_code == 0 and "is valid: 1 input file(s), steps: normalize, exact_dedup" in valid.output
    result = runner.invoke(app, ["curate", "run", str(recipe)])
    assert result.exit_code == 0, result.output
    assert (
        "exact_duplicate=1" in result.output
        and "Read 13 records from 1 file(s) (1 quarantined: invalid_json 1; see quarantine.jsonl)" in result.output
    )
    as_json = json.loads(runner.invoke(app, ["curate", "run", str(recipe), "--json"]).output)
    assert as_json["records_out"] == 12 and as_json["resumed_shards"] == 3  # read + 2 stages: nothing to redo


def test_user_errors(tmp_path: Path) -> None:
    recipe = _setup(tmp_path)
    strict = runner.invoke(app, ["curate", "run", str(recipe), "--strict"])
    assert strict.exit_code == 2 and "InputError: bad input (--strict)" in strict.output and "line 14" in strict.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs: []\noutput: out\nsteps:\n  - normalise: {}\n")
    result = runner.invoke(app, ["curate", "validate", str(bad)])
    assert result.exit_code == 2 and "ConfigError" in result.output and "inputs" in result.output
    missing = runner.invoke(app, ["curate", "validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "nope.yaml: expected a file; nothing is there" in missing.output
