"""From production back to data: feedback on served answers exported as a dataset version.

- `sft`: each corrected answer becomes a chat pair, the request's messages then the correction.
- `dpo`: a correction is preferred to the answer it corrects; and among answers to the same
  prompt (repeats, or A/B canary routes), a well-rated one (mean score above 0.5) is preferred
  to a badly rated one (below 0.5).
Every row names its traces; the version's lineage has `trace → dataset-version` and
`feedback → dataset-version` edges. Personal data in every text is redacted by the curation
`pii` step before the commit. Traces whose deployment did not record content are skipped and counted.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from keel.core.echo import shown
from keel.core.errors import InputError
from keel.monitor._feedback import Feedback, list_feedback
from keel.monitor._traces import TraceContent, get_trace_contents
from keel.store import Store

__all__ = ["ExportForm", "FeedbackExport", "export_feedback"]

ExportForm = Literal["sft", "dpo"]


@dataclass(frozen=True, slots=True)
class FeedbackExport:
    """What `export_feedback` committed and what it left out, and why."""

    version: str
    new: bool
    form: str
    rows: int
    from_corrections: int
    from_ratings: int
    traces: int
    feedback: int
    redacted: int
    skipped: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class _Answer:
    """One rated answer: the trace's content and what its feedback says."""

    trace_id: str
    content: TraceContent
    scores: list[float] = field(default_factory=list)
    correction: str | None = None
    feedback_ids: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        return sum(self.scores) / len(self.scores) if self.scores else None

    def messages(self) -> list[dict[str, str]]:
        if self.content.messages is not None:
            return [{"role": str(m.get("role", "user")), "content": _content_text(m.get("content"))}
                    for m in self.content.messages if isinstance(m, dict)]  # fmt: skip
        return [{"role": "user", "content": self.content.prompt or ""}]

    def prompt_text(self) -> str:
        messages = self.messages()
        if self.content.messages is None or (len(messages) == 1 and messages[0]["role"] == "user"):
            return messages[0]["content"] if messages else ""
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _content_text(content: object) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _gather(store: Store, found: list[Feedback], skipped: dict[str, int]) -> list[_Answer]:
    """One `_Answer` per trace that has content, oldest feedback first (a later correction wins)."""
    by_trace: dict[str, list[Feedback]] = defaultdict(list)
    for item in sorted(found, key=lambda f: (f.at, f.id)):
        by_trace[item.trace_id].append(item)
    contents = get_trace_contents(store, list(by_trace))
    answers = []
    for trace_id, items in by_trace.items():
        content = contents.get(trace_id)
        if content is None:
            skipped["trace_without_content"] = skipped.get("trace_without_content", 0) + 1
            continue
        answer = _Answer(trace_id, content)
        for item in items:
            answer.feedback_ids.append(item.id)
            if item.score is not None:
                answer.scores.append(item.score)
            if item.correction:
                answer.correction = item.correction
        answers.append(answer)
    return answers


def _sft_rows(answers: list[_Answer]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{a.trace_id}-corrected",
            "messages": [*a.messages(), {"role": "assistant", "content": a.correction}],
            "traces": [a.trace_id],
            "feedback": a.feedback_ids,
        }  # fmt: skip
        for a in answers
        if a.correction
    ]


def _dpo_rows(answers: list[_Answer]) -> tuple[list[dict[str, Any]], int]:
    """Preference rows from corrections, then from ratings of answers to the same prompt; and how many of the latter."""
    rows: list[dict[str, Any]] = []
    for a in answers:
        if a.correction and a.content.response and a.correction.strip() != a.content.response.strip():
            rows.append({"id": f"{a.trace_id}-corrected", "prompt": a.prompt_text(), "chosen": a.correction,
                         "rejected": a.content.response, "traces": [a.trace_id],
                         "feedback": a.feedback_ids})  # fmt: skip
    same_prompt: dict[str, list[_Answer]] = defaultdict(list)
    for a in answers:
        if a.content.response is not None and a.mean is not None:
            same_prompt[json.dumps(a.messages(), sort_keys=True)].append(a)
    rated = 0
    for group in same_prompt.values():
        good = sorted((a for a in group if a.mean is not None and a.mean > 0.5), key=lambda a: -(a.mean or 0))
        bad = [a for a in group if a.mean is not None and a.mean < 0.5]
        for loser in bad:  # each rejected answer once, against the best-rated different answer
            winner = next((w for w in good if w.content.response != loser.content.response), None)
            if winner is None:
                continue
            rows.append({"id": f"{winner.trace_id}-{loser.trace_id}", "prompt": winner.prompt_text(),
                         "chosen": winner.content.response, "rejected": loser.content.response,
                         "traces": [winner.trace_id, loser.trace_id],
                         "feedback": [*winner.feedback_ids, *loser.feedback_ids]})  # fmt: skip
            rated += 1
    return rows, rated


