"""Floor 5: traces of served requests (batched writer, queries, OTLP export), feedback, and their summaries."""

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
from keel.monitor._traces import Trace, TraceContent, get_trace, get_trace_contents, list_traces, storable
from keel.monitor._writer import BatchWriter, TraceWriter

__all__ = [
    "SOURCES",
    "BatchWriter",
    "Feedback",
    "FeedbackWriter",
    "OtlpExporter",
    "SummaryRow",
    "Trace",
    "TraceContent",
    "TraceWriter",
    "feedback_scores",
    "get_trace",
    "get_trace_contents",
    "list_feedback",
    "list_traces",
    "make_feedback",
    "parse_score",
    "percentile",
    "record_feedback",
    "storable",
    "summarize",
]
