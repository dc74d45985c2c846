"""Alert rules over traffic metrics and drift, with incidents stored, audited and sent to sinks.

A rule names a metric (`error_rate`, `p95_ms`, … or `drift.<feature>`), a window, a condition
and a for-duration. Each evaluation moves the rule's open incident through pending → firing →
resolved, as Prometheus does. Only transitions are sent: a firing alert is not sent again while
it fires, a re-firing within the cool-down after it resolved is stored but not sent, and an
alert is inhibited (stored, not sent) while a more severe one with the same `equal` labels fires,
as Alertmanager does. Sinks (log, webhook, command) live in `keel.monitor._sinks`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Connection, select, text, update

from keel.core.clock import format_time
from keel.core.durations import looks_like_duration, parse_duration
from keel.core.echo import shown
from keel.core.errors import InputError
from keel.core.ids import canonical_json, sha256_hex
from keel.monitor._observe import Observation, trace_observations
from keel.monitor._summary import percentile
from keel.store import Store, insert_for
from keel.store.schema import OPEN_ALERT, alerts

__all__ = [
    "AlertConfig",
    "AlertEvent",
    "AlertRule",
    "evaluate_alerts",
    "list_alerts",
    "load_alert_config",
    "prometheus_rules",
]

Severity = Literal["info", "warning", "critical"]
_RANK = {"info": 0, "warning": 1, "critical": 2}
TRAFFIC_METRICS = ("requests", "error_rate", "p50_ms", "p95_ms", "p99_ms", "tokens_in", "tokens_out", "cost",
                   "cache_hit_rate", "feedback")  # fmt: skip
_CONDITION = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*(%?)\s*$")


def _alert_duration(text: str) -> timedelta:
    """A rule's or file's duration; `0s` is allowed (a rule with `for: 0s` fires on its first breach)."""
    return parse_duration(text, allow_zero=True)


class AlertRule(BaseModel):
    """One rule of an alerts file.

    Attributes:
        name: The alert's name (`alertname` label).
        metric: A traffic metric (requests, error_rate, p50_ms, p95_ms, p99_ms, tokens_in, tokens_out,
            cost, cache_hit_rate, feedback) or `drift.FEATURE` (the feature's p-value; `drift` alone is
            1 when any feature drifted, else 0).
        deployment: The deployment watched; every deployment's traffic when omitted (traffic metrics only).
        window: How much recent traffic the metric is computed over.
        condition: When the alert is active: an operator and a number, `> 0.05`, `< 1%`.
        for_: How long the condition must hold before the alert fires (YAML key `for`).
        severity: info, warning or critical.
        labels: Extra labels sent with the alert.
        summary: A sentence for people; a default one names the metric, value and condition.
        baseline: Drift rules: the earlier window compared against (default 7d).
        reference: Drift rules: or a dataset version compared against.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=128)
    metric: str
    deployment: str | None = None
    window: str = "5m"
    condition: str
    for_: str = Field(default="0s", alias="for")
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str | None = None
    baseline: str = "7d"
    reference: str | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value in TRAFFIC_METRICS or value == "drift" or value.startswith("drift."):
            return value
        raise ValueError(f"expected one of {', '.join(TRAFFIC_METRICS)}, drift or drift.FEATURE; got {shown(value)}")

    @field_validator("window", "for_", "baseline")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not looks_like_duration(value):
            raise ValueError(f"expected a duration such as 30s, 5m, 1h or 7d; got {shown(value)}")
        return str(value)

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str) -> str:
        if _CONDITION.match(value) is None:
            raise ValueError(f"expected an operator and a number such as '> 0.05' or '< 1%'; got {shown(value)}")
        return value

    def active(self, value: float) -> bool:
        """Whether `value` meets the condition."""
        found = _CONDITION.match(self.condition)
        assert found is not None
        bound = float(found[2]) / (100 if found[3] else 1)
        return {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound,
                "==": value == bound, "!=": value != bound}[found[1]]  # fmt: skip

    def all_labels(self) -> dict[str, str]:
        """The labels an incident of this rule carries."""
        base = {"alertname": self.name, "severity": self.severity}
        if self.deployment:
            base["deployment"] = self.deployment
        return {**self.labels, **base}


class Inhibition(BaseModel):
    """While an alert of `source` severity fires, alerts of `target` severity with equal `equal` labels are not sent."""

    model_config = ConfigDict(extra="forbid")

    source: Severity = "critical"
    target: list[Severity] = Field(default_factory=lambda: list[Severity](["warning", "info"]))
    equal: list[str] = Field(default_factory=lambda: ["deployment"])