def _redact(rows: list[dict[str, Any]], form: ExportForm) -> int:
    """Run the curation `pii` step over every text of `rows` (in place); returns how many texts changed."""
    import pyarrow as pa

    from keel.curate import build_steps

    slots: list[tuple[dict[str, Any], str]] = []
    for row in rows:
        if form == "sft":
            slots.extend((message, "content") for message in row["messages"])
        else:
            slots.extend((row, key) for key in ("prompt", "chosen", "rejected"))
    if not slots:
        return 0
    no_params: dict[str, Any] = {}
    (step,) = build_steps([("pii", no_params)])  # the curation step, with its defaults: placeholders such as <EMAIL>
    texts = [str(holder[key]) for holder, key in slots]
    out = step.apply(pa.table({"text": pa.array(texts, pa.string())})).table.column("text").to_pylist()
    changed = 0
    for (holder, key), before, after in zip(slots, texts, out, strict=True):
        holder[key] = after
        changed += before != after
    return changed


def export_feedback(
    store: Store,
    name: str,
    *,
    form: ExportForm,
    since: datetime | None = None,
    deployment: str | None = None,
    message: str | None = None,
) -> FeedbackExport:
    """Commit the next version of dataset `name` from human feedback on served answers.

    Args:
        store: The workspace store.
        name: The dataset to commit to.
        form: `sft` (chat pairs from corrections) or `dpo` (preference pairs).
        since: Only feedback given at or after this time.
        deployment: Only answers of this deployment.
        message: The version's message; one is written when omitted.

    Returns:
        The version and the counts behind it.

    Raises:
        InputError: An unknown form, or no feedback that makes a row.

    Examples:
        >>> export_feedback(store, "prefs", form="dpo", since=store.clock() - timedelta(days=7))  # doctest: +SKIP
    """
    if form not in ("sft", "dpo"):
        raise InputError(f"expected the export form `sft` or `dpo`; got {shown(form)}")
    found = list_feedback(store, deployment=deployment, since=since, source="human", limit=None)
    skipped: dict[str, int] = {}
    answers = _gather(store, found, skipped)
    if form == "sft":
        rows, rated = _sft_rows(answers), 0
    else:
        rows, rated = _dpo_rows(answers)
    if not rows:
        what = "corrected answers" if form == "sft" else "corrections, or up- and down-rated answers to one prompt"
        raise InputError(
            f"no {form} rows to export: {len(found)} human feedback rows on {len(answers)} recorded answers hold no "
            f"{what}" + (f" ({skipped['trace_without_content']} traces had no recorded content)" if skipped else ""),
            hint="widen --since/--deployment, or check the deployment records content (`keel deploy configure`)",
        )
    redacted = _redact(rows, form)
    traces = sorted({t for row in rows for t in row["traces"]})
    feedback_ids = sorted({f for row in rows for f in row["feedback"]})
    import pyarrow as pa

    from keel.data import commit_version

    scope = f" of {deployment}" if deployment else ""
    version, new = commit_version(
        store,
        name,
        pa.Table.from_pylist(rows),
        message=message or f"{form} rows from feedback{scope} on {len(traces)} served answers",
        producer={
            "command": "feedback export",
            "form": form,
            "deployment": deployment,
            "since": since.isoformat() if since else None,
        },  # fmt: skip
        inputs=[f"trace:{t}" for t in traces] + [f"feedback:{f}" for f in feedback_ids],
    )
    return FeedbackExport(
        version=version.ref, new=new, form=form, rows=len(rows), from_corrections=len(rows) - rated,
        from_ratings=rated, traces=len(traces), feedback=len(feedback_ids), redacted=redacted, skipped=skipped,
    )  # fmt: skip
