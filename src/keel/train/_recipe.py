"""`lora_finetune` and friends as one recipe: load, train under a Keel run, checkpoint, register.

Reads top to bottom: data → base model → run (new, or resuming a killed one from its newest
checkpoint blob) → trainer → model version(s) with lineage to data, base and run. Under `torchrun`
every rank trains; only rank zero writes the run, the checkpoints and the registry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.govern import require
from keel.registry import ModelInfo, ModelVersion, Run, list_runs, register_model, start_run
from keel.store import Store, add_edge
from keel.train._config import TrainConfig
from keel.train._models import quiet_renames
from keel.train._threads import torch_threads
from keel.train._tracking import RunLogger, keel_callback, latest_checkpoint, restore_checkpoint
from keel.train._trainers import BaseModel, TrainingData, build_trainer, load_base, load_training_data

__all__ = ["TrainResult", "find_resumable_run", "register_output", "save_output", "train"]


@dataclass
class TrainResult:
    """What a training job produced."""

    run_id: str | None
    model: ModelVersion | None
    merged: ModelVersion | None
    metrics: dict[str, float]
    resumed_from: str | None
    train_tokens: int
    train_seconds: float
    checkpoints: list[int] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """Training throughput over the whole `train()` call of the trainer."""
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "run": self.run_id,
            "model": self.model.ref if self.model else None,
            "merged": self.merged.ref if self.merged else None,
            "metrics": self.metrics,
            "resumed_from": self.resumed_from,
            "train_tokens": self.train_tokens,
            "train_seconds": round(self.train_seconds, 3),
            "tokens_per_second": round(self.tokens_per_second, 2),
            "checkpoints": self.checkpoints,
        }


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def find_resumable_run(store: Store, config: TrainConfig) -> str | None:
    """The newest unfinished run of this exact config that saved a checkpoint and was not resumed yet."""
    with store.db.read() as conn:
        candidates = list_runs(conn, kind="train", params={"config_digest": config.digest()}, limit=200)
    resumed = {run.params.get("resumed_from") for run in candidates}
    for run in candidates:  # newest first
        if run.status != "finished" and run.id not in resumed and latest_checkpoint(store, run.id) is not None:
            return run.id
    return None


@contextlib.contextmanager
def _run_on_rank_zero(
    store: Store, config: TrainConfig, params: dict[str, Any], inputs: list[str]
) -> Iterator[Run | None]:
    if _rank() != 0:
        yield None
        return
    with start_run(
        "train", params, name=f"{config.method} {config.name}", inputs=inputs, seed=config.seed, store=store
    ) as run:
        yield run


def _workdir(store: Store, config: TrainConfig) -> Path:
    # Shared by every rank of one launch (they write their RNG states into the same checkpoint).
    root = store.settings.state_dir / "train" / config.digest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    return root


def train(
    store: Store,
    config: TrainConfig,
    *,
    resume: str | None = "auto",
    progress: Callable[[int, int], None] | None = None,
    save_to: Path | None = None,
) -> TrainResult:
    """Fine-tune a base model on dataset versions and register the result.

    Args:
        store: The workspace store.
        config: The validated training config.
        resume: A run id to resume from its newest checkpoint; `"auto"` resumes the newest killed
            run of the same config if one saved a checkpoint; None always starts fresh.
        progress: Called with `(step, max_steps)` after each optimiser step.
        save_to: Save the trained model into this folder instead of registering it (sweeps
            register only their best trial).

    Returns:
        The run, the registered version(s), final metrics and throughput.

    Examples:
        >>> train(store, load_train_config("sft.yaml"))  # doctest: +SKIP
    """
    if save_to is None:  # refused before hours of training, not at the registration that ends it
        require(store, "model.register", f"model:{config.name}")
    with torch_threads(config.training.threads) as threads:  # unset: torch's default as far as cores are idle
        data = load_training_data(store, config)
        base = load_base(store, config)
        previous = find_resumable_run(store, config) if resume == "auto" else resume
        params = {**config.used_settings(), "config_digest": config.digest(), "torch_threads": threads}
        if previous:
            params["resumed_from"] = previous
        inputs = [*data.nodes, *([base.node] if base.node else [])]
        workdir = _workdir(store, config)
        with _run_on_rank_zero(store, config, params, inputs) as run:
            return _train_in_run(store, config, data, base, RunLogger(run, progress), workdir, previous, save_to)


def _train_in_run(
    store: Store,
    config: TrainConfig,
    data: TrainingData,
    base: BaseModel,
    logger: RunLogger,
    workdir: Path,
    previous: str | None,
    save_to: Path | None,
) -> TrainResult:
    run = logger.run
    checkpoint: Path | None = None
    if previous:
        previous, checkpoint = restore_checkpoint(store, previous, workdir / "resume")
        if run is not None:
            run.log_input(f"run:{previous}", "resumed_by")
    trainer, tokens_per_epoch = build_trainer(config, base, data, workdir / "out", [keel_callback(logger)])
    started = time.perf_counter()
    with quiet_renames():
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    metrics = {k: float(v) for k, v in output.metrics.items() if isinstance(v, int | float)}
    if data.eval:
        with quiet_renames():
            metrics.update({k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, int | float)})
    step = int(trainer.state.global_step)
    steps_done = step - (int(checkpoint.name.split("-")[1]) if checkpoint else 0)
    per_step = config.training.batch_size * config.training.gradient_accumulation * max(1, trainer.args.world_size)
    tokens = round(tokens_per_epoch / max(1, len(data.train)) * per_step * steps_done)
    result = TrainResult(
        run_id=run.id if run else None,
        model=None,
        merged=None,
        metrics=metrics,
        resumed_from=previous,
        train_tokens=tokens,
        train_seconds=seconds,
        checkpoints=logger.checkpoints,
    )
    if run is None:
        return result
    run.log_metrics({"train_tokens_per_second": result.tokens_per_second}, step=step)
    folder = save_to or workdir / "final"
    save_output(trainer.model, base.tokenizer, folder, merge=config.output.merge)
    if save_to is None:
        result.model, result.merged = register_output(store, config, folder, run.id, base.ref, data.nodes)
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        shutil.rmtree(workdir / "out", ignore_errors=True)
    return result


def save_output(model: Any, tokenizer: Any, folder: Path, *, merge: bool) -> None:
    """Save the trained model (an adapter, or full weights) into `folder`, and merged weights into `folder/merged`."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if merge and hasattr(model, "merge_and_unload"):
        model.merge_and_unload().save_pretrained(folder / "merged")
        tokenizer.save_pretrained(folder / "merged")


