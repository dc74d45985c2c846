"""Library parts of a fine-tune: the base model, the examples, and a configured transformers / trl trainer.

Supervised methods (`lora`, `full`) use a plain `transformers.Trainer` over pre-tokenised examples with
the prompt masked; `dpo` uses trl's `DPOTrainer`. Nothing here touches runs or the registry.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.core.errors import InputError
from keel.store import Store
from keel.train._config import TrainConfig
from keel.train._data import (
    DataForm,
    dataset_table,
    detect_form,
    preference_rows,
    supervised_pairs,
    tokenize_pairs,
)
from keel.train._models import load_model, load_pretrained, quiet_renames, resolve_base

__all__ = ["BaseModel", "TrainingData", "build_trainer", "load_base", "load_training_data"]


@dataclass
class BaseModel:
    """The loaded base model, its tokenizer, and how it is named in lineage and on the card."""

    model: Any
    tokenizer: Any
    ref: str
    node: str | None


@dataclass
class TrainingData:
    """Rows read from dataset versions, split for training and evaluation."""

    form: DataForm
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    nodes: list[str] = field(default_factory=list)


def _read(store: Store, refs: Sequence[str]) -> tuple[list[dict[str, Any]], list[str], DataForm | None]:
    rows: list[dict[str, Any]] = []
    nodes: list[str] = []
    form: DataForm | None = None
    for ref in refs:
        table, node = dataset_table(store, ref)
        this = detect_form(table.column_names)
        if form is not None and this != form:
            raise InputError(f"expected every dataset version in one form; {ref} holds {this!r} rows, others {form!r}")
        form = this
        rows += table.to_pylist()
        nodes.append(node)
    return rows, nodes, form


def load_training_data(store: Store, config: TrainConfig) -> TrainingData:
    """Read the config's dataset versions and split off the evaluation rows (seeded)."""
    train, nodes, form = _read(store, config.data.train)
    assert form is not None
    evaluation, eval_nodes, eval_form = _read(store, config.data.eval)
    if eval_form is not None and eval_form != form:
        raise InputError(f"expected `data.eval` in the same form as `data.train` ({form!r}); found {eval_form!r}")
    if config.method == "dpo" and form != "preference":
        raise InputError(
            f"method `dpo` needs `prompt`/`chosen`/`rejected` rows; the training data holds {form!r} rows",
            hint="use method `lora` or `full`, or train on a preference dataset version",
        )
    if not evaluation and config.data.eval_fraction > 0:
        shuffled = list(train)
        random.Random(config.seed).shuffle(shuffled)
        cut = max(1, round(len(shuffled) * config.data.eval_fraction))
        evaluation, train = shuffled[:cut], shuffled[cut:]
    if not train:
        raise InputError("expected training rows after the evaluation split; none are left")
    return TrainingData(form=form, train=train, eval=evaluation, nodes=nodes + eval_nodes)


def load_base(store: Store, config: TrainConfig) -> BaseModel:
    """Load the base model (an adapter version is merged into its base first)."""
    kind, where, gguf_file = resolve_base(store, config.base)
    dtype = config.training.dtype
    if kind == "registry":
        model, tokenizer = load_model(store, config.base, dtype=dtype)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        from keel.registry import get_model

        version = get_model(store, config.base, with_files=False)
        return BaseModel(model, tokenizer, version.ref, version.node)
    assert where is not None
    model, tokenizer = load_pretrained(where, dtype=dtype, gguf_file=gguf_file)
    return BaseModel(model, tokenizer, config.base, None)


