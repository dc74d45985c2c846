"""Floor 5: traces of served requests (batched writer, queries, OTLP export), feedback, and their summaries."""

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

__all__ = [
    "SOURCES",
    "BatchWriter",
    "ExportForm",
    "Feedback",
    "FeedbackExport",
    "FeedbackWriter",
    "OtlpExporter",
    "SummaryRow",
    "Trace",
    "TraceRetrieval",
    "TraceContent",
    "TraceWriter",
    "export_feedback",
    "feedback_scores",
    "get_trace",
    "get_trace_contents",
    "list_feedback",
    "list_traces",
    "make_feedback",
    "parse_duration",
    "parse_score",
    "parse_since",
    "percentile",
    "record_feedback",
    "storable",
    "summarize",
    "traces_citing",
]
