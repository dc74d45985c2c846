"""`keel curate explain`: the rule that dropped a record, its measured value and threshold; loud run warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import NotFoundError
from keel.curate import LocalEngine, explain_record, load_recipe

runner = CliRunner()
PROSE = (
    "The shipping policy explains how the warehouse packs each order and when the courier collects it. "
    "Customers with a damaged parcel should write to the support team and attach a photograph of the box. "
    "The team replies within two working days and arranges a replacement or a refund for the order."
)


def _setup(tmp_path: Path, steps: str, keep_dropped: bool = True) -> Path:
    (tmp_path / "raw").mkdir()
    texts = [PROSE] * 3 + ["def f(x):\n    return {'a': x}\n" + PROSE, "Too short to keep."]
    lines = [json.dumps({"id": f"doc{i}", "text": t}) for i, t in enumerate(texts)]
    (tmp_path / "raw" / "d.jsonl").write_text("\n".join(lines) + "\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"inputs:\n  - path: raw/*.jsonl\n    id_field: id\noutput: out\nkeep_dropped: {str(keep_dropped).lower()}\n"
        f"steps:\n{steps}"
    )
    return recipe


def test_explain_names_the_rule_the_value_and_the_threshold(tmp_path: Path) -> None:
    recipe_path = _setup(tmp_path, "  - length: {min_chars: 5}\n  - quality: {preset: web}\n")
    LocalEngine().run(load_recipe(recipe_path))
    explanation = explain_record(load_recipe(recipe_path), "doc3")
    assert (explanation.step, explanation.position, explanation.reason) == ("quality", 1, "c4_no_curly_bracket")
    assert explanation.checks[0].reason == "c4_no_curly_bracket" and explanation.checks[0].failed
    result = runner.invoke(app, ["curate", "explain", "doc4", "--recipe", str(recipe_path)])
    assert result.exit_code == 0, result.output
    assert "doc4 was dropped by steps[1].quality: gopher_min_words" in result.output
    assert "gopher_min_words: gopher_word_count = 4, must be >= 50" in result.output
    as_json = json.loads(
        runner.invoke(app, ["curate", "explain", "doc4", "--recipe", str(recipe_path), "--json"]).output
    )
    assert as_json["reason"] == "gopher_min_words" and as_json["dropped"] is True
    kept = runner.invoke(app, ["curate", "explain", "doc0", "--recipe", str(recipe_path)])
    assert kept.exit_code == 0 and "doc0 was kept" in kept.output
    missing = runner.invoke(app, ["curate", "explain", "nope", "--recipe", str(recipe_path)])
    assert missing.exit_code == 2 and "NotFoundError" in missing.output and "Traceback" not in missing.output


def test_explain_without_kept_drops_says_which_setting_to_set(tmp_path: Path) -> None:
    recipe_path = _setup(tmp_path, "  - quality: {}\n", keep_dropped=False)
    LocalEngine().run(load_recipe(recipe_path))
    with pytest.raises(NotFoundError, match="keep_dropped: true"):
        explain_record(load_recipe(recipe_path), "doc4")


def test_the_documents_preset_keeps_code_docs_and_overrides_apply(tmp_path: Path) -> None:
    recipe_path = _setup(tmp_path, "  - quality: {preset: documents, gopher_min_words: 5}\n")
    report = LocalEngine().run(load_recipe(recipe_path))
    assert report.records_out == 4 and dict(report.steps["quality"].dropped) == {"gopher_min_words": 1}


def test_a_run_warns_loudly_when_a_rule_drops_too_much_or_everything(tmp_path: Path) -> None:
    recipe_path = _setup(tmp_path, "  - quality: {preset: web}\n  - length: {min_chars: 100000}\n")
    recipe_path.write_text(recipe_path.read_text().replace("keep_dropped: true", "warn_drop_share: 0.1"))
    report = LocalEngine().run(load_recipe(recipe_path))
    assert (
        "quality rule c4_no_curly_bracket dropped 20% of the records it saw (1 of 5), above warn_drop_share 10%: "
        "check steps[0].quality.c4_no_curly_bracket" in "\n".join(report.warnings)
    )
    assert any("length dropped every record it saw" in w and "steps[1].length" in w for w in report.warnings)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["warnings"] == report.warnings
    result = runner.invoke(app, ["curate", "run", str(recipe_path), "--no-commit"])
    assert result.exit_code == 0 and "WARNING: length dropped every record it saw (3; too_short=3)" in result.output
    assert "the run wrote 0" in result.output
    recipe_path.write_text(recipe_path.read_text().replace("warn_drop_share: 0.1", "warn_drop_share: 0.2"))
    default_share = LocalEngine().run(load_recipe(recipe_path))
    assert not any(w.startswith("quality rule") for w in default_share.warnings)  # 20% is not above 20%
