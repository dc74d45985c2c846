"""The augmentation steps' generation cache and model access: keys name the endpoint, `-w` places the cache,
`keel govern erase` reaches cached answers, and a registered local model (the tiny model Keel builds) runs in
process in batches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.curate import build_steps
from keel.curate._generate import LocalModelBackend
from keel.data import records_to_table
from keel.data._records import make_record
from keel.serve import serve_in_thread, stub_upstream_app
from keel.store import open_store
from keel.train import TinyModelOptions, new_tiny_model

TEXTS = [
    "The gateway routes each request to the deployment that serves the model and records a trace of it.",
    "Write to jane.doe@example.com when a dataset version needs review before it is promoted to production.",
    "Evaluation suites compare a candidate model with the production model on the same cases before promotion.",
]
EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def two_stubs() -> Iterator[list[tuple[str, Any]]]:
    """Two stub OpenAI-compatible servers on 127.0.0.1 (each answers `"<model>: <prompt>"`)."""
    first, second = stub_upstream_app(), stub_upstream_app()
    with serve_in_thread(first) as a, serve_in_thread(second) as b:
        yield [(f"{a}/v1", first), (f"{b}/v1", second)]


def _table() -> Any:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    return records_to_table(make_record(t, f"file:///d/{i}.txt", i, t.encode(), now) for i, t in enumerate(TEXTS))


def _paraphrase(**params: Any) -> Any:
    (step,) = build_steps([("paraphrase", params)])
    return step


def test_two_endpoints_serving_one_model_name_do_not_share_cached_answers(
    tmp_path: Path, two_stubs: list[tuple[str, Any]]
) -> None:
    (url_a, stub_a), (url_b, stub_b) = two_stubs
    before_a, before_b = stub_a.state.requests, stub_b.state.requests
    _paraphrase(base_url=url_a, model="m", cache_dir=str(tmp_path)).apply(_table())
    assert stub_a.state.requests - before_a == 3
    step_b = _paraphrase(base_url=url_b, model="m", cache_dir=str(tmp_path))
    step_b.apply(_table())
    assert stub_b.state.requests - before_b == 3 and step_b.counters["cache.hits"] == 0  # not A's answers
    step_a = _paraphrase(base_url=url_a, model="m", cache_dir=str(tmp_path))
    step_a.apply(_table())
    assert stub_a.state.requests - before_a == 3 and step_a.counters["cache.hits"] == 3  # A's own, cached
    entries = [json.loads(p.read_text()) for p in tmp_path.glob("*/*.json")]
    assert sorted({e["request"]["backend"]["base_url"] for e in entries}) == sorted([url_a, url_b])


def _recipe(folder: Path, steps: str, output: str = "out") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "raw.jsonl").exists():  # rewritten, its mtime (the records' fetched_at) would change
        (folder / "raw.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    path = folder / f"{output}.yaml"
    path.write_text(f"inputs:\n  - path: raw.jsonl\noutput: {output}\nsteps:\n{steps}")
    return path


@pytest.mark.parametrize("commit", [True, False])
def test_dash_w_puts_the_cache_in_that_workspace_from_any_directory(
    workspace: Path, tmp_path: Path, two_stubs: list[tuple[str, Any]], commit: bool
) -> None:
    url, _ = two_stubs[0]
    recipe = _recipe(tmp_path / "project", f"  - paraphrase:\n      base_url: {url}\n      model: w{commit}\n")
    args = ["-w", str(workspace), "curate", "run", str(recipe), "--json"] + ([] if commit else ["--no-commit"])
    result = CliRunner().invoke(app, args)  # the cwd is an empty folder outside any workspace
    assert result.exit_code == 0, result.output
    assert len(list((workspace / ".keel" / "cache" / "augment").glob("*/*.json"))) == 3
    assert "cache.off_outside_workspace" not in json.dumps(json.loads(result.stdout)["steps"])


def test_erasure_removes_cached_generations_holding_the_value_and_only_those(
    workspace: Path, tmp_path: Path, two_stubs: list[tuple[str, Any]]
) -> None:
    url, _ = two_stubs[0]
    # Paraphrase first, then pii: the rows are redacted, but the cache kept the raw e-mail the model was sent.
    steps = f"  - paraphrase:\n      base_url: {url}\n      model: erase\n  - pii: {{}}\n"
    recipe = _recipe(tmp_path / "project", steps)
    result = CliRunner().invoke(app, ["-w", str(workspace), "curate", "run", str(recipe), "--json"])
    assert result.exit_code == 0, result.output
    cache = workspace / ".keel" / "cache" / "augment"
    holding = [p for p in cache.glob("*/*.json") if EMAIL in p.read_text()]
    assert len(holding) == 1 and len(list(cache.glob("*/*.json"))) == 3

    erase = ["-w", str(workspace), "govern", "erase", "--subject", f"email:{EMAIL}", "--json"]
    impact = CliRunner().invoke(app, erase)
    assert impact.exit_code == 0, impact.output
    assert json.loads(impact.stdout)["impact"]["cached_generations"] == 1 and holding[0].exists()
    done = CliRunner().invoke(app, [*erase, "--yes"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["certificate"]["certificate"]["done"]["cached_generations_deleted"] == 1
    left = list(cache.glob("*/*.json"))
    assert len(left) == 2 and not any(EMAIL in p.read_text() for p in left)
    again = CliRunner().invoke(app, erase)
    assert json.loads(again.stdout)["impact"]["cached_generations"] == 0


@pytest.fixture
def tiny_workspace(workspace: Path) -> Path:
    """A workspace with a tiny model Keel trains itself registered as `tiny@v1`."""
    import torch

    torch.set_num_threads(1)
    store = open_store(load_settings(workspace))
    try:
        corpus = [f"Note {i}: the model is small and the answer is short, number {i % 7}." for i in range(80)]
        new_tiny_model(store, "tiny", corpus, TinyModelOptions(vocab_size=384, hidden_size=32, num_layers=1,
                                                                num_heads=2, seq_len=48, steps=4))  # fmt: skip
    finally:
        store.close()
    return workspace


def test_paraphrase_with_a_registered_local_model_runs_in_process_in_batches(
    tiny_workspace: Path, tmp_path: Path
) -> None:
    backend = LocalModelBackend(tiny_workspace, "tiny@v1", batch_size=2)
    calls: list[int] = []
    generate = backend.model.generate

    def counted(**kwargs: Any) -> Any:
        calls.append(int(kwargs["input_ids"].shape[0]))
        return generate(**kwargs)

    backend.model.generate = counted
    requests = [
        {"model": "tiny@v1", "messages": [{"role": "user", "content": f"Say {t}"}], "temperature": 0.0,
         "max_tokens": 6, "seed": 0}
        for t in ("one", "two", "three", "four", "five")
    ]  # fmt: skip
    answers = backend.complete(requests)
    assert calls == [2, 2, 1] and len(answers) == 5 and all(isinstance(a, str) for a in answers)
    assert backend.identity["local_model"] == "tiny@v1" and backend.identity["manifest"]

    steps = "  - paraphrase:\n      model: tiny@v1\n      max_tokens: 6\n      temperature: 0\n      batch_size: 2\n"

    def run(output: str) -> Any:
        recipe = _recipe(tmp_path / "project", steps, output)
        result = CliRunner().invoke(app, ["-w", str(tiny_workspace), "curate", "run", str(recipe), "--no-commit"])
        assert result.exit_code == 0, result.output
        return pq.read_table(next((tmp_path / "project" / output / "data").glob("*.parquet")))

    table = run("first")
    first = [r for r in table.to_pylist() if r["augment_op"] == "paraphrase"]
    assert len(first) == 3 and all(r["parent_id"] for r in first)
    assert {json.loads(r["augment_detail"])["model"] for r in first} == {"tiny@v1"}
    cached = [json.loads(p.read_text()) for p in (tiny_workspace / ".keel" / "cache" / "augment").glob("*/*.json")]
    assert len(cached) == 3 and {c["request"]["backend"]["local_model"] for c in cached} == {"tiny@v1"}
    # A rerun into another folder answers from the cache and writes the same rows.
    assert run("second").to_pylist() == table.to_pylist()


def test_synthesize_with_a_local_model_counts_its_non_json_replies(tiny_workspace: Path) -> None:
    from keel.core.errors import InputError
    from keel.curate import SynthesizeOptions, synthesize
    from keel.data import commit_version

    store = open_store(load_settings(tiny_workspace))
    try:
        commit_version(store, "docs", _table())
        options = SynthesizeOptions(generator="model", model="tiny@v1", types=("factual",), per_doc=1, max_tokens=8)
        with pytest.raises(InputError, match=r"no question survived the filters \(3 generated .*malformed_json 3"):
            synthesize(store, "docs@v1", "docs-qa", options)
    finally:
        store.close()
    cached = [json.loads(p.read_text()) for p in (tiny_workspace / ".keel" / "cache" / "augment").glob("*/*.json")]
    assert len(cached) == 3
    assert {c["request"]["backend"]["local_model"] for c in cached} == {"tiny@v1"}


def test_an_endpoint_that_drops_every_connection_is_tried_once_not_once_per_request() -> None:
    """A server that accepts and closes at once: the first request and its two retries reach it, the rest do not."""
    import socket
    import threading

    from openai import APIConnectionError

    from keel.curate._generate import OpenAIBackend

    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def drop_connections() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed by the test
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=drop_connections, daemon=True).start()
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{server.getsockname()[1]}/v1", concurrency=4)
        requests = [{"model": "m", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 4}
                    for i in range(12)]  # fmt: skip
        answers = backend.complete(requests)
    finally:
        server.close()
    assert len(answers) == 12 and all(isinstance(a, APIConnectionError) for a in answers)
    assert len(accepted) == 3  # one request and the client's two retries; 36 before
