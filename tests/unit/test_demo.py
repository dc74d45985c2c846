from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from keel.cli import app
from keel.pipeline import run_demo


def test_demo_stores_once_traces_both_sources_and_verifies(tmp_path: Path) -> None:
    lines: list[str] = []
    report = run_demo(tmp_path / "demo", say=lines.append)
    assert (report.sources, report.blobs_stored, report.duplicates) == (6, 5, 1)
    assert report.curation is not None and report.curation.records_out == 4
    assert dict(report.curation.steps["exact_dedup"].dropped) == {"exact_duplicate": 1}
    assert dict(report.curation.steps["language"].dropped) == {"language_not_kept": 1}
    assert report.curation.steps["pii"].counters == {"found.email": 1, "found.phone": 1}
    (hits,) = report.provenance.values()
    assert sorted(h.node for h in hits) == [
        "source:https://help.acme.example/refunds",
        "source:https://intranet.acme.example/policies/refunds",
    ]
    assert report.audit is not None and report.audit.ok and report.audit.checked == 6
    assert lines[0].startswith("1. Workspace ready") and any("Audit chain verified" in line for line in lines)


def test_keel_demo_command_leaves_a_workspace_the_other_commands_read(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["demo", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "5 content-addressed blobs" in result.output and "redacted: email=1, phone=1" in result.output
    status = json.loads(runner.invoke(app, ["-w", str(tmp_path / "demo"), "status", "--json"]).output)
    assert status["counts"]["blobs"] == 5
    assert status["counts"]["lineage_edges"] == 6
    assert status["counts"]["audit_events"] == 6
