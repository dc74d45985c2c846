"""`keel demo --fast` end to end: every stage's result is checked in the store it leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.data import get_version, load_version
from keel.monitor import get_rollout, list_traces
from keel.registry import get_model, list_runs
from keel.serve import deployment_history, get_deployment
from keel.store import open_store, path_between

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_keel_demo_fast_runs_the_whole_loop(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["demo", str(tmp_path / "demo"), "--fast", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    store = open_store(load_settings(tmp_path / "demo"))
    try:
        # curation: duplicates, junk and foreign pages dropped; PII redacted; a version with lineage to its run
        kb = get_version(store, "acme-kb@v1")
        assert report["curated"]["dropped"]["exact_duplicate"] >= 2 and report["curated"]["dropped"]["too_short"] >= 1
        assert report["curated"]["dropped"]["language_not_kept"] == 3
        assert {"email", "phone", "credit_card"} <= set(report["curated"]["redacted"])
        texts = load_version(store, kb, columns=["text"]).column("text").to_pylist()
        assert not any("@example.com" in t for t in texts) and kb.num_rows == report["curated"]["kept"]
        assert get_version(store, "acme-sft@v1").num_rows == 120 and get_version(store, "acme-eval@v1").num_rows == 60
        # the SFT pairs were read out of the curated pages: each names a record of acme-kb@v1
        sft = load_version(store, get_version(store, "acme-sft@v1"), columns=["kb_record"])
        kb_ids = set(load_version(store, kb, columns=["id"]).column("id").to_pylist())
        assert set(sft.column("kb_record").to_pylist()) <= kb_ids
        with store.db.read() as conn:
            curate_runs = list_runs(conn, kind="curate")
            train_runs = list_runs(conn, kind="train")
            eval_runs = list_runs(conn, kind="eval")
        assert len(curate_runs) == 1 and len(train_runs) >= 1 and len(eval_runs) == 2 + bool(report["rollout"])
        # index: the top hit for the kayak question is the kayak's product page
        assert report["index"] == "acme-kb-index@v1" and "Kayak" in report["retrieval_hit"]["text"]
        # training and evaluation: a registered tuned version, gate verdict recorded, winner aliased
        assert report["tuned_model"] == "acme-assistant@v1"
        assert report["winner"] in (report["tuned_model"], report["base_model"])
        winner_name = report["winner"].split("@")[0]
        assert get_model(store, f"{winner_name}@production").ref == report["winner"]
        assert set(report["scores"]) == {report["base_model"], report["tuned_model"]}
        # serving: deployment history with canary, promote and rollbacks; one trace per request, none failed
        actions = [e.action for e in deployment_history(store, "assistant")]
        rollout = report["rollout"]
        decisions = [d["decision"] for d in rollout.get("decisions", [])]
        assert actions.count("rollback") == 1 + decisions.count("rollback")
        assert actions.count("promote") == 2 + decisions.count("promote")
        # the guarded canary's start and each step are canary events; waits and holds are analyses
        assert actions.count("canary") == 3 + bool(rollout) + decisions.count("step")
        assert actions.count("analysis") == decisions.count("wait") + decisions.count("hold")
        traces = list_traces(store, deployment="assistant", limit=500)
        assert len(traces) == 8 + rollout.get("requests", 0) and all(t.status == 200 for t in traces)
        assert report["monitoring"] and sum(r["requests"] for r in report["monitoring"]) == 8
        # feedback: the winner's answers rated; corrections exported as DPO pairs and a model retrained on them
        assert report["feedback"]["up"] + report["feedback"]["down"] >= 4
        routes = [(r.model, r.weight) for r in get_deployment(store, "assistant").routes]
        if not report["feedback"]["down"]:  # nothing to retrain on: the winner serves every request, as it was
            assert not rollout and routes == [(report["winner"], 100)]
        else:
            assert report["feedback"]["dataset"] == "assistant-feedback@v1"
            retrained = report["feedback"]["model"]
            assert get_model(store, retrained).info["method"] == "dpo"
            # gate: the retrained model against production, the paired test's verdict shown on screen
            gate = report["retrained_gate"]
            assert set(gate["metrics"]) == {"rougeL", "chrf"} and isinstance(gate["passed"], bool)
            assert len(eval_runs) == 3  # the gate evaluated only the retrained model: production's result reused
            verdict = [line for line in report["narrative"] if line.strip().startswith("Verdict:")]
            assert verdict and ("passed" in verdict[0]) == gate["passed"]
            assert any(line.startswith("10. Gate") and retrained in line for line in report["narrative"])
            # the guarded canary: every decision printed with its evidence, and the end state matches the last one
            assert decisions and rollout["candidate"] == retrained
            ticks = [line for line in report["narrative"] if line.strip().startswith("tick: ")]
            assert [line.split()[1] for line in ticks] == decisions
            assert all(d["evidence"]["canary"]["model"] == retrained for d in rollout["decisions"])
            state = get_rollout(store, "assistant")
            assert state is not None
            if decisions[-1] == "promote":
                assert routes == [(retrained, 100)] and state.state == "promoted"
            elif decisions[-1] == "rollback":
                assert routes == [(report["winner"], 100)] and state.state == "rolled_back"
            else:  # undecided after the demo's ticks: still a canary, still running
                assert [m for m, _ in routes] == [report["winner"], retrained] and state.state == "running"
            assert rollout["routes"] == [list(r) for r in routes]
        # lineage: a served response through the model, its training data and the curated KB to the source page
        assert report["lineage"][0].startswith("trace:") and report["lineage"][-1].startswith("source:file://")
        if report["winner"] == report["tuned_model"]:
            assert report["lineage"][-1].endswith("/corpus/raw/pages/harbor-kayak.html")
            assert {"dataset-version:acme-sft@v1", "dataset-version:acme-kb@v1"} <= set(report["lineage"])
        with store.db.read() as conn:
            assert path_between(conn, report["lineage"][0], report["lineage"][-1]) is not None
        assert report["audit_ok"] is True
        # the build half ran as the shipped pipeline: a pipeline run with a child run per stage; run again, all cached
        with store.db.read() as conn:
            assert len(list_runs(conn, kind="pipeline")) == 1
            stage_runs = list_runs(conn, kind="pipeline-stage")
        if report["gate_passed"]:
            assert len(stage_runs) == 11
            # the RAG route: model + prompt + index pinned when written; its answer cites the kayak's page
            assert report["rag"]["route"] == {
                "model": report["winner"],
                "prompt": "acme-support@v1",
                "index": "acme-kb-index@v1",
            }
            assert any(str(c["source"]).endswith("harbor-kayak.html") for c in report["rag"]["citations"])
        pipeline_file = str(tmp_path / "demo" / "pipeline" / "pipeline.yaml")
        again = runner.invoke(app, ["-w", str(tmp_path / "demo"), "pipeline", "run", "-f", pipeline_file, "--json"])
        if report["gate_passed"]:
            assert again.exit_code == 0, again.output
            assert {s["status"] for s in json.loads(again.stdout)["stages"]} == {"cached"}
    finally:
        store.close()


def test_demo_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "keel.yaml").write_text("{}\n")
    result = CliRunner().invoke(app, ["demo", str(tmp_path), "--fast"])
    assert result.exit_code == 2 and "expected a new or empty folder" in result.output
