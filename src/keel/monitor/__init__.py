"""Floor 5: traces of served requests (batched writer, queries, OTLP export) and their summaries."""

from keel.monitor._drift import DriftOptions, DriftReport, FeatureDrift, compare_observations, detect_drift, mmd_test
from keel.monitor._observe import Observation, dataset_observations, trace_observations
from keel.monitor._otlp import OtlpExporter
from keel.monitor._summary import SummaryRow, percentile, summarize
from keel.monitor._traces import Trace, get_trace, list_traces, storable
from keel.monitor._writer import TraceWriter

__all__ = [
    "DriftOptions",
    "DriftReport",
    "FeatureDrift",
    "Observation",
    "OtlpExporter",
    "SummaryRow",
    "Trace",
    "TraceWriter",
    "compare_observations",
    "dataset_observations",
    "detect_drift",
    "get_trace",
    "list_traces",
    "mmd_test",
    "percentile",
    "storable",
    "summarize",
    "trace_observations",
]