def _lora_config(config: TrainConfig) -> Any:
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _common_args(config: TrainConfig, output_dir: Path, has_eval: bool) -> dict[str, Any]:
    import torch

    hp = config.training
    stopping = has_eval and hp.early_stopping_patience is not None
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": hp.epochs,
        "max_steps": hp.max_steps,
        "per_device_train_batch_size": hp.batch_size,
        "per_device_eval_batch_size": hp.batch_size,
        "gradient_accumulation_steps": hp.gradient_accumulation,
        "learning_rate": hp.learning_rate,
        "weight_decay": hp.weight_decay,
        "warmup_steps": hp.warmup_ratio,  # a float below 1 is a share of the total steps
        "lr_scheduler_type": hp.scheduler,
        "activation_checkpointing": hp.gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if hp.gradient_checkpointing else None,
        "logging_steps": hp.logging_steps,
        "save_strategy": "steps",
        "save_steps": hp.save_steps,
        "save_total_limit": 2,  # every checkpoint is already a blob of the run; keep the disk small
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": hp.save_steps if has_eval else None,
        "load_best_model_at_end": stopping,
        "metric_for_best_model": "eval_loss" if stopping else None,
        "greater_is_better": False if stopping else None,
        "report_to": [],
        "seed": config.seed,
        "data_seed": config.seed,
        "use_cpu": not torch.cuda.is_available(),
        "disable_tqdm": True,
        "bf16": hp.dtype == "bfloat16" and torch.cuda.is_available(),
        "fp16": hp.dtype == "float16" and torch.cuda.is_available(),
        "ddp_backend": "gloo" if _distributed() and not torch.cuda.is_available() else None,
        "dataloader_num_workers": 0,
    }


def _callbacks(config: TrainConfig, has_eval: bool, extra: Sequence[Any]) -> list[Any]:
    from transformers import EarlyStoppingCallback

    callbacks = list(extra)
    if has_eval and config.training.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.early_stopping_patience))
    return callbacks


def build_trainer(
    config: TrainConfig, base: BaseModel, data: TrainingData, output_dir: Path, callbacks: Sequence[Any]
) -> tuple[Any, int]:
    """A configured trainer for the config's method, and the number of training tokens per epoch.

    Args:
        config: The validated config.
        base: The base model and tokenizer.
        data: The training and evaluation rows.
        output_dir: Where the trainer writes checkpoints.
        callbacks: Extra `TrainerCallback`s (the Keel run logger).

    Returns:
        The trainer and the count of (non-padding) tokens in one pass over the training set.
    """
    from transformers import PrinterCallback

    with quiet_renames():
        trainer, tokens = _build_trainer(config, base, data, output_dir, callbacks)
    trainer.remove_callback(PrinterCallback)  # metrics go to the run (and the CLI's progress), not stdout
    return trainer, tokens


def _build_trainer(
    config: TrainConfig, base: BaseModel, data: TrainingData, output_dir: Path, callbacks: Sequence[Any]
) -> tuple[Any, int]:
    from datasets import Dataset

    has_eval = bool(data.eval)
    if config.method == "dpo":
        from trl import DPOConfig, DPOTrainer  # type: ignore[attr-defined]

        train_rows, eval_rows = preference_rows(data.train), preference_rows(data.eval)
        args = DPOConfig(
            **_common_args(config, output_dir, has_eval), beta=config.dpo.beta, max_length=config.data.max_length
        )
        trainer: Any = DPOTrainer(
            model=base.model,
            args=args,
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(eval_rows) if has_eval else None,
            processing_class=base.tokenizer,
            peft_config=_lora_config(config) if config.dpo.adapter == "lora" else None,
            callbacks=_callbacks(config, has_eval, callbacks),
        )
        tokens = sum(len(base.tokenizer(r["prompt"] + r["chosen"])["input_ids"]) for r in train_rows)
        return trainer, tokens
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model = base.model
    if config.method == "lora":
        from peft import get_peft_model

        if config.training.gradient_checkpointing:
            model.enable_input_require_grads()
        model = get_peft_model(model, _lora_config(config))
    train_examples = tokenize_pairs(
        supervised_pairs(data.train, data.form, base.tokenizer), base.tokenizer, config.data.max_length
    )
    eval_examples = (
        tokenize_pairs(supervised_pairs(data.eval, data.form, base.tokenizer), base.tokenizer, config.data.max_length)
        if has_eval
        else []
    )
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**_common_args(config, output_dir, has_eval)),
        train_dataset=Dataset.from_list(train_examples),
        eval_dataset=Dataset.from_list(eval_examples) if has_eval else None,
        data_collator=DataCollatorForSeq2Seq(base.tokenizer, padding=True, label_pad_token_id=-100),
        processing_class=base.tokenizer,
        callbacks=_callbacks(config, has_eval, callbacks),
    )
    return trainer, sum(len(e["input_ids"]) for e in train_examples)
