from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml
from typer.testing import CliRunner

from keel.cli import app
from keel.registry import ModelVersion, get_model, get_run, start_run
from keel.store import Store

Commit = Callable[[Store, str, list[dict[str, object]]], str]


def _keel(store: Store, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-w", str(store.settings.workspace), *args])
    # stdout alone with --json (transformers draws its loading bars on stderr), else both
    return result.exit_code, result.stdout if "--json" in args and result.exit_code == 0 else result.output


def test_train_run_json_and_resume_errors(
    store: Store, tiny: ModelVersion, commit: Commit, qa_rows: list[dict[str, object]], tmp_path: Path
) -> None:
    ref = commit(store, "qa", qa_rows)
    config = tmp_path / "job.yaml"
    raw = {
        "name": "cli-bot",
        "base": "tiny@v1",
        "data": {"train": ref, "max_length": 48},
        "training": {"max_steps": 2, "batch_size": 4, "save_steps": 2},
    }
    config.write_text(yaml.safe_dump(raw))
    code, out = _keel(store, "train", "run", str(config), "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["model"] == "cli-bot@v1" and result["checkpoints"] == [2] and result["resumed_from"] is None
    assert get_model(store, "cli-bot").run_id == result["run"]

    with start_run("train", {"note": "no checkpoints"}, store=store) as empty:
        pass
    code, out = _keel(store, "train", "run", str(config), "--resume", empty.id)
    assert code == 2 and f"run {empty.id} saved no checkpoint to resume from" in out
    code, out = _keel(store, "train", "run", str(config), "--resume", "NOSUCHRUN")
    assert code == 2 and "NotFoundError: no run 'NOSUCHRUN'" in out
    with store.db.read() as conn:
        assert get_run(conn, result["run"]).status == "finished"


def test_train_run_reports_a_missing_dataset(store: Store, tiny: ModelVersion, tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"name": "x", "base": "tiny@v1", "data": {"train": "nothing@v1"}}))
    code, out = _keel(store, "train", "run", str(config))
    assert code == 2 and "NotFoundError" in out


def test_model_new_tiny_from_a_dataset_version(store: Store, commit: Commit, tiny_texts: list[str]) -> None:
    ref = commit(store, "corpus", [{"text": t} for t in tiny_texts])
    args = ["model", "new-tiny", "mini", "--dataset", ref, "--vocab-size", "400", "--hidden-size", "32"]
    code, out = _keel(store, *args, "--layers", "1", "--steps", "2", "--json")
    assert code == 0, out
    made = json.loads(out)
    assert made["ref"] == "mini@v1" and made["format"] == "hf" and made["info"]["parameters"] > 0
    card = json.loads(
        CliRunner()
        .invoke(app, ["-w", str(store.settings.workspace), "model", "card", "mini", "--format", "json"])
        .stdout
    )
    assert card["training_data"] == [f"dataset-version:{ref}"]
