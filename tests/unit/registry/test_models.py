from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from keel.core.errors import BlobCorruptedError, InputError, NotFoundError
from keel.registry import (
    ModelInfo,
    alias_model,
    get_model,
    list_models,
    model_card,
    model_history,
    pull_model,
    register_model,
    render_card_markdown,
    rollback_model,
    start_run,
)
from keel.store import LocalBlobStore, Store, events, verify, walk


def _model_dir(root: Path, weights: bytes = b"\x00" * 4096) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "model.safetensors").write_bytes(weights)
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}')
    return root


def test_register_versions_and_idempotence(store: Store, tmp_path: Path) -> None:
    v1, created = register_model(store, "chat", _model_dir(tmp_path / "m1"), info=ModelInfo(description="first"))
    assert created and v1.ref == "chat@v1" and v1.format == "hf" and v1.file_count == 3
    again, created_again = register_model(store, "chat", tmp_path / "m1")
    assert not created_again and again.ref == "chat@v1"
    v2, _ = register_model(store, "chat", _model_dir(tmp_path / "m2", b"\x01" * 4096))
    assert v2.ref == "chat@v2"
    # The tokenizer and config did not change: v2 stores only the new weights.
    assert store.db.count_rows()["blobs"] == 3 + 1 + 2  # v1 files + v1 manifest + new weights + v2 manifest
    latest = get_model(store, "chat")
    assert latest.version == 2 and [f.path for f in latest.files] == [
        "config.json",
        "model.safetensors",
        "tokenizer/tokenizer.json",
    ]
    assert get_model(store, "chat@v1").info == {"description": "first"}
    assert list_models(store) == [
        {"name": "chat", "latest": 2, "format": "hf", "updated_at": list_models(store)[0]["updated_at"], "aliases": {}}
    ]


def test_formats(store: Store, tmp_path: Path) -> None:
    gguf = tmp_path / "smol.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 100)
    assert register_model(store, "smol", gguf)[0].format == "gguf"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"a")
    assert register_model(store, "lora", adapter)[0].format == "peft-adapter"


def test_register_from_a_run_links_lineage_and_builds_a_card(store: Store, tmp_path: Path) -> None:
    register_model(store, "base", _model_dir(tmp_path / "base"))
    dataset = "dataset-version:" + "e" * 64
    with start_run("train", {"lr": 0.0002, "method": "lora"}, inputs=[dataset], seed=3, store=store) as run:
        run.log_metric("loss", 0.9)
        run.log_artifact(_model_dir(tmp_path / "out", b"\x02" * 10), name="model")
    model, _ = register_model(
        store,
        "chat",
        run_id=run.id,
        base_model="base@v1",
        info=ModelInfo(intended_use="Answer ACME support questions.", limitations="English only."),
    )
    assert [f.path for f in get_model(store, "chat@v1").files] == [
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer/tokenizer.json",
    ]
    with store.db.read() as conn:
        upstream = {h.node for h in walk(conn, model.node, "upstream")}
    assert upstream == {f"run:{run.id}", "model-version:base@v1", dataset}
    card = model_card(store, "chat@v1")
    assert card["training_data"] == [dataset]
    assert card["base_model"] == "base@v1"
    assert card["training"]["params"] == {"lr": 0.0002, "method": "lora"}
    assert card["training"]["metrics"] == {"loss": 0.9}
    assert card["training"]["environment"]["seed"] == 3
    assert card["intended_use"] == "Answer ACME support questions."
    markdown = render_card_markdown(card)
    assert "# Model card: chat@v1" in markdown and "English only." in markdown and f"`{dataset}`" in markdown
    bare = model_card(store, "base")
    assert bare["training"] is None and "Not stated" in bare["limitations"]
    assert "No training run is linked" in render_card_markdown(bare)


