"""The training config: one YAML file validated by pydantic, every error reported at once with its path.

The same file drives `keel train run`, `keel train sweep` (its `sweep:` section) and a `torchrun`
launch. This module only parses and validates; it does not load models or data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from keel.core.errors import ConfigError
from keel.core.ids import canonical_json, sha256_hex
from keel.core.settings import read_config_file

__all__ = [
    "DataConfig",
    "DpoConfig",
    "HyperParameters",
    "LoraSettings",
    "OutputConfig",
    "SearchDimension",
    "SweepConfig",
    "TrainConfig",
    "load_train_config",
    "parse_train_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Which dataset versions to train and evaluate on, and how to cut them into tokens."""

    train: list[str] = Field(min_length=1, description="Dataset version refs (`docs@v2`) to train on.")
    eval: list[str] = Field(default_factory=list, description="Dataset version refs held out for evaluation.")
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Held-out share of `train` when `eval` is empty.")
    max_length: int = Field(256, ge=8, le=32_768, description="Tokens per example (longer ones are truncated).")

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class LoraSettings(_Strict):
    """LoRA adapter shape (peft)."""

    r: int = Field(8, ge=1, le=1024)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(default_factory=lambda: ["q_proj", "v_proj"])


class DpoConfig(_Strict):
    """Direct preference optimisation settings (trl)."""

    beta: float = Field(0.1, gt=0.0)
    adapter: Literal["lora", "full"] = "lora"


class HyperParameters(_Strict):
    """Optimiser, schedule, batching, checkpointing and early stopping."""

    epochs: float = Field(1.0, gt=0.0)
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimiser steps (-1: run the epochs).")
    batch_size: int = Field(4, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    learning_rate: float = Field(2e-4, gt=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    gradient_checkpointing: bool = False
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(50, ge=1, description="Checkpoint (and evaluate, with an eval set) every N steps.")
    early_stopping_patience: int | None = Field(None, ge=1, description="Evaluations without improvement to stop.")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads (default: torch's, as far as cores are idle when the run starts)."
    )


class OutputConfig(_Strict):
    """What to register, and what the card says."""

    merge: bool = Field(False, description="Also register LoRA weights merged into the base as `<name>-merged`.")
    description: str | None = None
    intended_use: str | None = None
    limitations: str | None = None


class SearchDimension(_Strict):
    """One hyperparameter of a sweep: a float/int range or a list of choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> SearchDimension:
        if self.type == "categorical" and not self.choices:
            raise ValueError("a categorical dimension needs a non-empty `choices` list")
        if self.type != "categorical" and (self.low is None or self.high is None or self.low >= self.high):
            raise ValueError("a float or int dimension needs `low` < `high`")
        return self


class SweepConfig(_Strict):
    """An Optuna search: dotted config paths to search over, and the metric to optimise."""

    metric: str = "eval_loss"
    direction: Literal["minimize", "maximize"] = "minimize"
    space: dict[str, SearchDimension] = Field(min_length=1)


class TrainConfig(_Strict):
    """A whole fine-tuning job.

    Examples:
        >>> parse_train_config({"name": "bot", "base": "tiny@v1", "data": {"train": "chat@v1"}}).method
        'lora'
    """

    name: str = Field(description="The model name the result is registered under.")
    base: str = Field(description="Base model: registry ref, hub id, local folder or .gguf file.")
    data: DataConfig
    method: Literal["lora", "full", "dpo"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    training: HyperParameters = Field(default_factory=HyperParameters)
    output: OutputConfig = Field(default_factory=OutputConfig)
    seed: int = 0
    sweep: SweepConfig | None = None

    def digest(self) -> str:
        """A stable digest of everything that shapes the result (used to find a run to resume)."""
        return sha256_hex(canonical_json(self.model_dump(mode="json", exclude={"sweep"})))

    def used_settings(self) -> dict[str, Any]:
        """The config as JSON without the sections its method ignores: a run's params and its model card.

        `full` uses neither `lora` nor `dpo`; `lora` does not use `dpo`; `dpo` uses `lora` only with a LoRA
        adapter. (The digest still covers the whole config, so resuming is unaffected.)

        Examples:
            >>> sorted(parse_train_config({"name": "b", "base": "t@v1", "data": {"train": "c@v1"}, "method": "full"})
            ...        .used_settings())
            ['base', 'data', 'method', 'name', 'output', 'seed', 'training']
        """
        unused = {"sweep"}
        if self.method != "dpo":
            unused.add("dpo")
        if self.method == "full" or (self.method == "dpo" and self.dpo.adapter != "lora"):
            unused.add("lora")
        return self.model_dump(mode="json", exclude=unused)

    def with_values(self, values: dict[str, Any]) -> TrainConfig:
        """A copy with dotted-path values set (`training.learning_rate`), validated again."""
        data = self.model_dump(mode="json")
        for dotted, value in values.items():
            node = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
        return parse_train_config(data)


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_train_config(data: Any, *, source: str = "the config") -> TrainConfig:
    """Validate a parsed config, raising one `ConfigError` that lists every problem with its path."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected {source} to be a mapping of settings; found {type(data).__name__}")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(
            f"{source} has {len(problems)} problem(s): " + "; ".join(problems),
            hint="fix these settings (see docs/training.md)",
        ) from None


def load_train_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read and validate a training config YAML file.

    Raises:
        ConfigError: The file is missing, a directory, not UTF-8, not YAML, not a mapping, or has invalid
            settings (all listed, with paths).
    """
    file = Path(path)
    data = read_config_file(file, "training config", holds="a mapping of settings (see docs/training.md)")
    return parse_train_config(data, source=str(file))
