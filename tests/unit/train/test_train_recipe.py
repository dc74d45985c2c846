from __future__ import annotations

from collections.abc import Callable

import pytest

from keel.core.errors import ConfigError, InputError
from keel.registry import ModelVersion, get_model, get_run, metric_series, model_card
from keel.store import Store, walk
from keel.train import find_resumable_run, load_model, parse_train_config, sweep, train

Commit = Callable[[Store, str, list[dict[str, object]]], str]


def _config(ref: str, **overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "bot",
        "base": "tiny@v1",
        "data": {"train": ref, "max_length": 48},
        "lora": {"r": 4, "alpha": 8},
        "training": {"max_steps": 4, "batch_size": 4, "save_steps": 2, "learning_rate": 0.01},
    }
    return {**base, **overrides}


def test_lora_with_eval_split_streams_metrics_and_links_lineage(
    store: Store, tiny: ModelVersion, commit: Commit, qa_rows: list[dict[str, object]]
) -> None:
    ref = commit(store, "qa", qa_rows)
    raw = _config(ref)
    raw["data"] = {"train": ref, "eval_fraction": 0.25, "max_length": 48}
    raw["training"] = {**raw["training"], "early_stopping_patience": 3}  # type: ignore[dict-item]
    result = train(store, parse_train_config(raw))
    assert result.model is not None and result.model.ref == "bot@v1" and result.merged is None
    assert result.checkpoints == [2, 4] and result.train_tokens > 0 and result.tokens_per_second > 0
    assert "eval_loss" in result.metrics and result.resumed_from is None
    with store.db.read() as conn:
        run = get_run(conn, result.run_id or "")
        series = metric_series(conn, run.id)
        upstream = {hit.node for hit in walk(conn, "model-version:bot@v1", "upstream", depth=2)}
    assert run.status == "finished" and run.params["config_digest"]
    assert [step for step, _ in series["loss"]] == [1, 2, 3, 4] and len(series["eval_loss"]) >= 2
    assert sorted({p.split("/")[1] for p in run.artifacts}) == ["checkpoint-2", "checkpoint-4"]
    assert {"dataset-version:qa@v1", "model-version:tiny@v1", f"run:{run.id}"} <= upstream
    card = model_card(store, "bot@v1")
    assert card["format"] == "peft-adapter" and card["training_data"] == ["dataset-version:qa@v1"]
    assert get_model(store, "bot").info["method"] == "lora"
    # A finished run is never resumed.
    assert find_resumable_run(store, parse_train_config(raw)) is None


def test_full_fine_tune_on_chat_messages_registers_full_weights(
    store: Store, tiny: ModelVersion, commit: Commit
) -> None:
    import torch

    rows = [
        {"messages": [{"role": "user", "content": f"sky {i}?"}, {"role": "assistant", "content": "blue"}]}
        for i in range(8)
    ]
    ref = commit(store, "chat", rows)
    result = train(store, parse_train_config(_config(ref, method="full", name="full-bot")))
    assert result.model is not None and result.model.format == "hf"
    model, tokenizer = load_model(store, "full-bot@v1")
    before, _ = load_model(store, "tiny@v1")
    changed = any(not torch.equal(a, b) for a, b in zip(model.parameters(), before.parameters(), strict=True))
    assert changed and type(model).__name__ == "LlamaForCausalLM"


def test_dpo_on_preference_rows(store: Store, tiny: ModelVersion, commit: Commit) -> None:
    rows = [
        {"prompt": f"Question {i}: the sky is", "chosen": " blue.", "rejected": " made of cheese."} for i in range(8)
    ]
    ref = commit(store, "prefs", rows)
    result = train(store, parse_train_config(_config(ref, method="dpo", name="dpo-bot")))
    assert result.model is not None and result.model.format == "peft-adapter"
    with store.db.read() as conn:
        series = metric_series(conn, result.run_id or "")
    assert "loss" in series and any(key.startswith("rewards/") for key in series)


def test_wrong_data_form_for_the_method(
    store: Store, tiny: ModelVersion, commit: Commit, qa_rows: list[dict[str, object]]
) -> None:
    ref = commit(store, "qa", qa_rows)
    with pytest.raises(InputError, match="method `dpo` needs `prompt`/`chosen`/`rejected` rows"):
        train(store, parse_train_config(_config(ref, method="dpo")))
    other = commit(store, "other", [{"text": "just text"}])
    with pytest.raises(InputError, match="expected every dataset version in one form"):
        train(store, parse_train_config(_config(ref, data={"train": [ref, other]})))


def test_sweep_registers_the_best_trial(
    store: Store, tiny: ModelVersion, commit: Commit, qa_rows: list[dict[str, object]]
) -> None:
    ref = commit(store, "qa", qa_rows)
    raw = _config(ref, name="swept")
    raw["data"] = {"train": ref, "eval_fraction": 0.25, "max_length": 48}
    raw["training"] = {"max_steps": 2, "batch_size": 4, "save_steps": 2}
    raw["sweep"] = {"space": {"training.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}}}
    result = sweep(store, parse_train_config(raw), trials=2)
    assert len(result.trials) == 2 and len({t.run_id for t in result.trials}) == 2
    assert result.best.value == min(t.value for t in result.trials)
    assert result.model.ref == "swept@v1" and result.model.run_id == result.best.run_id
    with pytest.raises(ConfigError, match="expected a `sweep:` section"):
        sweep(store, parse_train_config(_config(ref)), trials=1)