def test_aliases_history_and_rollback(store: Store, tmp_path: Path) -> None:
    for i in range(3):
        register_model(store, "chat", _model_dir(tmp_path / f"m{i}", bytes([i]) * 64))
    alias_model(store, "chat", "production", 1, reason="first release")
    alias_model(store, "chat", "production", 3, reason="better on the support suite", evidence="eval-result:01X")
    alias_model(store, "chat", "staging", 2, reason="trying v2")
    assert get_model(store, "chat@production").version == 3
    assert get_model(store, "chat@v3").aliases == ["production"]
    back = rollback_model(store, "chat", "production", reason="v3 regressed on refunds")
    assert (back.from_version, back.to_version) == (3, 1)
    assert get_model(store, "chat@production").version == 1
    moves = model_history(store, "chat")
    assert [(e.alias, e.from_version, e.to_version) for e in moves] == [
        ("production", None, 1),
        ("production", 1, 3),
        ("staging", None, 2),
        ("production", 3, 1),
    ]
    assert moves[1].evidence == "eval-result:01X" and moves[1].actor == store.actor
    assert [e.to_version for e in model_history(store, "chat", "staging")] == [2]
    alias_model(store, "chat", "staging", None, reason="done trying")
    with pytest.raises(NotFoundError, match="has no alias 'staging'"):
        get_model(store, "chat@staging")
    with store.db.read() as conn:
        assert len(events(conn, action="model.alias")) == 5
        assert verify(conn).ok


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("chat", "production", 9), NotFoundError, "has versions v1..v1"),
        (("nope", "production", 1), NotFoundError, "no model named 'nope'"),
        (("chat", "latest", 1), InputError, "expected an alias"),
        (("chat", "v2", 1), InputError, "expected an alias"),
        (("chat", "staging", None), NotFoundError, "no alias 'staging' to remove"),
    ],
)
def test_bad_alias_moves(store: Store, tmp_path: Path, args: tuple, error: type, match: str) -> None:  # type: ignore[type-arg]
    register_model(store, "chat", _model_dir(tmp_path / "m"))
    with pytest.raises(error, match=match):
        alias_model(store, *args, reason="because")
    with pytest.raises(InputError, match="reason"):
        alias_model(store, "chat", "production", 1, reason="  ")
    with pytest.raises(NotFoundError, match="no earlier version"):
        rollback_model(store, "chat", "production", reason="x")


def test_pull_restores_verified_files(store: Store, tmp_path: Path) -> None:
    source = _model_dir(tmp_path / "m")
    register_model(store, "chat", source)
    out = tmp_path / "pulled"
    pull_model(store, "chat@v1", out)
    for rel in ("config.json", "model.safetensors", "tokenizer/tokenizer.json"):
        assert (out / rel).read_bytes() == (source / rel).read_bytes()
    with pytest.raises(InputError, match="is not empty"):
        pull_model(store, "chat", out)
    pull_model(store, "chat", out, force=True)


def test_pull_refuses_a_corrupted_file(store: Store, tmp_path: Path) -> None:
    register_model(store, "chat", _model_dir(tmp_path / "m"))
    weights = next(f for f in get_model(store, "chat").files if f.path == "model.safetensors")
    assert isinstance(store.blobs, LocalBlobStore)
    path = store.blobs.path(weights.digest)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(b"\xff" * 4096)
    with pytest.raises(BlobCorruptedError, match=weights.digest):
        pull_model(store, "chat", tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert hashlib.sha256(path.read_bytes()).hexdigest() != weights.digest


def test_register_input_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        register_model(store, "chat", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        register_model(store, "chat", tmp_path / "empty")
    with pytest.raises(InputError, match="model name"):
        register_model(store, "bad name", tmp_path)
    with pytest.raises(InputError, match="PATH"):
        register_model(store, "chat")
    with pytest.raises(NotFoundError, match="no run"):
        register_model(store, "chat", run_id="01NOPE")
    with start_run("train", {}, store=store) as run:
        pass
    with pytest.raises(InputError, match="logged no artifacts"):
        register_model(store, "chat", run_id=run.id)
    assert store.db.count_rows()["model_versions"] == 0


def test_a_move_that_changes_nothing_is_refused(store: Store, tmp_path: Path) -> None:
    register_model(store, "chat", _model_dir(tmp_path / "m"))
    alias_model(store, "chat", "production", 1, reason="release")
    with pytest.raises(InputError, match="already points at v1"):
        alias_model(store, "chat", "production", 1, reason="again")
    with pytest.raises(InputError, match="versions count from v1"):
        get_model(store, "chat@v0")
    assert len(model_history(store, "chat")) == 1