class SinkConfig(BaseModel):
    """Where notifications go: `log`, a `webhook` (json, slack or alertmanager payloads) or a `command`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["log", "webhook", "command"]
    url: str | None = None
    format: Literal["json", "slack", "alertmanager"] = "json"
    command: list[str] | None = None
    timeout_s: float = Field(default=10.0, gt=0)


class AlertConfig(BaseModel):
    """An alerts file: rules, sinks, the cool-down after a resolve, and inhibitions."""

    model_config = ConfigDict(extra="forbid")

    rules: list[AlertRule]
    sinks: list[SinkConfig] = Field(default_factory=lambda: [SinkConfig(type="log")])
    cooldown: str = "0s"
    inhibit: list[Inhibition] = Field(default_factory=lambda: [Inhibition()])


def load_alert_config(path: str | Path) -> AlertConfig:
    """Read and validate an alerts YAML file, reporting every error at once with its path.

    Raises:
        InputError: Unreadable file, bad YAML, or rules that do not validate.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"expected a readable YAML alerts file at {path}; {type(exc).__name__}: {exc}") from None
    try:
        config = AlertConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"{path} is not a valid alerts file: {problems}", hint="see docs/monitoring.md") from None
    names = [r.name for r in config.rules]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"{path}: rule names must be unique; repeated: {', '.join(duplicated)}")
    for sink in config.sinks:
        if sink.type == "webhook" and not sink.url:
            raise InputError(f"{path}: a webhook sink needs a url")
        if sink.type == "command" and not sink.command:
            raise InputError(f"{path}: a command sink needs a command (a list: program and arguments)")
    _alert_duration(config.cooldown)
    return config


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A transition of one incident: it started firing, or it resolved."""

    id: int
    rule: str
    status: Literal["firing", "resolved"]
    severity: str
    labels: dict[str, str]
    value: float | None
    summary: str
    started_at: datetime
    ended_at: datetime | None
    fingerprint: str
    notify: bool
    suppressed: str | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "started_at": format_time(self.started_at),
                "ended_at": None if self.ended_at is None else format_time(self.ended_at)}  # fmt: skip


def _traffic_value(metric: str, observations: Sequence[Observation]) -> float | None:
    if metric == "requests":
        return float(len(observations))
    if not observations:
        return None
    if metric == "error_rate":
        return sum(1 for o in observations if (o.status or 0) >= 400) / len(observations)
    if metric in ("p50_ms", "p95_ms", "p99_ms"):
        q = {"p50_ms": 0.5, "p95_ms": 0.95, "p99_ms": 0.99}[metric]
        return percentile(sorted(o.latency_ms or 0.0 for o in observations), q)
    if metric in ("tokens_in", "tokens_out"):
        return sum(getattr(o, metric) or 0 for o in observations) / len(observations)
    if metric == "cache_hit_rate":
        return sum(1 for o in observations if o.cache_hit) / len(observations)
    if metric == "cost":
        return sum(o.cost for o in observations)
    scores = [o.feedback for o in observations if o.feedback is not None]
    return sum(scores) / len(scores) if scores else None


class _Values:
    """Metric values of one evaluation, each window read once."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self.now = store, now
        self._windows: dict[tuple[str | None, str], list[Observation]] = {}
        self._drift: dict[tuple[str, str, str, str | None], Any] = {}

    def value(self, rule: AlertRule) -> float | None:
        if rule.metric == "drift" or rule.metric.startswith("drift."):
            return self._drift_value(rule)
        return _traffic_value(rule.metric, self._window(rule.deployment, rule.window))

    def _window(self, deployment: str | None, window: str) -> list[Observation]:
        key = (deployment, window)
        if key not in self._windows:
            since = self.now - _alert_duration(window)
            if deployment is None:
                from keel.serve import list_deployments

                names = [d.name for d in list_deployments(self.store)]
                self._windows[key] = [o for n in names for o in trace_observations(self.store, n, since, self.now)]
            else:
                self._windows[key] = trace_observations(self.store, deployment, since, self.now)
        return self._windows[key]

    def _drift_value(self, rule: AlertRule) -> float | None:
        from keel.monitor._drift import detect_drift

        if rule.deployment is None:
            raise InputError(f"alert rule {rule.name!r}: a drift rule needs a deployment")
        key = (rule.deployment, rule.window, rule.baseline, rule.reference)
        if key not in self._drift:
            baseline = None if rule.reference else _alert_duration(rule.baseline)
            window = _alert_duration(rule.window)
            self._drift[key] = detect_drift(self.store, rule.deployment, window=window, reference=rule.reference,
                                            baseline_window=baseline, now=self.now)  # fmt: skip
        report = self._drift[key]
        if rule.metric == "drift":
            return 1.0 if report.drifted else 0.0
        feature = report.feature(rule.metric.removeprefix("drift."))
        return None if feature is None else feature.p_value


