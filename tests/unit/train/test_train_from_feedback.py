"""The loop closed: feedback on served answers → `keel feedback export --as dpo` → `keel train run` (DPO) → a model."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from keel.cli import app
from keel.core.ids import new_ulid
from keel.monitor import Trace, TraceWriter, record_feedback
from keel.registry import ModelVersion, get_model, model_card
from keel.store import Store, walk


def _keel(store: Store, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-w", str(store.settings.workspace), *args])
    return result.exit_code, result.stdout if "--json" in args and result.exit_code == 0 else result.output


def _served(store: Store, question: str, answer: str, version: str) -> str:
    trace = Trace(id=new_ulid(), at=store.clock(), deployment="assistant", operation="chat", status=200,
                  latency_ms=20.0, model_version=version, request={"messages": [{"role": "user", "content": question}]},
                  response=answer)  # fmt: skip
    TraceWriter(store).write([trace])
    return trace.id


def test_dpo_run_on_an_exported_feedback_version_registers_a_model(
    store: Store, tiny: ModelVersion, tmp_path: Path
) -> None:
    traces = []
    for i in range(4):  # an A/B canary: the same questions answered by two versions, rated by users
        question = f"Question {i}: what colour is the sky?"
        good = _served(store, question, " the sky is blue.", "tiny@v1")
        bad = _served(store, question, " made of cheese.", "tiny@v2")
        record_feedback(store, good, score="up")
        record_feedback(store, bad, score="down")
        traces += [good, bad]
    code, out = _keel(store, "feedback", "export", "sky-prefs", "--as", "dpo", "--deployment", "assistant", "--json")
    assert code == 0, out
    exported = json.loads(out)
    assert exported["version"] == "sky-prefs@v1" and exported["rows"] == 4 and exported["from_ratings"] == 4

    config = tmp_path / "dpo.yaml"
    config.write_text(yaml.safe_dump({
        "name": "sky-bot", "base": "tiny@v1", "method": "dpo",
        "data": {"train": "sky-prefs@v1", "max_length": 48},
        "lora": {"r": 4, "alpha": 8},
        "training": {"max_steps": 2, "batch_size": 2, "save_steps": 2, "learning_rate": 0.01},
    }))  # fmt: skip
    code, out = _keel(store, "train", "run", str(config), "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["model"] == "sky-bot@v1"
    assert get_model(store, "sky-bot").info["method"] == "dpo"
    assert model_card(store, "sky-bot@v1")["training_data"] == ["dataset-version:sky-prefs@v1"]
    with store.db.read() as conn:
        upstream = {hit.node for hit in walk(conn, "model-version:sky-bot@v1", "upstream", depth=3)}
    # The model's lineage reaches the served answers (and through them the versions that answered).
    assert {f"trace:{t}" for t in traces} <= upstream and "model-version:tiny@v2" in upstream


def test_the_demos_feedback_step_rates_answers_exports_and_retrains(store: Store, tiny: ModelVersion) -> None:
    import pyarrow as pa

    from keel.data import commit_version, load_version
    from keel.pipeline._demo import DemoReport, _feedback_stage

    qa = {"How much is the lamp?": "The Aurora Headlamp costs 39 euros.", "Is the jacket red?": "It is blue."}
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in qa.items()]
    sft, _ = commit_version(store, "acme-sft", pa.Table.from_pylist(rows))
    wrong = [_served(store, "How much is the lamp?", "It is free.", "tiny@v1") for _ in range(2)]
    right = _served(store, "Is the jacket red?", "It is blue.", "tiny@v1")
    _served(store, "Is the jacket red?", "No idea.", "tiny@v2")  # not the winner's answer: not rated
    said: list[str] = []
    report = DemoReport(workspace=store.settings.workspace, fast=True, datasets={"sft": sft.ref},
                        base_model="tiny@v1", winner="tiny@v1")  # fmt: skip
    _feedback_stage(store, report, said.append, lambda label, done, total: None)
    assert report.feedback["up"] == 1 and report.feedback["down"] == 2
    assert report.feedback["dataset"] == "assistant-feedback@v1" and report.feedback["model"] == "acme-assistant-dpo@v1"
    pairs = load_version(store, report.feedback["dataset"]).to_pylist()
    assert sorted(p["traces"][0] for p in pairs) == sorted(wrong) and right not in str(pairs)
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {("The Aurora Headlamp costs 39 euros.", "It is free.")}
    assert get_model(store, "acme-assistant-dpo").info["method"] == "dpo"
    assert any("9. Feedback" in line for line in said) and any("assistant-feedback@v1" in line for line in said)
