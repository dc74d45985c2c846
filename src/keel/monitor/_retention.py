"""Retention: each deployment's `retain` setting, enforced by deleting its older traces (and feedback).

`enforce_retention` is what `keel govern enforce` runs; each deployment's deletion is one transaction,
audited with how many traces went and the cut-off. Feedback is deleted with its traces where the
feedback table exists (it is optional: a workspace without it is not an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import inspect, text

from keel.core.clock import format_time
from keel.monitor._traces import delete_traces, expired_traces
from keel.serve._deployments import list_deployments
from keel.store import Store, parse_duration

__all__ = ["RetentionResult", "enforce_retention"]

FEEDBACK_TABLE = "feedback"


@dataclass(frozen=True)
class RetentionResult:
    """What retention removed from one deployment."""

    deployment: str
    retain: str
    before: str
    traces: int
    feedback: int | None  # None: no feedback table

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "deployment": self.deployment,
            "retain": self.retain,
            "before": self.before,
            "traces_deleted": self.traces,
            "feedback_deleted": self.feedback,
        }


def enforce_retention(store: Store) -> list[RetentionResult]:
    """Delete every deployment's traces older than its `retain` setting; deployments without one keep all."""
    results = []
    for deployment in list_deployments(store):
        retain = deployment.settings.retain
        if retain is None:
            continue
        cutoff = store.clock() - timedelta(seconds=parse_duration(retain))
        with store.db.write() as conn:
            ids = expired_traces(conn, deployment.name, cutoff)
            feedback = None
            tables = inspect(conn).get_table_names()
            if FEEDBACK_TABLE in tables and ids:
                columns = {c["name"] for c in inspect(conn).get_columns(FEEDBACK_TABLE)}
                feedback = 0
                if "trace_id" in columns:
                    for start in range(0, len(ids), 500):
                        part = ids[start : start + 500]
                        marks = ", ".join(f":t{i}" for i in range(len(part)))
                        params = {f"t{i}": t for i, t in enumerate(part)}
                        cursor = conn.execute(text(f"DELETE FROM {FEEDBACK_TABLE} WHERE trace_id IN ({marks})"), params)
                        feedback += int(cursor.rowcount or 0)
            elif FEEDBACK_TABLE in tables:
                feedback = 0
            deleted = delete_traces(conn, ids)
            result = RetentionResult(deployment.name, retain, format_time(cutoff), deleted, feedback)
            store.audit(conn, "govern.retention", f"deployment:{deployment.name}", result.to_json())
        results.append(result)
    return results
