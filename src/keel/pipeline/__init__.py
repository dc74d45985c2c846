"""Floor 6: the lifecycle as a declared, cached, gated pipeline; the demo; data-subject erasure across all of it."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
    from keel.pipeline._demo import DemoReport, run_demo
    from keel.pipeline._engine import (
        GateFailedError,
        PipelineBusyError,
        PlannedStage,
        StageFailedError,
        StageOutcome,
        last_statuses,
        plan_pipeline,
        run_pipeline,
    )
    from keel.pipeline._erase import ErasureImpact, erase_subjects, erasure_impact
    from keel.pipeline._spec import Pipeline, Stage, load_pipeline, parse_pipeline

__all__ = [
    "DemoReport",
    "ErasureImpact",
    "GateFailedError",
    "Pipeline",
    "PipelineBusyError",
    "PlannedStage",
    "Stage",
    "StageFailedError",
    "StageOutcome",
    "erase_subjects",
    "erasure_impact",
    "last_statuses",
    "load_pipeline",
    "parse_pipeline",
    "plan_pipeline",
    "run_demo",
    "run_pipeline",
]

# Each name loads its module on first use (PEP 562): `keel pipeline run` loads neither the demo nor erasure.
_MODULES = {
    **dict.fromkeys(("DemoReport", "run_demo"), "_demo"),
    **dict.fromkeys(
        (
            "GateFailedError",
            "PipelineBusyError",
            "PlannedStage",
            "StageFailedError",
            "StageOutcome",
            "last_statuses",
            "plan_pipeline",
            "run_pipeline",
        ),
        "_engine",
    ),  # fmt: skip
    **dict.fromkeys(("ErasureImpact", "erase_subjects", "erasure_impact"), "_erase"),
    **dict.fromkeys(("Pipeline", "Stage", "load_pipeline", "parse_pipeline"), "_spec"),
}
_lazy = lazy_getattr(__name__, _MODULES)
_MOVED = ("CurationResult", "curate", "source_node")  # to keel.curate in December 2026; old path kept one release


def __getattr__(name: str) -> Any:
    """A public name from its module on first use; a name that moved to keel.curate, with a DeprecationWarning."""
    if name not in _MOVED:
        return _lazy(name)
    import keel.curate

    warnings.warn(
        f"keel.pipeline.{name} moved to keel.curate.{name}; the old path goes away in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(keel.curate, name)
