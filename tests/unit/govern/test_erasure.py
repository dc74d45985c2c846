"""Data-subject erasure end to end: a seeded e-mail in datasets, an index, traces and a model's training set.

The subject is found through the keyed subject index the `pii` step fills (the text is only flagged,
so the e-mail is really in the shards), erased with a signed certificate, and then searched for in
the raw bytes of every blob (decoded too: Parquet, Arrow IPC, zstd, zip members) and of the database
files: it must be nowhere. A positive control runs the same search before the erasure.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from tests.unit.govern.blobscan import raw_blob_files
from typer.testing import CliRunner

from keel.cli._app import app
from keel.core.errors import InputError, NotFoundError
from keel.core.keyring import load_keyring, parse_subject
from keel.curate._pii_step import PiiParams, PiiStep
from keel.data import commit_version, get_version, load_version, make_record, records_to_table
from keel.govern._erasures import verify_certificate
from keel.index import VectorParams, build_index, get_index
from keel.monitor import Trace, TraceWriter, list_traces, record_feedback
from keel.pipeline._erase import erase_subjects, erasure_impact
from keel.registry import get_model, model_card
from keel.serve._deployments import create_deployment, list_deployments
from keel.store import Store, init_workspace
from keel.train import TinyModelOptions, new_tiny_model

SUBJECT = "kwabena.zorilla@example.com"
NEEDLES = (SUBJECT.encode(), b"zorilla")  # the e-mail, and the surname in it (BM25 keeps tokens)
FETCHED = datetime(2026, 12, 1, tzinfo=UTC)
TINY = TinyModelOptions(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, seq_len=32, steps=2)

TEXTS = {
    "r0": "Our office opens at nine and closes at five on weekdays.",
    "r1": f"Please send the signed contract to {SUBJECT} before Friday.",
    "r2": "The warehouse in Leeds ships orders twice a day.",
    "r3": "Refunds are issued within fourteen days of the purchase.",
    "r4": f"Ticket 4411: customer {SUBJECT.upper()} asked to change the delivery address.",
    "r5": "Write to support@example.org for questions about invoices.",
    "r6": "Passwords must be at least twelve characters long.",
    "r7": "The API rate limit is sixty requests per minute.",
    "r8": f"Escalated by {SUBJECT}: the parcel arrived damaged.",
    "r9": "Our new branch opens in Porto next spring.",
}


def _table(ids: list[str]) -> pa.Table:
    records = [
        make_record(TEXTS[i], f"file:///docs/{i}.txt", 0, TEXTS[i].encode(), FETCHED, record_id_override=i) for i in ids
    ]
    result = PiiStep(PiiParams(action="flag")).apply(records_to_table(records))
    return result.table


def _contains(data: bytes) -> bool:
    """Whether a needle is in the bytes or in anything they decode to (Parquet, Arrow IPC, zstd, zip)."""
    if any(n in data for n in NEEDLES):
        return True
    decoded: list[bytes] = []
    try:
        decoded.append(json.dumps(pq.read_table(pa.BufferReader(data)).to_pylist(), default=str).encode())
    except (pa.ArrowInvalid, OSError):
        pass
    try:
        decoded.append(json.dumps(pa.ipc.open_stream(data).read_all().to_pylist(), default=str).encode())
    except (pa.ArrowInvalid, OSError):
        pass
    try:
        decoded.append(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 26))
    except zstandard.ZstdError:
        pass
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            decoded += [archive.read(name) for name in archive.namelist()]
    return any(n.lower() in d.lower() for d in decoded for n in NEEDLES)


def _blob_bytes(store: Store) -> Iterator[tuple[str, bytes]]:
    for digest in store.blobs.digests():
        with store.blobs.open(digest) as reader:
            yield digest, reader.read()


def _database_bytes(store: Store) -> bytes:
    state = store.settings.state_dir
    return b"".join(p.read_bytes() for p in state.glob("keel.db*"))


def _seed(store: Store, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """3 records with the e-mail across people@v1 (r1, r4) and people@v2 (r1, r4, r8), an index, traces, a model."""
    monkeypatch.chdir(store.settings.workspace)  # the pii step finds the workspace key from here
    commit_version(store, "people", _table(["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"]))
    commit_version(store, "people", _table(["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"]))
    commit_version(store, "other", _table(["r2", "r3", "r9"]))  # shares no row with the subject
    build_index(store, "kb", "people@v2", vectors=VectorParams("hnsw", m=8, storage="sq8"))
    model = new_tiny_model(store, "tiny", "people@v1", TINY)
    create_deployment(store, "chat", model.ref, route={"backend": "transformers"})
    key = load_keyring(store.settings).subject_key(parse_subject(f"email:{SUBJECT}"))
    now = datetime.now(UTC)
    traces = [
        Trace(id=f"01JTRACE{i:018d}", at=now - timedelta(minutes=i), deployment="chat", operation="chat",
              status=200, latency_ms=5.0, model_version=model.ref, subjects=[key] if i < 5 else [])
        for i in range(7)
    ]  # fmt: skip
    # The first answer's recorded content carries the e-mail too (the trace_contents table).
    asked = {"messages": [{"role": "user", "content": f"I am {SUBJECT}"}]}
    traces[0] = replace(traces[0], request=asked, response="ok")
    TraceWriter(store).write(traces)
    record_feedback(store, traces[0].id, score="up")  # feedback on a trace of the subject
    record_feedback(store, traces[6].id, score="down", comment=f"mail me at {SUBJECT}")  # the value in its text
    return {"model": model, "key": key}


def _assert_erased_everywhere(store: Store) -> None:
    assert not [d for d, data in _blob_bytes(store) if _contains(data)]
    assert not [name for name, data in raw_blob_files(store) if _contains(data)]
    if store.db.dialect == "sqlite":
        assert not any(n in _database_bytes(store) for n in NEEDLES)


def _erase_and_check(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = _seed(store, monkeypatch)
    # Positive control: the search finds the subject before the erasure.
    assert any(_contains(data) for _, data in _blob_bytes(store))
    assert any(_contains(data) for _, data in raw_blob_files(store)) or "://" not in store.blobs.url

    impact = erasure_impact(store, [f"email:{SUBJECT}"])
    found = impact.to_json()
    assert found["dataset_versions"] == {"people@v1": 2, "people@v2": 3}
    assert found["records"] == 5 and found["index_versions"] == ["kb@v1"] and found["traces"] == 5
    assert found["models"] == [seeded["model"].node] and found["deployments"] == ["chat"]
    assert found["feedback"] == 2  # on a trace of the subject, and naming the subject in its comment

    impact, certificate = erase_subjects(store, [f"email:{SUBJECT}"])
    assert certificate is not None and verify_certificate(certificate)
    done = certificate.document["done"]
    assert [(r["old"], r["rows_before"], r["rows_after"]) for r in done["dataset_versions"]] == [
        ("people@v1", 8, 6),
        ("people@v2", 9, 6),
    ]
    assert done["index_versions"][0]["old"] == "kb@v1" and done["index_versions"][0]["new"] == "kb@v2"
    rebuilt = get_index(store, "kb@v2").manifest(store)["vectors"]  # built as the erased version was
    assert (rebuilt["kind"], rebuilt["m"], rebuilt["storage"]) == ("hnsw", 8, "sq8")
    assert done["feedback_deleted"] == 2
    assert done["traces_deleted"] == 5 and done["models_marked"] == [seeded["model"].node]
    assert done["deployments_marked"] == ["chat"] and done["shards_destroyed"]
    assert set(done["shards_destroyed"]) <= set(done["blobs_deleted"])
    assert certificate.document["subjects"] == [seeded["key"]]
    assert SUBJECT not in json.dumps(certificate.document)

    _assert_erased_everywhere(store)
    # New versions hold every other record; the old ones are gone with a tombstone in the marks.
    assert sorted(load_version(store, "people@v3").column("id").to_pylist()) == ["r0", "r2", "r3", "r5", "r6", "r7"]
    assert sorted(load_version(store, "people@v4").column("id").to_pylist()) == ["r2", "r3", "r5", "r6", "r7", "r9"]
    assert load_version(store, "other@v1").num_rows == 3
    with pytest.raises(NotFoundError):
        get_version(store, "people@v1")
    remaining = sorted(t.id for t in list_traces(store, limit=100))
    assert remaining == ["01JTRACE000000000000000005", "01JTRACE000000000000000006"]  # the two without the subject
    # The model and the deployment say so.
    model = get_model(store, "tiny@v1")
    assert model.erased_data and model.erased_data[0]["mark"] == "trained_on_erased_data"
    assert model_card(store, "tiny@v1")["erased_data"] == model.erased_data
    assert list_deployments(store)[0].erased_data
    runner = CliRunner()  # the faces say it too
    assert "trained on erased data" in runner.invoke(app, ["model", "show", "tiny@v1"]).output
    assert "Trained on erased data" in runner.invoke(app, ["model", "card", "tiny@v1"]).output
    listed = runner.invoke(app, ["deploy", "list", "--json"]).output
    assert json.loads(listed)[0]["erased_data"][0]["mark"] == "serves_erased_data"
    # Running it again finds nothing.
    again = erasure_impact(store, [f"email:{SUBJECT}"])
    assert again.empty and again.to_json()["records"] == 0
    assert erase_subjects(store, [f"email:{SUBJECT}"])[1] is None


@pytest.mark.timeout(600)
def test_a_seeded_subject_is_erased_everywhere_with_a_certificate(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _erase_and_check(store, monkeypatch)


@pytest.mark.s3
@pytest.mark.timeout(600)
def test_erasure_reaches_an_s3_blob_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_blob_url: str, s3_server: dict[str, Any]
) -> None:
    monkeypatch.setenv("KEEL_BLOB_URL", s3_blob_url)
    monkeypatch.setenv("KEEL_BLOB_OPTIONS", json.dumps(s3_server))
    store = init_workspace(tmp_path / "ws")
    try:
        _erase_and_check(store, monkeypatch)
    finally:
        store.close()


def test_the_cli_shows_the_impact_then_erases_by_record_id(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    runner = CliRunner()
    store = init_workspace(workspace)
    try:
        commit_version(store, "people", _table(["r0", "r1", "r2"]))
    finally:
        store.close()
    shown = runner.invoke(app, ["govern", "erase", "--record", "r1", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["impact"]["dataset_versions"] == {"people@v1": 1}
    assert json.loads(shown.output)["erased"] is False
    done = runner.invoke(app, ["govern", "erase", "--record", "r1", "--yes", "--json"])
    assert done.exit_code == 0, done.output
    certificate = json.loads(done.output)["certificate"]
    assert certificate["certificate"]["done"]["dataset_versions"][0]["new"] == "people@v2"
    audit = runner.invoke(app, ["audit", "log", "--action", "govern.erase", "--json"])
    assert certificate["sha256"] in audit.output
    again = runner.invoke(app, ["govern", "erase", "--record", "r1", "--yes"])
    assert again.exit_code == 0 and "Nothing found" in again.output


@pytest.mark.parametrize("subject", ["jane@example.com", "fax:123", "email:", ":x"])
def test_a_malformed_subject_is_one_line_exit_2(workspace: Path, monkeypatch: pytest.MonkeyPatch, subject: str) -> None:
    monkeypatch.chdir(workspace)
    result = CliRunner().invoke(app, ["govern", "erase", "--subject", subject])
    assert result.exit_code == 2
    assert "expected a subject as TYPE:VALUE" in result.output and "Traceback" not in result.output
    with pytest.raises(InputError):
        parse_subject(subject)


def test_spellings_of_one_subject_hash_alike_and_the_key_stays_out_of_the_database(store: Store) -> None:
    ring = load_keyring(store.settings)
    assert ring.subject_key(parse_subject("email: Jane@Example.COM")) == ring.subject_key(
        parse_subject("email:jane@example.com")
    )
    assert ring.subject_key(parse_subject("phone:+1 (415) 555-0100")) == ring.subject_key(
        parse_subject("phone:14155550100")
    )
    # Unicode: case-folded (ß → ss), and distinct from a look-alike ASCII address.
    assert ring.subject_key(parse_subject("email:STRAßE@Bücher.de")) == ring.subject_key(
        parse_subject("email:strasse@bücher.de")
    )
    assert ring.subject_key(parse_subject("email:jose@example.com")) != ring.subject_key(
        parse_subject("email:josé@example.com")
    )
    key_file = store.settings.resolved_govern_key_file
    assert key_file.stat().st_mode & 0o777 == 0o600
    if store.db.dialect == "sqlite":
        secret = json.loads(key_file.read_text())["subject"].encode()
        assert secret not in _database_bytes(store)
