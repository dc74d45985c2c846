"""Floor 5: traces of served requests and their summaries; drift, alerts and guarded rollouts over them.

Traces, the writer and summaries load with the package (the gateway needs them); drift (scipy, the
embedder), alerts and rollouts (which act through keel.serve) load on first use.
"""

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr
from keel.monitor._otlp import OtlpExporter
from keel.monitor._summary import SummaryRow, percentile, summarize
from keel.monitor._traces import Trace, get_trace, list_traces, storable
from keel.monitor._writer import TraceWriter

if TYPE_CHECKING:
    from keel.monitor._drift import (
        DriftOptions,
        DriftReport,
        FeatureDrift,
        compare_observations,
        detect_drift,
        mmd_test,
    )
    from keel.monitor._observe import Observation, dataset_observations, trace_observations
    from keel.monitor._rollout import (
        Guard,
        GuardResult,
        Rollout,
        RolloutDecision,
        check_guard,
        get_rollout,
        parse_guard,
        start_rollout,
        step_rollouts,
    )

_MODULES = {
    **dict.fromkeys(
        ("DriftOptions", "DriftReport", "FeatureDrift", "compare_observations", "detect_drift", "mmd_test"), "_drift"
    ),
    **dict.fromkeys(("Observation", "dataset_observations", "trace_observations"), "_observe"),
    **dict.fromkeys(
        (
            "Guard",
            "GuardResult",
            "Rollout",
            "RolloutDecision",
            "check_guard",
            "get_rollout",
            "parse_guard",
            "start_rollout",
            "step_rollouts",
        ),
        "_rollout",
    ),
}
__getattr__ = lazy_getattr(__name__, _MODULES)

__all__ = [
    "DriftOptions",
    "DriftReport",
    "FeatureDrift",
    "Guard",
    "GuardResult",
    "Observation",
    "OtlpExporter",
    "Rollout",
    "RolloutDecision",
    "SummaryRow",
    "Trace",
    "TraceWriter",
    "check_guard",
    "compare_observations",
    "dataset_observations",
    "detect_drift",
    "get_rollout",
    "get_trace",
    "list_traces",
    "mmd_test",
    "parse_guard",
    "percentile",
    "start_rollout",
    "step_rollouts",
    "storable",
    "summarize",
    "trace_observations",
]
