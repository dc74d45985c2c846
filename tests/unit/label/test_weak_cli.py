"""`keel label weak apply|analyze` through Typer's CliRunner on `weak_app` (the lead mounts it under `keel label`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from keel.cli._label_weak import weak_app
from keel.core.settings import load_settings
from keel.data import commit_version, load_version
from keel.pipeline._ticket_intents import ticket_intents
from keel.store import open_store

LFS = Path(__file__).parent / "ticket_lfs.yaml"


@pytest.fixture
def tickets(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(workspace)
    examples = ticket_intents(400, seed=3)
    store = open_store(load_settings(workspace))
    try:
        table = pa.table({"id": [e.id for e in examples], "text": [e.text for e in examples],
                          "intent": [e.intent for e in examples]})  # fmt: skip
        return commit_version(store, "tickets", table)[0].ref
    finally:
        store.close()


def test_apply_prints_the_table_and_commits_a_derived_version(tickets: str, workspace: Path) -> None:
    result = CliRunner().invoke(weak_app, ["apply", tickets, "--lfs", str(LFS), "--gold", "intent", "--to", "weak"])
    assert result.exit_code == 0, result.output
    assert "kw_refund" in result.output and "coverage" in result.output
    assert "label model" in result.output and "majority vote" in result.output
    assert "committed weak@v1 (derived from tickets@v1)" in result.output
    store = open_store(load_settings(workspace))
    try:
        rows = load_version(store, "weak@v1").to_pylist()
    finally:
        store.close()
    assert len(rows) == 400 and {"weak_label", "weak_prob", "weak_probs", "weak_votes", "weak_lfs"} <= set(rows[0])


def test_json_output_and_analyze_commits_nothing(tickets: str) -> None:
    result = CliRunner().invoke(weak_app, ["analyze", tickets, "--lfs", str(LFS), "--gold", "intent", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["version"] is None and report["rows"] == 400
    assert report["gold"]["label_model"] >= report["gold"]["majority_vote"]
    assert [s["name"] for s in report["lfs"]][:2] == ["kw_ship", "kw_country"]
    applied = json.loads(CliRunner().invoke(weak_app, ["apply", tickets, "--lfs", str(LFS), "--json"]).output)
    assert applied["version"] == "tickets@v2" and applied["new"] is True


def test_user_errors_are_one_line_and_exit_2(tickets: str, tmp_path: Path) -> None:
    missing = CliRunner().invoke(weak_app, ["apply", tickets, "--lfs", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "InputError: expected a labelling-function file" in missing.output
    assert "Traceback" not in missing.output
    bad_gold = CliRunner().invoke(weak_app, ["analyze", tickets, "--lfs", str(LFS), "--gold", "label"])
    assert bad_gold.exit_code == 2 and "gold-label column 'label'" in bad_gold.output
    unknown = CliRunner().invoke(weak_app, ["analyze", "nosuch@v1", "--lfs", str(LFS)])
    assert unknown.exit_code == 2 and "NotFoundError" in unknown.output
