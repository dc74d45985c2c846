"""`keel label …` end to end: schema, queue, labelling in the terminal through stdin, agreement, files, commit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import reopen
from tests.unit.label.conftest import TICKETS, commit_tickets
from typer.testing import CliRunner

from keel.cli import app
from keel.data import DatasetVersion
from keel.label import get_queue, list_labels, next_item, record_label
from keel.store import Store

ROOT = Path(__file__).resolve().parents[3]


def run(store: Store, *args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-w", str(store.settings.workspace), *args], input=input)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [("--rating", "0", "expected a rating scale from 2 to 100; got 0"), ("--classes", "", "at least two classes")],
)
def test_a_zero_or_empty_schema_option_is_named_not_called_missing(
    store: Store, option: str, value: str, expected: str
) -> None:
    """`--rating 0` and `--classes ''` were falsy: the message said no option was given at all."""
    commit_tickets(store)
    code, out = run(store, "label", "schema", "set", "tickets", option, value)
    assert code == 2 and expected in " ".join(out.split()), out


def test_schema_and_queue_commands_with_json_and_clear_errors(store: Store) -> None:
    commit_tickets(store)
    code, out = run(store, "label", "schema", "set", "tickets", "--classes", "billing,bug,other", "--json")
    assert code == 0 and json.loads(out)["classes"] == ["billing", "bug", "other"]
    code, out = run(store, "label", "schema", "set", "tickets", "--classes", "a,b", "--rating", "5")
    assert code == 2 and "expected exactly one of --classes, --spans, --rating or --text" in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1
    code, out = run(store, "label", "schema", "show", "tickets")
    assert code == 0 and "classes (single): billing, bug, other" in out
    code, out = run(store, "label", "queue", "create", "q", "--from", "data:tickets@v1", "--order", "random",
                    "--seed", "3", "--overlap", "2", "--json")  # fmt: skip
    assert code == 0, out
    made = json.loads(out)
    assert (made["source"], made["size"], made["order"], made["overlap"]) == ("data:tickets@v1", 8, "random", 2)
    code, out = run(store, "label", "queue", "create", "q2", "--from", "data:nosuch")
    assert code == 2 and "nosuch" in out
    code, out = run(store, "label", "queue", "list", "--json")
    assert [q["name"] for q in json.loads(out)] == ["q"]
    code, out = run(store, "label", "nosuch")
    assert code == 2 and "no label queue named 'nosuch'" in out


def test_labelling_in_the_terminal_through_stdin(store: Store, tickets: DatasetVersion) -> None:
    run(store, "label", "queue", "create", "q", "--from", "data:tickets")
    # 1 → billing, 2 → bug, s skips, u undoes the skip, 3 → other, x is refused, q quits.
    code, out = run(store, "label", "q", input="1\n2\ns\nu\n3\nx\nq\n")
    assert code == 0, out
    assert TICKETS[0] in out and "[1] billing  [2] bug  [3] other" in out
    assert "Undid your answer on item 3" in out and "Not stored: expected one of the classes" in out
    assert "`keel label annotate q` resumes" in out
    queue = get_queue(store, "q")
    assert [(lb.item_id, lb.value, lb.origin) for lb in list_labels(store, queue)] == [
        ("t0", "billing", "terminal"), ("t1", "bug", "terminal"), ("t2", "other", "terminal")]  # fmt: skip
    code, out = run(store, "label", "annotate", "q", input="2\n")  # resumes at item 4; end of input stops
    assert code == 0 and TICKETS[3] in out and TICKETS[0] not in out
    code, out = run(store, "label", "add", "q", "t7", "--label", "bug", "--json")
    assert code == 0 and json.loads(out)["value"] == "bug"
    code, out = run(store, "label", "add", "q", "t6", "--label", "refund")
    assert code == 2 and "expected one of the classes" in out
    code, out = run(store, "label", "list", "q", "--json")
    assert len(json.loads(out)) == 5
    code, out = run(store, "label", "annotate", "q", "--json", input="3\nnope\n:q\n")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["start", "item", "label", "item", "error", "item", "end"]
    assert events[1]["item_id"] == "t4" and events[1]["keys"] == {"1": "billing", "2": "bug", "3": "other"}
    assert events[2]["value"] == "other" and events[-1] == {"event": "end", "answered": 1, "reason": "quit"}


def test_free_text_and_span_answers_are_lines_with_colon_commands(store: Store) -> None:
    commit_tickets(store)
    run(store, "label", "schema", "set", "tickets", "--spans", "PER,ORG")
    run(store, "label", "queue", "create", "spans", "--from", "data:tickets", "--limit", "2")
    code, out = run(store, "label", "spans", input="ORG=invoice; ORG:0-2\n:s\n")
    assert code == 0, out
    labels = list_labels(store, get_queue(store, "spans"))
    assert [(lb.status, lb.value) for lb in labels] == [
        ("labelled", [{"start": 0, "end": 2, "label": "ORG"}, {"start": 3, "end": 10, "label": "ORG"}]),
        ("skipped", None),
    ]


def test_agreement_files_and_commit_commands(store: Store, tickets: DatasetVersion, tmp_path: Path) -> None:
    run(store, "label", "queue", "create", "q", "--from", "data:tickets", "--overlap", "2", "--limit", "4")
    queue = get_queue(store, "q")
    for position, (a, b) in enumerate([("billing", "billing"), ("bug", "bug"), ("bug", "other"), ("other", "other")]):
        record_label(store, queue, position, a, annotator="user:ann")
        record_label(store, queue, position, b, annotator="user:bob")
    code, out = run(store, "label", "agreement", "q", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["pairwise"][0]["items"] == 4 and report["confusion"]["matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    code, out = run(store, "label", "agreement", "q")
    assert "Cohen's kappa user:ann × user:bob" in out and "Krippendorff's alpha" in out
    exported, config = tmp_path / "tasks.json", tmp_path / "config.xml"
    code, out = run(store, "label", "export", "q", "--format", "label-studio", "-o", str(exported), "--config",
                    str(config))  # fmt: skip
    assert code == 0 and len(json.loads(exported.read_text())) == 4 and "<Choices" in config.read_text()
    run(store, "label", "queue", "create", "copy", "--from", "data:tickets", "--overlap", "2", "--limit", "4")
    code, out = run(store, "label", "import", "copy", str(exported), "--format", "label-studio", "--json")
    assert code == 0 and json.loads(out)["labels"] == 8
    code, out = run(store, "label", "import", "copy", str(tmp_path / "missing.json"), "--format", "argilla")
    assert code == 2 and "readable JSON" in out
    code, out = run(store, "label", "commit", "copy", "--to", "tickets", "--json")
    assert code == 0, out
    assert json.loads(out) == {"version": "tickets@v2", "new": True, "rows": 3, "resolve": "majority",
                               "left_out": {"tie": 1}}  # fmt: skip


def test_an_answer_given_survives_kill_9_and_the_session_resumes(store: Store) -> None:
    commit_tickets(store)
    record = reopen(store)
    try:
        run(store, "label", "schema", "set", "tickets", "--rating", "5")
        run(store, "label", "queue", "create", "q", "--from", "data:tickets")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        process = subprocess.Popen(
            [sys.executable, "-m", "keel", "-w", str(store.settings.workspace), "label", "q"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write(b"4\n")
        process.stdin.flush()
        queue = get_queue(record, "q")
        deadline = time.monotonic() + 120
        while not list_labels(record, queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdin.close()
        assert [lb.value for lb in list_labels(record, queue)] == [4]
        assert next_item(record, queue).position == 1  # type: ignore[union-attr]
    finally:
        record.close()