def _summary_text(rule: AlertRule, value: float | None) -> str:
    if rule.summary:
        return rule.summary
    where = f" of {rule.deployment}" if rule.deployment else ""
    shown = "no data" if value is None else f"{value:.4g}"
    return f"{rule.metric}{where} over {rule.window} is {shown} (alert when {rule.condition.strip()})"


def evaluate_alerts(store: Store, config: AlertConfig, *, now: datetime | None = None) -> list[AlertEvent]:
    """Evaluate every rule once; store and audit the incidents that changed; return the transitions.

    The caller sends the returned events whose `notify` is true (see `keel.monitor._sinks.send`).

    Args:
        store: The workspace store.
        config: The rules, cool-down and inhibitions.
        now: The evaluation time (default: the store's clock).

    Returns:
        Incidents that started firing or resolved in this evaluation.
    """
    now = now or store.clock()
    values = _Values(store, now)
    cooldown = _alert_duration(config.cooldown)
    events: list[AlertEvent] = []
    # Computed before the write transaction: a drift rule embeds texts, and SQLite's writer lock
    # held that long would stall the gateway's trace writer.
    computed = [(rule, values.value(rule)) for rule in config.rules]
    with store.db.write() as conn:
        for rule, value in computed:
            event = _advance(store, conn, rule, value, now, cooldown)
            if event is not None:
                events.append(event)
        events = [_inhibit(conn, config.inhibit, e) for e in events]
        for event in events:
            if event.status == "firing" and not event.notify:
                conn.execute(update(alerts).where(alerts.c.id == event.id).values(notified=0))
            store.audit(conn, f"alert.{event.status}", f"alert:{event.rule}",
                        {"id": event.id, "labels": event.labels, "value": event.value,
                         "notified": event.notify, "suppressed": event.suppressed})  # fmt: skip
    return events


_OPEN = ("pending", "firing")


def _open_incident(conn: Connection, fingerprint: str) -> Any:
    return conn.execute(select(alerts).where(alerts.c.fingerprint == fingerprint, alerts.c.state.in_(_OPEN))).first()


def _advance(
    store: Store, conn: Connection, rule: AlertRule, value: float | None, now: datetime, cooldown: timedelta
) -> AlertEvent | None:
    """Move the rule's open incident one step; safe with other watchers on the same database.

    Each transition is a compare-and-set on the incident's state, and a second open incident of one
    fingerprint conflicts with a partial unique index (migration 0016), so only one process opens,
    fires or resolves an incident, and only that one reports (and so sends) the transition.
    """
    labels = rule.all_labels()
    fingerprint = sha256_hex(canonical_json(labels).encode())
    open_row = _open_incident(conn, fingerprint)
    active = value is not None and rule.active(value)
    summary = _summary_text(rule, value)
    if not active:
        if open_row is None:
            return None
        resolved = conn.execute(
            update(alerts)
            .where(alerts.c.id == open_row.id, alerts.c.state == open_row.state)
            .values(state="resolved", resolved_at=now, value=value, updated_at=now)
        ).rowcount
        if resolved != 1 or open_row.state == "pending":
            return None  # another watcher resolved it first, or it never fired: nothing to tell
        unsent = None if open_row.notified else "its firing was not sent"
        return _event(open_row.id, rule, "resolved", labels, value, summary, open_row.fired_at, now, fingerprint,
                      notify=bool(open_row.notified), suppressed=unsent)  # fmt: skip
    if open_row is None:
        conn.execute(
            insert_for(conn, alerts)
            .values(
                rule=rule.name,
                fingerprint=fingerprint,
                severity=rule.severity,
                labels=canonical_json(labels),
                state="pending",
                value=value,
                summary=summary,
                pending_since=now,
                notified=0,
                updated_at=now,
            )
            # The predicate as the partial index spells it: PostgreSQL matches the index by its text.
            .on_conflict_do_nothing(index_elements=["fingerprint"], index_where=text(OPEN_ALERT))
        )
        # Ours, or the one another watcher opened a moment before (PostgreSQL's conflict waited for its commit).
        open_row = _open_incident(conn, fingerprint)
        if open_row is None:
            return None  # opened and resolved by another watcher in between: the next evaluation sees it
    conn.execute(update(alerts).where(alerts.c.id == open_row.id).values(value=value, summary=summary, updated_at=now))
    if open_row.state == "firing" or now - open_row.pending_since < _alert_duration(rule.for_):
        return None  # a repeat of a firing alert, or not active long enough yet
    previous = conn.execute(
        select(alerts.c.resolved_at)
        .where(alerts.c.fingerprint == fingerprint, alerts.c.fired_at.is_not(None), alerts.c.id != open_row.id)
        .order_by(alerts.c.id.desc())
        .limit(1)
    ).scalar()
    cooling = previous is not None and now - previous < cooldown
    fired = conn.execute(
        update(alerts)
        .where(alerts.c.id == open_row.id, alerts.c.state == "pending")
        .values(state="firing", fired_at=now, notified=0 if cooling else 1)
    ).rowcount
    if fired != 1:
        return None  # another watcher fired it first, and sent it
    reason = f"resolved {format_time(previous)}, within the {cooldown} cool-down" if previous and cooling else None
    return _event(open_row.id, rule, "firing", labels, value, summary, now, None, fingerprint,
                  notify=not cooling, suppressed=reason)  # fmt: skip


