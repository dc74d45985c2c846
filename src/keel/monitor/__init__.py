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
    from keel.monitor._alerts import (
        AlertConfig,
        AlertEvent,
        AlertRule,
        evaluate_alerts,
        list_alerts,
        load_alert_config,
        parse_duration,
        prometheus_rules,
    )
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
    from keel.monitor._watch import Tick, monitor_tick, watch

_MODULES = {
    **dict.fromkeys(
        (
            "AlertConfig",
            "AlertEvent",
            "AlertRule",
            "evaluate_alerts",
            "list_alerts",
            "load_alert_config",
            "parse_duration",
            "prometheus_rules",
        ),
        "_alerts",
    ),
    **dict.fromkeys(("Tick", "monitor_tick", "watch"), "_watch"),
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
    "AlertConfig",
    "AlertEvent",
    "AlertRule",
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
    "Tick",
    "Trace",
    "TraceWriter",
    "check_guard",
    "compare_observations",
    "dataset_observations",
    "detect_drift",
    "evaluate_alerts",
    "get_rollout",
    "get_trace",
    "list_alerts",
    "list_traces",
    "load_alert_config",
    "mmd_test",
    "monitor_tick",
    "parse_duration",
    "parse_guard",
    "percentile",
    "prometheus_rules",
    "start_rollout",
    "step_rollouts",
    "storable",
    "summarize",
    "trace_observations",
    "watch",
]
