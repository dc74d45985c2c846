"""Floor 3: runs, the model registry with alias history, the prompt registry, and model cards."""

from keel.registry._aliases import AliasEvent
from keel.registry._cards import model_card, render_card_markdown
from keel.registry._env import capture_environment
from keel.registry._models import (
    ManifestFile,
    ModelInfo,
    ModelVersion,
    alias_model,
    detect_format,
    get_model,
    list_models,
    model_history,
    pull_model,
    register_model,
    rollback_model,
)
from keel.registry._refs import Ref, parse_ref
from keel.registry._runs import Run, RunInfo, RunStatus, count_runs, get_run, list_runs, metric_series, start_run

__all__ = [
    "AliasEvent",
    "ManifestFile",
    "ModelInfo",
    "ModelVersion",
    "Ref",
    "Run",
    "RunInfo",
    "RunStatus",
    "alias_model",
    "capture_environment",
    "count_runs",
    "detect_format",
    "get_model",
    "get_run",
    "list_models",
    "list_runs",
    "metric_series",
    "model_card",
    "model_history",
    "parse_ref",
    "pull_model",
    "register_model",
    "render_card_markdown",
    "rollback_model",
    "start_run",
]
