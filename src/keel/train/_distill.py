"""Knowledge distillation: a student made from a subset of the teacher's layers, trained on its logits.

The loss is the KL divergence between temperature-softened teacher and student next-token
distributions (scaled by T², Hinton et al. 2015), over real tokens only. This module only trains;
registering and measuring belong to `_optimize`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from keel.core.errors import InputError

__all__ = ["DistillOptions", "distill", "student_from"]


@dataclass(frozen=True)
class DistillOptions:
    """Student size and training budget.

    Attributes:
        layers: Decoder layers the student keeps (evenly spaced from the teacher's).
        steps: Optimiser steps.
        batch_size: Texts per step.
        max_length: Tokens per text.
        learning_rate: AdamW learning rate.
        temperature: Softening temperature of both distributions.
        seed: Random seed.
    """

    layers: int = 1
    steps: int = 20
    batch_size: int = 4
    max_length: int = 128
    learning_rate: float = 5e-4
    temperature: float = 2.0
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def student_from(teacher: Any, options: DistillOptions) -> Any:
    """A copy of the teacher keeping `options.layers` evenly spaced decoder layers (same tokenizer)."""
    import torch

    total = int(teacher.config.num_hidden_layers)
    if not 1 <= options.layers < total:
        raise InputError(
            f"expected a student with 1 to {total - 1} layers (the teacher has {total}); got {options.layers}"
        )
    keep = sorted({round(i * (total - 1) / max(options.layers - 1, 1)) for i in range(options.layers)})
    student = copy.deepcopy(teacher)
    student.model.layers = torch.nn.ModuleList([student.model.layers[i] for i in keep])
    for index, layer in enumerate(student.model.layers):
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = index  # the KV cache is indexed by position in the new stack
    student.config.num_hidden_layers = len(keep)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in keep]
    return student


def distill(
    teacher: Any,
    student: Any,
    tokenizer: Any,
    texts: Sequence[str],
    options: DistillOptions,
    log: Callable[[int, dict[str, float]], None],
) -> float:
    """Train `student` to match `teacher`'s next-token distributions on `texts`; returns the last loss."""
    import torch
    import torch.nn.functional as F

    if not texts:
        raise InputError("expected texts to distil on; the dataset version holds none")
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    teacher.eval()
    student.train()
    optimiser = torch.optim.AdamW(student.parameters(), lr=options.learning_rate)
    t = options.temperature
    loss_value = float("nan")
    for step in range(1, options.steps + 1):
        rows = torch.randint(0, len(texts), (options.batch_size,), generator=generator).tolist()
        batch = tokenizer(
            [texts[i] for i in rows], return_tensors="pt", padding=True, truncation=True, max_length=options.max_length
        )
        mask = batch["attention_mask"].bool()
        with torch.no_grad():
            target = F.log_softmax(teacher(**batch).logits[mask] / t, dim=-1)
        predicted = F.log_softmax(student(**batch).logits[mask] / t, dim=-1)
        loss = F.kl_div(predicted, target, log_target=True, reduction="batchmean") * t * t
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        optimiser.zero_grad()
        loss_value = loss.item()
        log(step, {"distill_loss": loss_value})
    student.eval()
    return loss_value
