"""Feedback from the Python API and the CLI, summaries by time bucket, and export to SFT/DPO dataset versions."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import new_ulid
from keel.data import get_version, load_version
from keel.monitor import (
    Trace,
    TraceWriter,
    export_feedback,
    feedback_scores,
    list_feedback,
    record_feedback,
    summarize,
)
from keel.store import Store, walk


def served(
    store: Store, question: str | None, answer: str, *, version: str = "chat@v1", deployment: str = "chat"
) -> str:
    """A trace as the gateway writes it (through the trace writer), with its content unless `question` is None."""
    request = None if question is None else {"messages": [{"role": "user", "content": question}]}
    trace = Trace(id=new_ulid(), at=store.clock(), deployment=deployment, operation="chat", status=200,
                  latency_ms=12.5, model_version=version, request=request,
                  response=answer if request else None)  # fmt: skip
    TraceWriter(store).write([trace.storable()])
    return trace.id


def test_record_feedback_validates_links_and_reads_scores(store: Store) -> None:
    trace = served(store, "hi", "hello")
    made = record_feedback(store, trace.lower(), score="up", label="helpfulness", comment="naïve ✓")
    assert made.trace_id == trace and made.score == 1.0 and made.deployment == "chat" and made.actor == store.actor
    record_feedback(store, trace, score=0.2, source="judge", details={"why": "short"})
    assert feedback_scores(store, "chat") == [1.0, 0.2]
    assert feedback_scores(store, "chat", source="judge") == [0.2]
    assert feedback_scores(store, "chat", model_version="chat@v2") == []
    assert feedback_scores(store, "chat", since=store.clock() + timedelta(seconds=1)) == []
    assert list_feedback(store, source="judge")[0].details == {"why": "short"}
    with store.db.read() as conn:
        assert f"trace:{trace}" in {hit.node for hit in walk(conn, made.node, "upstream")}
    with pytest.raises(NotFoundError, match="no trace with id"):
        record_feedback(store, new_ulid(), score=1)
    cases = [({"score": 1.5}, "from 0 to 1"), ({"score": "maybe"}, "thumbs"), ({}, "at least one"),
             ({"score": 1, "label": "x" * 65}, "`label`"), ({"score": 1, "source": "robot"}, "`source`")]  # fmt: skip
    for bad, words in cases:
        with pytest.raises(InputError, match=words):
            record_feedback(store, trace, **bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="26-character"):
        record_feedback(store, "not-a-trace", score=1)


def test_summary_counts_feedback_and_gives_a_time_series(store: Store) -> None:
    first = served(store, "a", "b")
    record_feedback(store, first, score="down")
    record_feedback(store, first, score=0.9, source="judge")
    (row,) = summarize(store)
    assert (row.requests, row.feedback, row.feedback_score, row.judge_score) == (1, 2, 0.0, 0.9)
    series = summarize(store, by=timedelta(minutes=5))
    assert len(series) == 1 and series[0].start is not None and series[0].start <= row_time(store, first)
    assert series[0].start.minute % 5 == 0 and series[0].start.second == 0
    assert "start" in series[0].to_json() and "start" not in row.to_json()
    with pytest.raises(InputError, match="positive"):
        summarize(store, by=timedelta(0))


def row_time(store: Store, trace_id: str):  # type: ignore[no-untyped-def]
    from keel.monitor import get_trace

    return get_trace(store, trace_id).at


def test_export_dpo_and_sft_versions_name_their_traces_and_redact_pii(store: Store) -> None:
    corrected = served(store, "What is the refund window? Mail jane.doe@example.com", "14 days.")
    record_feedback(store, corrected, score="down", correction="30 days from delivery.")
    no = served(store, "Do you ship to Canada?", "No.", version="chat@v1")
    yes = served(store, "Do you ship to Canada?", "Yes, within 5 days.", version="chat@v2")
    record_feedback(store, no, score="down")
    record_feedback(store, yes, score="up")
    record_feedback(store, no, score=1.0, source="judge")  # judges do not make training data
    unrecorded = served(store, None, "")
    record_feedback(store, unrecorded, score="down", correction="ignored: no content was recorded")
    lonely = served(store, "Hello?", "Hi!")
    record_feedback(store, lonely, score="up")  # no worse answer to prefer it to
    served(store, "Do you ship to Canada?", "Maybe.", deployment="other")  # no feedback

    result = export_feedback(store, "prefs", form="dpo")
    assert (result.rows, result.from_corrections, result.from_ratings) == (2, 1, 1)
    assert result.skipped == {"trace_without_content": 1} and result.redacted == 1 and result.new
    rows = {tuple(r["traces"]): r for r in load_version(store, result.version).to_pylist()}
    assert rows[(corrected,)]["prompt"] == "What is the refund window? Mail <EMAIL>"
    assert (rows[(corrected,)]["chosen"], rows[(corrected,)]["rejected"]) == ("30 days from delivery.", "14 days.")
    assert (rows[(yes, no)]["chosen"], rows[(yes, no)]["rejected"]) == ("Yes, within 5 days.", "No.")
    node = get_version(store, result.version).node
    with store.db.read() as conn:
        upstream = {hit.node for hit in walk(conn, node, "upstream", depth=1)}
    assert {f"trace:{t}" for t in (corrected, yes, no)} <= upstream
    assert f"trace:{unrecorded}" not in upstream and f"trace:{lonely}" not in upstream
    assert export_feedback(store, "prefs", form="dpo").new is False  # the same rows: the same version

    sft = export_feedback(store, "pairs", form="sft")
    (row,) = load_version(store, sft.version).to_pylist()
    assert row["messages"] == [{"role": "user", "content": "What is the refund window? Mail <EMAIL>"},
                               {"role": "assistant", "content": "30 days from delivery."}]  # fmt: skip
    assert row["traces"] == [corrected]
    with pytest.raises(InputError, match="no dpo rows to export"):
        export_feedback(store, "prefs", form="dpo", deployment="other")
    with pytest.raises(InputError, match="no sft rows to export"):
        export_feedback(store, "pairs", form="sft", since=store.clock() + timedelta(hours=1))


def test_feedback_cli_add_list_export_and_summary_series(store: Store, tmp_path: Path) -> None:
    workspace = str(store.settings.workspace)
    runner = CliRunner()
    trace = served(store, "Where is my order 12?", "Shipped.")
    added = runner.invoke(app, ["-w", workspace, "feedback", "add", trace, "--score", "down", "--correction",
                                "It ships tomorrow.", "--json"])  # fmt: skip
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["correction"] == "It ships tomorrow."
    bad = runner.invoke(app, ["-w", workspace, "feedback", "add", trace, "--score", "7"])
    assert bad.exit_code == 2 and "expected `score` to be a number from 0 to 1" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and "Traceback" not in bad.output
    missing = runner.invoke(app, ["-w", workspace, "feedback", "add", new_ulid(), "--score", "up"])
    assert missing.exit_code != 0 and "no trace with id" in missing.output
    listed = runner.invoke(app, ["-w", workspace, "feedback", "list", "--since", "1h", "--json"])
    assert [f["trace_id"] for f in json.loads(listed.output)] == [trace]
    exported = runner.invoke(app, ["-w", workspace, "feedback", "export", "fixes", "--as", "sft", "--since", "1d",
                                   "--json"])  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["version"] == "fixes@v1"
    wrong = runner.invoke(app, ["-w", workspace, "feedback", "export", "fixes", "--as", "sft", "--since", "yesterday"])
    assert wrong.exit_code == 2 and "expected a duration such as 7d" in wrong.output
    series = runner.invoke(app, ["-w", workspace, "monitor", "summary", "--by", "5m", "--json"])
    (point,) = json.loads(series.output)
    assert point["feedback"] == 1 and point["requests"] == 1 and point["start"].endswith("Z")
    assert runner.invoke(app, ["-w", workspace, "monitor", "summary", "--by", "0m"]).exit_code == 2
    table = runner.invoke(app, ["-w", workspace, "monitor", "summary", "--by", "1h"])
    assert table.exit_code == 0 and "start (UTC)" in table.output


def test_feedback_writer_spills_during_an_outage_and_the_next_writer_stores_everything(store: Store) -> None:
    import asyncio
    import time

    from keel.monitor import FeedbackWriter, make_feedback
    from keel.store.schema import feedback

    trace = served(store, "q", "a")
    made = [make_feedback(trace, score=i / 4, comment="\ud800 naïve", actor="t", at=store.clock()) for i in range(5)]
    with store.db.write() as conn:
        feedback.drop(conn)  # the database refuses every write, as an outage would

    async def until(check: object) -> None:
        deadline = time.monotonic() + 30
        while not check():  # type: ignore[operator]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)

    async def outage() -> FeedbackWriter:
        writer = FeedbackWriter(store, queue_size=2, batch_size=2)
        await writer.start()
        await writer.put(made[0])
        await until(lambda: writer.health() is not None)
        assert "feedback writer has failed" in (writer.health() or "")
        for item in made[1:]:
            await asyncio.wait_for(writer.put(item), 10)
        await writer.close(timeout_s=0.5)
        return writer

    down = asyncio.run(outage())
    assert down.spilled == 5 and down.folder.name == "feedback" and list(down.folder.glob("spill-*.jsonl"))
    with store.db.write() as conn:
        feedback.create(conn)

    async def back() -> FeedbackWriter:
        writer = FeedbackWriter(store)
        await writer.start()
        await until(lambda: writer.written == 5)
        await writer.close(timeout_s=10)
        return writer

    assert asyncio.run(back()).written == 5
    stored = list_feedback(store, trace_id=trace, limit=None)
    assert sorted(f.score for f in stored) == [0, 0.25, 0.5, 0.75, 1.0]  # type: ignore[type-var]
    assert all(f.comment == "\\ud800 naïve" for f in stored)


def test_feedback_needs_the_feedback_write_permission(store: Store) -> None:
    from keel.govern import PermissionDeniedError, create_key, grant

    first, second = served(store, "q1", "a1"), served(store, "q2", "a2")
    viewer = create_key(store, "viewer")
    grant(store, f"key:{viewer.key.id}", "viewer")
    as_viewer = replace(store, principal=f"key:{viewer.key.id}")
    with pytest.raises(PermissionDeniedError, match="feedback.write on deployment:chat"):
        record_feedback(as_viewer, first, score="up")
    record_feedback(store, second, score="up")  # the granter is admin
    assert [f.trace_id for f in list_feedback(store, trace_ids=[first, second.lower()])] == [second]
