from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import ConfigError
from keel.train import load_train_config, parse_train_config

GOOD = {"name": "bot", "base": "tiny@v1", "data": {"train": "qa@v1"}}


def test_defaults_and_one_or_many_refs() -> None:
    config = parse_train_config(GOOD)
    assert config.method == "lora" and config.data.train == ["qa@v1"] and config.data.eval == []
    assert config.lora.target_modules == ["q_proj", "v_proj"] and config.training.max_steps == -1
    assert config.digest() == parse_train_config({**GOOD, "sweep": None}).digest()
    assert config.digest() != parse_train_config({**GOOD, "seed": 1}).digest()


def test_every_error_is_reported_with_its_path() -> None:
    bad = {
        "name": "bot",
        "data": {"train": [], "eval_fraction": 1.5},
        "method": "rlhf",
        "training": {"learning_rate": -1, "bogus": 3},
    }
    with pytest.raises(ConfigError) as caught:
        parse_train_config(bad, source="job.yaml")
    message = str(caught.value)
    assert message.startswith("job.yaml has 6 problem(s)")
    for path in (
        "base:",
        "data.train:",
        "data.eval_fraction:",
        "method:",
        "training.learning_rate:",
        "training.bogus:",
    ):
        assert path in message


def test_with_values_sets_dotted_paths_and_revalidates() -> None:
    config = parse_train_config(GOOD)
    changed = config.with_values({"training.learning_rate": 0.01, "lora.r": 4})
    assert changed.training.learning_rate == 0.01 and changed.lora.r == 4 and config.lora.r == 8
    with pytest.raises(ConfigError, match="lora.r"):
        config.with_values({"lora.r": 0})


def test_sweep_space_is_checked() -> None:
    with pytest.raises(ConfigError, match="sweep.space.lr: Value error, a float or int dimension needs `low` < `high`"):
        parse_train_config({**GOOD, "sweep": {"space": {"lr": {"type": "float", "low": 1, "high": 0}}}})


def test_load_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training config .*missing.yaml: expected a file; nothing is there"):
        load_train_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="expected YAML"):
        load_train_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of settings"):
        load_train_config(listing)


def test_cli_validate(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: bot\nbase: tiny@v1\ndata: {train: qa@v1}\nmethod: full\n")
    result = CliRunner().invoke(app, ["train", "validate", str(good)])
    assert result.exit_code == 0 and "valid: full of tiny@v1 → bot" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bot\ndata: {train: qa@v1}\n")
    result = CliRunner().invoke(app, ["train", "validate", str(bad)])
    assert result.exit_code == 2 and "ConfigError" in result.output and "base: Field required" in result.output


@pytest.mark.parametrize(
    ("method", "adapter", "sections"),
    [("full", "lora", set()), ("lora", "lora", {"lora"}), ("dpo", "lora", {"lora", "dpo"}), ("dpo", "full", {"dpo"})],
)
def test_a_runs_params_hold_only_the_settings_its_method_uses(method: str, adapter: str, sections: set[str]) -> None:
    config = parse_train_config(
        {"name": "b", "base": "t@v1", "data": {"train": "c@v1"}, "method": method, "dpo": {"adapter": adapter}}
    )
    assert {"lora", "dpo"} & set(config.used_settings()) == sections
    assert config.used_settings()["training"] == config.model_dump(mode="json")["training"]
