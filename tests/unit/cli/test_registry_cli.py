from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.registry import start_run
from keel.store import open_store

runner = CliRunner()


def _runs(workspace: Path) -> list[str]:
    store = open_store(load_settings(workspace))
    ids = []
    for lr in (0.1, 0.01):
        with start_run("train", {"lr": lr, "method": "lora"}, store=store) as run:
            for step in range(5):
                run.log_metric("loss", 2.0 - step * 0.1 - lr)
            out = workspace / f"out-{lr}"
            out.mkdir()
            (out / "config.json").write_text("{}")
            (out / "model.safetensors").write_bytes(str(lr).encode() * 100)
            run.log_artifact(out, name="model")
        ids.append(run.id)
    store.close()
    return ids


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_runs_list_show_compare(workspace: Path) -> None:
    first, second = _runs(workspace)
    ws = ["-w", str(workspace)]
    listed = json.loads(_ok(*ws, "run", "list", "--json"))
    assert [r["id"] for r in listed] == [second, first]
    best = json.loads(_ok(*ws, "run", "list", "--sort", "loss", "--asc", "--limit", "1", "--json"))
    assert [r["id"] for r in best] == [first]  # lr 0.1 ends lower
    filtered = json.loads(_ok(*ws, "run", "list", "--param", "lr=0.01", "--param", "method=lora", "--json"))
    assert [r["id"] for r in filtered] == [second]
    assert json.loads(_ok(*ws, "run", "list", "--page", "2", "--limit", "1", "--json"))[0]["id"] == first
    assert "No runs match." in _ok(*ws, "run", "list", "--kind", "eval")
    table = _ok(*ws, "run", "list")  # rows show only the params that differ; the shared ones once, below
    assert 'same in every run listed: method="lora"' in table and table.count("method=") == 1
    shown = _ok(*ws, "run", "show", first)
    assert "metric loss = 1.5" in shown and "(5 points)" in shown and "artifact model/config.json" in shown
    detail = json.loads(_ok(*ws, "run", "show", first, "--json"))
    assert detail["series"]["loss"][0] == [0, 1.9] and detail["env"]["python"]
    compared = _ok(*ws, "run", "compare", first, second)
    assert "*lr" in compared and "method" in compared and "*method" not in compared
    as_json = json.loads(_ok(*ws, "run", "compare", first, second, "--json"))
    assert as_json["params"]["lr"] == [0.1, 0.01]
    bad = runner.invoke(app, [*ws, "run", "list", "--param", "lr"])
    assert bad.exit_code == 2 and "expected --param KEY=VALUE" in bad.output
    one = runner.invoke(app, [*ws, "run", "compare", first])
    assert one.exit_code == 2 and "at least two runs" in one.output
    missing = runner.invoke(app, [*ws, "run", "show", "nope"])
    assert missing.exit_code == 2 and "NotFoundError: no run 'nope'" in missing.output


def test_model_register_alias_history_rollback_pull_card(workspace: Path, tmp_path: Path) -> None:
    first, second = _runs(workspace)
    ws = ["-w", str(workspace)]
    assert "Registered chat@v1: hf, 2 file(s)" in _ok(*ws, "model", "register", "chat", "--run", first)
    v2 = json.loads(_ok(*ws, "model", "register", "chat", "--run", second, "--limitations", "English only", "--json"))
    assert v2["ref"] == "chat@v2" and v2["created"] is True
    assert "already holds these files" in _ok(*ws, "model", "register", "chat", "--run", second)
    _ok(*ws, "model", "alias", "chat", "production", "v1", "--reason", "first release")
    moved = json.loads(
        _ok(
            *ws, "model", "alias", "chat", "production", "2", "--reason", "lower loss", "--evidence", "eval:1", "--json"
        )
    )
    assert (moved["from_version"], moved["to_version"], moved["evidence"]) == (1, 2, "eval:1")
    assert "v2 → v1" in _ok(*ws, "model", "rollback", "chat", "production", "--reason", "regressed")
    history = json.loads(_ok(*ws, "model", "history", "chat", "--json"))
    assert [(h["from_version"], h["to_version"]) for h in history] == [(None, 1), (1, 2), (2, 1)]
    assert "lower loss" in _ok(*ws, "model", "history", "chat")
    listed = json.loads(_ok(*ws, "model", "list", "--json"))
    assert listed[0]["aliases"] == {"production": "v1"}
    shown = json.loads(_ok(*ws, "model", "show", "chat@production", "--json"))
    assert shown["ref"] == "chat@v1" and shown["run"] == first
    assert "Restored chat@v2" in _ok(*ws, "model", "pull", "chat@v2", str(tmp_path / "pulled"))
    assert (tmp_path / "pulled" / "model" / "model.safetensors").read_bytes() == b"0.01" * 100
    card = _ok(*ws, "model", "card", "chat@v2")
    assert "# Model card: chat@v2" in card and "English only" in card and "`lr` = `0.01`" in card
    card_json = json.loads(_ok(*ws, "model", "card", "chat", "--json"))
    assert json.loads(_ok(*ws, "model", "card", "chat", "--format", "json")) == card_json
    assert card_json["training"]["run"] == second
    _ok(*ws, "model", "card", "chat", "--output", str(tmp_path / "CARD.md"))
    assert (tmp_path / "CARD.md").read_text().startswith("# Model card: chat@v2")
    _ok(*ws, "model", "unalias", "chat", "production", "--reason", "retired")
    assert json.loads(_ok(*ws, "model", "list", "--json"))[0]["aliases"] == {}


def test_model_user_errors_are_one_line(workspace: Path, tmp_path: Path) -> None:
    ws = ["-w", str(workspace)]
    for args, expected in [
        (["model", "show", "nope"], "NotFoundError: no model named 'nope'"),
        (["model", "register", "chat", str(tmp_path / "missing")], "InputError: expected a model directory"),
        (["model", "register", "chat"], "InputError: expected a model PATH"),
        (["model", "alias", "chat", "production", "0", "--reason", "x"], "InputError: expected a version number"),
        (["model", "alias", "chat", "production", "three", "--reason", "x"], "NotFoundError: model 'chat' has no"),
        (["model", "show", "chat@@x"], "InputError: expected a model reference"),
    ]:
        result = runner.invoke(app, [*ws, *args])
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output and "Traceback" not in result.output


def test_model_and_prompt_aliases_print_one_format(workspace: Path) -> None:
    ws = ["-w", str(workspace)]
    model_dir = workspace / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    _ok(*ws, "model", "register", "chat", str(model_dir))
    _ok(*ws, "prompt", "create", "support", "--template", "Hi {{ who }}")
    for noun, name in (("model", "chat"), ("prompt", "support")):
        assert _ok(*ws, noun, "alias", name, "production", "v1", "--reason", "first").strip() == (
            f"Moved {name}@production: (unset) → v1  (first)"
        )
        assert _ok(*ws, noun, "unalias", name, "production", "--reason", "gone").strip() == (
            f"Removed {name}@production: v1 → (removed)  (gone)"
        )
        assert _ok(*ws, noun, "rollback", name, "production", "--reason", "back").strip() == (
            f"Rolled back {name}@production: (unset) → v1  (back)"
        )
