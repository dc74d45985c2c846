"""Floor 3: runs, the model registry with alias history, the prompt registry, and model cards."""

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
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
    from keel.registry._prompts import (
        PromptSummary,
        PromptVersion,
        RenderedPrompt,
        alias_prompt,
        create_prompt,
        get_prompt,
        list_prompts,
        load_prompt_file,
        prompt_history,
        render_prompt,
        rollback_prompt,
    )
    from keel.registry._refs import Ref, parse_ref
    from keel.registry._runs import (
        Run,
        RunInfo,
        RunStatus,
        close_run,
        count_runs,
        get_run,
        list_runs,
        metric_series,
        start_run,
    )

# Each name loads its module on first use (PEP 562): a command that starts a run (`keel curate run`) then
# loads runs and environments only, not the prompt registry's Jinja sandbox or the model registry.
_MODULES = {
    **dict.fromkeys(("AliasEvent",), "_aliases"),
    **dict.fromkeys(("model_card", "render_card_markdown"), "_cards"),
    **dict.fromkeys(("capture_environment",), "_env"),
    **dict.fromkeys(
        (
            "ManifestFile",
            "ModelInfo",
            "ModelVersion",
            "alias_model",
            "detect_format",
            "get_model",
            "list_models",
            "model_history",
            "pull_model",
            "register_model",
            "rollback_model",
        ),
        "_models",
    ),
    **dict.fromkeys(
        (
            "PromptSummary",
            "PromptVersion",
            "RenderedPrompt",
            "alias_prompt",
            "create_prompt",
            "get_prompt",
            "list_prompts",
            "load_prompt_file",
            "prompt_history",
            "render_prompt",
            "rollback_prompt",
        ),
        "_prompts",
    ),
    **dict.fromkeys(("Ref", "parse_ref"), "_refs"),
    **dict.fromkeys(
        (
            "Run",
            "RunInfo",
            "RunStatus",
            "close_run",
            "count_runs",
            "get_run",
            "list_runs",
            "metric_series",
            "start_run",
        ),
        "_runs",
    ),
}


__getattr__ = lazy_getattr("keel.registry", _MODULES)


__all__ = [
    "AliasEvent",
    "ManifestFile",
    "ModelInfo",
    "ModelVersion",
    "PromptSummary",
    "PromptVersion",
    "Ref",
    "RenderedPrompt",
    "Run",
    "RunInfo",
    "RunStatus",
    "alias_model",
    "alias_prompt",
    "capture_environment",
    "close_run",
    "count_runs",
    "create_prompt",
    "detect_format",
    "get_model",
    "get_prompt",
    "get_run",
    "list_models",
    "list_prompts",
    "list_runs",
    "load_prompt_file",
    "metric_series",
    "model_card",
    "model_history",
    "parse_ref",
    "prompt_history",
    "pull_model",
    "register_model",
    "render_card_markdown",
    "render_prompt",
    "rollback_model",
    "rollback_prompt",
    "start_run",
]