def register_output(
    store: Store, config: TrainConfig, folder: Path, run_id: str, base_ref: str, data_nodes: list[str]
) -> tuple[ModelVersion, ModelVersion | None]:
    """Register a saved training output (and its merged weights) with lineage to its data, base and run.

    Returns:
        The version of `config.name`, and the `<name>-merged` version when merged weights were saved.
    """
    info = ModelInfo(
        description=config.output.description or f"{config.method} fine-tune of {base_ref}.",
        intended_use=config.output.intended_use,
        limitations=config.output.limitations,
        extra={"method": config.method, "datasets": list(config.data.train)},
    )
    merged_folder = folder / "merged"
    with tempfile.TemporaryDirectory(prefix="keel-train-") as tmp:
        main_folder = Path(tmp) / "model"
        shutil.copytree(folder, main_folder, ignore=shutil.ignore_patterns("merged"))
        version, _ = register_model(store, config.name, main_folder, run_id=run_id, base_model=base_ref, info=info)
    merged = None
    if merged_folder.is_dir():
        merged, _ = register_model(
            store, f"{config.name}-merged", merged_folder, run_id=run_id, base_model=base_ref, info=info
        )
    with store.db.write() as conn:
        for made in (version, merged):
            if made is None:
                continue
            for node in data_nodes:
                add_edge(conn, node, made.node, "trained_on", at=store.clock())
            if made is merged:
                add_edge(conn, version.node, made.node, "merged_into", at=store.clock())
    return version, merged
