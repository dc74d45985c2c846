"""The bridge between a transformers Trainer and a Keel run: metrics as they are logged, checkpoints as blobs.

Only the world's process zero writes to the run. A checkpoint is uploaded as run artifacts under
`checkpoints/checkpoint-N/`, recorded in one transaction, so a run's artifacts never hold half a
checkpoint; `latest_checkpoint` finds the newest complete one to resume from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keel.core.errors import InputError
from keel.registry import Run, get_run
from keel.store import Store

__all__ = ["CHECKPOINT_PREFIX", "RunLogger", "keel_callback", "latest_checkpoint", "restore_checkpoint"]

CHECKPOINT_PREFIX = "checkpoints/"
_CHECKPOINT = re.compile(r"checkpoints/checkpoint-(\d+)/(.+)")


class RunLogger:
    """Streams a trainer's numeric logs into a run and uploads each checkpoint it writes.

    Args:
        run: The live run (None on processes other than rank zero: then it records nothing).
        progress: Called with `(step, max_steps)` after each optimiser step.
    """

    def __init__(self, run: Run | None, progress: Callable[[int, int], None] | None = None) -> None:
        self.run = run
        self.progress = progress
        self.checkpoints: list[int] = []

    def step(self, state: Any) -> None:
        """Report `(global step, max steps)` to the progress function, on rank zero."""
        if self.progress is not None and state.is_world_process_zero:
            self.progress(int(state.global_step), int(state.max_steps))

    def log(self, state: Any, logs: dict[str, Any] | None) -> None:
        """Record every finite numeric value the trainer logged, at its global step."""
        if self.run is None or not state.is_world_process_zero or not logs:
            return
        values = {
            key: float(value)
            for key, value in logs.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))
        }
        if values:
            self.run.log_metrics(values, step=int(state.global_step))

    def save(self, args: Any, state: Any) -> None:
        """Upload the checkpoint the trainer just wrote."""
        if self.run is None or not state.is_world_process_zero:
            return
        step = int(state.global_step)
        folder = Path(args.output_dir) / f"checkpoint-{step}"
        if folder.is_dir():
            self.run.log_artifact(folder, f"{CHECKPOINT_PREFIX}checkpoint-{step}")
            self.checkpoints.append(step)


def keel_callback(logger: RunLogger) -> Any:
    """A transformers `TrainerCallback` forwarding `on_log` and `on_save` to `logger`."""
    from transformers import TrainerCallback

    class KeelRunCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            logger.log(state, logs)

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logger.save(args, state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logger.step(state)

    return KeelRunCallback()


def latest_checkpoint(store: Store, run_id: str) -> tuple[int, dict[str, str]] | None:
    """The newest complete checkpoint of a run: its step and `{relative path: digest}`."""
    with store.db.read() as conn:
        info = get_run(conn, run_id)
    by_step: dict[int, dict[str, str]] = {}
    for path, digest in info.artifacts.items():
        match = _CHECKPOINT.fullmatch(path)
        if match:
            by_step.setdefault(int(match.group(1)), {})[match.group(2)] = digest
    complete = [step for step, files in by_step.items() if "trainer_state.json" in files]
    if not complete:
        return None
    step = max(complete)
    return step, by_step[step]


def restore_checkpoint(store: Store, run_id: str, dest: Path) -> tuple[str, Path]:
    """Download a run's newest checkpoint into `dest/checkpoint-N`, each file verified.

    Returns:
        The run's full id and the checkpoint folder.

    Raises:
        InputError: The run saved no checkpoint to resume from.
    """
    with store.db.read() as conn:
        full_id = get_run(conn, run_id).id
    found = latest_checkpoint(store, full_id)
    if found is None:
        raise InputError(
            f"run {full_id} saved no checkpoint to resume from",
            hint="start it again without --resume (checkpoints are written every `training.save_steps`)",
        )
    step, files = found
    folder = dest / f"checkpoint-{step}"
    for rel, digest in files.items():
        store.blobs.get_file(digest, folder / rel)
    return full_id, folder