def _event(
    alert_id: int, rule: AlertRule, status: Any, labels: dict[str, str], value: float | None, summary: str,
    started: datetime, ended: datetime | None, fingerprint: str, *, notify: bool, suppressed: str | None,
) -> AlertEvent:  # fmt: skip
    return AlertEvent(int(alert_id), rule.name, status, rule.severity, labels, value, summary, started, ended,
                      fingerprint, notify, suppressed)  # fmt: skip


def _inhibit(conn: Connection, rules: list[Inhibition], event: AlertEvent) -> AlertEvent:
    if event.status != "firing" or not event.notify:
        return event
    firing = conn.execute(select(alerts.c.labels, alerts.c.severity).where(alerts.c.state == "firing")).all()
    for inhibition in rules:
        if event.severity not in inhibition.target:
            continue
        for row in firing:
            other = json.loads(row.labels)
            if (
                row.severity == inhibition.source
                and other != event.labels
                and all(other.get(k) == event.labels.get(k) for k in inhibition.equal)
            ):
                reason = f"inhibited by firing {other.get('alertname')} ({row.severity})"
                return AlertEvent(**{**asdict(event), "notify": False, "suppressed": reason})
    return event


def list_alerts(store: Store, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Incidents, newest first, optionally only those in `state` (pending, firing, resolved)."""
    query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(alerts.c.state == state)
    with store.db.read() as conn:
        rows = conn.execute(query).all()
    out = []
    for r in rows:
        row = dict(r._mapping)
        row["labels"] = json.loads(row["labels"])
        row["notified"] = bool(row["notified"])
        for key in ("pending_since", "fired_at", "resolved_at", "updated_at"):
            row[key] = None if row[key] is None else format_time(row[key])
        out.append(row)
    return out


_QUANTILE = (
    "histogram_quantile({q}, sum by (le) (rate(gen_ai_server_request_duration_seconds_bucket{{{{{{sel}}}}}}[{{w}}])))"
    " * 1000"
)
_PROMQL = {
    "requests": "sum(increase(keel_gateway_requests_total{{{sel}}}[{w}]))",
    "error_rate": (
        'sum(rate(keel_gateway_requests_total{{{sel_and}status=~"[45].."}}[{w}])) '
        "/ sum(rate(keel_gateway_requests_total{{{sel}}}[{w}]))"
    ),
    "p50_ms": _QUANTILE.format(q=0.5),
    "p95_ms": _QUANTILE.format(q=0.95),
    "p99_ms": _QUANTILE.format(q=0.99),
    "cache_hit_rate": (
        "sum(rate(keel_gateway_cache_hits_total{{{sel}}}[{w}])) / sum(rate(keel_gateway_requests_total{{{sel}}}[{w}]))"
    ),
}  # fmt: skip


def prometheus_rules(config: AlertConfig) -> tuple[dict[str, Any], list[str]]:
    """The rules as a Prometheus rule file (a dict to dump as YAML), and the rules it cannot express, with why.

    Gateway metrics exist for request counts, errors, latency and cache hits; drift, feedback,
    token means and cost are computed from traces only, so those rules stay with `keel monitor watch`.
    """
    out, skipped = [], []
    for rule in config.rules:
        template = _PROMQL.get(rule.metric)
        if template is None:
            skipped.append(f"{rule.name}: {rule.metric} is computed from traces, not exported to Prometheus")
            continue
        sel = f'gen_ai_request_model="{rule.deployment}"' if rule.deployment else ""
        found = _CONDITION.match(rule.condition)
        assert found is not None
        bound = float(found[2]) / (100 if found[3] else 1)
        expr = template.format(sel=sel, sel_and=f"{sel}," if sel else "", w=rule.window.strip())
        entry: dict[str, Any] = {
            "alert": rule.name,
            "expr": f"{expr} {found[1]} {bound:g}",
            "labels": {k: v for k, v in rule.all_labels().items() if k != "alertname"},
            "annotations": {"summary": _summary_text(rule, None).replace("no data", "{{ $value }}")},
        }
        if _alert_duration(rule.for_) > timedelta(0):
            entry["for"] = rule.for_.strip()
        out.append(entry)
    return {"groups": [{"name": "keel", "rules": out}]}, skipped
