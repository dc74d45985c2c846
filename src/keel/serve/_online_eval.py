"""Online evaluation: a sampled share of answers scored in the background, stored as `judge` feedback.

The request path only offers a sample (a non-blocking put on a bounded queue; when the queue is
full the sample is dropped and counted). One background task scores samples in a worker thread
with the offline judge (answer relevance; groundedness only when the request carried retrieved
contexts) and the guardrail detectors (personal data in the answer, injection in the question),
then queues the scores on the feedback writer. Nothing here can slow or fail a request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.core.ids import new_ulid
from keel.monitor import Feedback, FeedbackWriter

if TYPE_CHECKING:
    from keel.serve._guardrails import Guardrails
    from keel.store import Store

__all__ = ["EvalSample", "OnlineEvaluator"]

log = logging.getLogger(__name__)

JUDGE_ACTOR = "online-eval"


@dataclass(frozen=True, slots=True)
class EvalSample:
    """One answer to score: its trace, the question (last user turn) and the answer text."""

    trace_id: str
    deployment: str
    model_version: str | None
    question: str
    answer: str
    contexts: list[str] = field(default_factory=list)


class OnlineEvaluator:
    """Scores sampled answers in the background; `offer` never waits.

    Args:
        store: The workspace store (for the clock).
        writer: Where scores go, as feedback with source `judge`.
        guardrails: The gateway's guardrails (their PII and injection detectors).
        queue_size: Samples that may wait; beyond it new ones are dropped (counted in `dropped`).
    """

    def __init__(self, store: Store, writer: FeedbackWriter, guardrails: Guardrails, *, queue_size: int = 1_000):
        self._store = store
        self._writer = writer
        self._guardrails = guardrails
        self._queue: asyncio.Queue[EvalSample] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._judge: Any = None
        self._closed = False
        self.scored = 0
        self.dropped = 0
        self.failed = 0

    def offer(self, sample: EvalSample) -> bool:
        """Queue `sample` if there is room (and the evaluator is not closed); returns whether it was queued."""
        if self._closed:
            self.dropped += 1
            return False
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="keel-online-eval")
        try:
            self._queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    async def flush(self) -> None:
        """Wait until every queued sample is scored and its feedback queued."""
        await self._queue.join()

    async def close(self) -> None:
        """Stop scoring; samples still queued are dropped (they are a sample, not a record)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.dropped += self._queue.qsize()

    async def _run(self) -> None:
        while True:
            sample = await self._queue.get()
            try:
                for scored in await asyncio.to_thread(self.score, sample):
                    await self._writer.put(scored)
                self.scored += 1
            except Exception:  # a background task boundary: one bad sample must not stop the rest
                self.failed += 1
                log.exception("online evaluation of trace %s failed", sample.trace_id)
            finally:
                self._queue.task_done()

    def _offline_judge(self) -> Any:
        if self._judge is None:
            from keel.evals import OfflineJudge  # loads the MiniLM embedder on first use, in this thread

            self._judge = OfflineJudge()
        return self._judge

    def score(self, sample: EvalSample) -> list[Feedback]:
        """The judge and guardrail scores of one sample (runs in a worker thread)."""
        at = self._store.clock()
        scores: list[tuple[str, float, dict[str, Any]]] = []
        judge = self._offline_judge()
        relevance = judge.answer_relevance(sample.question, sample.answer)
        scores.append(("answer_relevance", relevance.score, {"judge": relevance.judge}))
        if sample.contexts:
            grounded = judge.groundedness(sample.answer, sample.contexts)
            scores.append(("groundedness", grounded.score, {"judge": grounded.judge, **grounded.details}))
        pii = sorted({str(span.type) for span in self._guardrails.pii.detect(sample.answer)})
        scores.append(("guardrail:pii", 0.0 if pii else 1.0, {"found": pii}))
        injected = self._guardrails.injection.check(sample.question).flagged
        scores.append(("guardrail:injection", 0.0 if injected else 1.0, {}))
        return [
            Feedback(
                id=new_ulid(),
                trace_id=sample.trace_id,
                at=at,
                label=label,
                score=round(float(value), 6),
                source="judge",
                actor=JUDGE_ACTOR,
                deployment=sample.deployment,
                model_version=sample.model_version,
                details=details,
            )
            for label, value, details in scores
        ]
