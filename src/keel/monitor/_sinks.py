"""Where alert notifications go: the log, a webhook (JSON, Slack or Alertmanager payloads), a command.

A sink that fails (a webhook down, a command exiting non-zero) is logged and the others still
receive the alert: notification never stops evaluation. Payload shapes follow Slack's incoming
webhooks (`text` plus `attachments`) and Alertmanager's webhook receiver (version 4), so a
receiver built for either accepts Keel's alerts unchanged.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence
from typing import Any

import httpx

from keel.core.clock import format_time
from keel.monitor._alerts import AlertEvent, SinkConfig

__all__ = ["alertmanager_payload", "send", "slack_payload"]

log = logging.getLogger("keel.alerts")
_COLOURS = {"critical": "#d00000", "warning": "#e8a317", "info": "#439fe0"}


def _annotations(event: AlertEvent) -> dict[str, str]:
    notes = {"summary": event.summary}
    if event.value is not None:
        notes["value"] = f"{event.value:.6g}"
    return notes


def alertmanager_payload(events: Sequence[AlertEvent]) -> dict[str, Any]:
    """Alertmanager's webhook receiver payload (version 4) for `events`."""
    common = dict(set.intersection(*(set(e.labels.items()) for e in events))) if events else {}
    return {
        "version": "4",
        "groupKey": json.dumps(sorted(common.items())),
        "status": "firing" if any(e.status == "firing" for e in events) else "resolved",
        "receiver": "keel",
        "groupLabels": {k: v for k, v in common.items() if k == "alertname"},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": e.status,
                "labels": e.labels,
                "annotations": _annotations(e),
                "startsAt": format_time(e.started_at),
                "endsAt": format_time(e.ended_at) if e.ended_at else "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": e.fingerprint[:16],
            }
            for e in events
        ],
    }


def slack_payload(events: Sequence[AlertEvent]) -> dict[str, Any]:
    """A Slack incoming-webhook message for `events`: one line of text and one attachment per alert."""
    firing = sum(1 for e in events if e.status == "firing")
    text = f"[keel] {firing} firing, {len(events) - firing} resolved"
    attachments = [
        {
            "color": "#2eb886" if e.status == "resolved" else _COLOURS.get(e.severity, "#439fe0"),
            "title": f"[{e.status.upper()}] {e.rule} ({e.severity})",
            "text": e.summary,
            "fields": [{"title": k, "value": v, "short": True} for k, v in sorted(e.labels.items())],
        }
        for e in events
    ]
    return {"text": text, "attachments": attachments}


def _payload(sink: SinkConfig, events: Sequence[AlertEvent]) -> dict[str, Any]:
    if sink.format == "slack":
        return slack_payload(events)
    if sink.format == "alertmanager":
        return alertmanager_payload(events)
    return {"alerts": [e.to_json() for e in events]}


def send(sinks: Sequence[SinkConfig], events: Sequence[AlertEvent]) -> dict[str, str]:
    """Send the events to be notified to every sink; returns each failed sink's error (empty when all worked)."""
    due = [e for e in events if e.notify]
    failures: dict[str, str] = {}
    if not due:
        return failures
    for i, sink in enumerate(sinks):
        name = f"{i}:{sink.type}"
        try:
            if sink.type == "log":
                for e in due:
                    log.warning("alert %s %s (%s): %s %s", e.rule, e.status, e.severity, e.summary, e.labels)
            elif sink.type == "webhook":
                assert sink.url is not None
                response = httpx.post(sink.url, json=_payload(sink, due), timeout=sink.timeout_s)
                response.raise_for_status()
            else:
                assert sink.command is not None
                subprocess.run(  # noqa: S603 - the operator's own command from their alerts file
                    sink.command, input=json.dumps(_payload(sink, due)), text=True, check=True,
                    timeout=sink.timeout_s, capture_output=True,
                )  # fmt: skip
        except (httpx.HTTPError, OSError, subprocess.SubprocessError) as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
            log.error("alert sink %s failed: %s", name, failures[name])
    return failures
