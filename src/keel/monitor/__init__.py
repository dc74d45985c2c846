"""Floor 5: traces of served requests (batched writer, queries, OTLP export) and their summaries."""

from keel.monitor._otlp import OtlpExporter
from keel.monitor._summary import SummaryRow, percentile, summarize
from keel.monitor._traces import Trace, TraceRetrieval, get_trace, list_traces, storable, traces_citing
from keel.monitor._writer import TraceWriter

__all__ = [
    "OtlpExporter",
    "SummaryRow",
    "Trace",
    "TraceRetrieval",
    "TraceWriter",
    "get_trace",
    "list_traces",
    "percentile",
    "storable",
    "summarize",
    "traces_citing",
]
