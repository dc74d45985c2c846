"""Floor 5: served requests' traces and feedback, their summaries, and drift, alerts and rollouts over them.

Traces, feedback, the writers and summaries load with the package (the gateway needs them); drift (scipy,
the embedder), alerts and rollouts (which act through keel.serve) load on first use.
"""

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr
from keel.monitor._export import ExportForm, FeedbackExport, export_feedback
from keel.monitor._feedback import (
    SOURCES,
    Feedback,
    FeedbackWriter,
    feedback_scores,
    list_feedback,
    make_feedback,
    parse_score,
    record_feedback,
)
from keel.monitor._otlp import OtlpExporter
from keel.monitor._summary import SummaryRow, percentile, summarize
from keel.monitor._time import parse_duration, parse_since
from keel.monitor._traces import (
    Trace,
    TraceContent,
    TraceRetrieval,
    get_trace,
    get_trace_contents,
    list_traces,
    storable,
    traces_citing,
)
from keel.monitor._writer import BatchWriter, TraceWriter

if TYPE_CHECKING:
    from keel.monitor._alerts import (
        AlertConfig,
        AlertEvent,
        AlertRule,
        evaluate_alerts,
        list_alerts,
        load_alert_config,
        prometheus_rules,
    )
    from keel.monitor._cost import CostReport, PriceTable, cost_report, load_prices
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
    from keel.monitor._watch import AlertEvaluatorLease, Tick, alert_tick, monitor_tick, watch

_MODULES = {
    **dict.fromkeys(
        (
            "AlertConfig",
            "AlertEvent",
            "AlertRule",
            "evaluate_alerts",
            "list_alerts",
            "load_alert_config",
            "prometheus_rules",
        ),
        "_alerts",
    ),
    **dict.fromkeys(("AlertEvaluatorLease", "Tick", "alert_tick", "monitor_tick", "watch"), "_watch"),
    **dict.fromkeys(("CostReport", "PriceTable", "cost_report", "load_prices"), "_cost"),
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
    "AlertEvaluatorLease",
    "AlertEvent",
    "AlertRule",
    "BatchWriter",
    "CostReport",
    "DriftOptions",
    "DriftReport",
    "ExportForm",
    "FeatureDrift",
    "Feedback",
    "FeedbackExport",
    "FeedbackWriter",
    "Guard",
    "GuardResult",
    "Observation",
    "OtlpExporter",
    "PriceTable",
    "Rollout",
    "RolloutDecision",
    "SOURCES",
    "SummaryRow",
    "Tick",
    "Trace",
    "TraceContent",
    "TraceRetrieval",
    "TraceWriter",
    "check_guard",
    "compare_observations",
    "cost_report",
    "dataset_observations",
    "detect_drift",
    "evaluate_alerts",
    "export_feedback",
    "feedback_scores",
    "get_rollout",
    "get_trace",
    "get_trace_contents",
    "list_alerts",
    "list_feedback",
    "list_traces",
    "load_alert_config",
    "load_prices",
    "make_feedback",
    "mmd_test",
    "alert_tick",
    "monitor_tick",
    "parse_duration",
    "parse_guard",
    "parse_score",
    "parse_since",
    "percentile",
    "prometheus_rules",
    "record_feedback",
    "start_rollout",
    "step_rollouts",
    "storable",
    "summarize",
    "trace_observations",
    "traces_citing",
    "watch",
]
