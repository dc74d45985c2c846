"""The registry under damage and abuse: repair by re-registering, symbolic links, pull destinations."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from keel.core.errors import BlobCorruptedError, InputError
from keel.registry import get_model, pull_model, register_model
from keel.store import LocalBlobStore, Store


def _model_dir(root: Path) -> Path:
    (root / "tokenizer").mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "model.safetensors").write_bytes(b"\x01" * 4096)
    (root / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}')
    return root


def test_re_registering_the_same_folder_repairs_a_damaged_file(store: Store, tmp_path: Path) -> None:
    source = _model_dir(tmp_path / "m")
    register_model(store, "chat", source)
    weights = next(f for f in get_model(store, "chat").files if f.path == "model.safetensors")
    assert isinstance(store.blobs, LocalBlobStore)
    blob = store.blobs.path(weights.digest)
    blob.chmod(0o600)
    blob.write_bytes(b"\xff" * 4096)  # same size: only the hash can tell
    with pytest.raises(BlobCorruptedError):
        pull_model(store, "chat", tmp_path / "broken")
    again, created = register_model(store, "chat", source)
    assert (again.ref, created) == ("chat@v1", False)
    pull_model(store, "chat", tmp_path / "out")
    assert hashlib.sha256((tmp_path / "out" / "model.safetensors").read_bytes()).hexdigest() == weights.digest
    # and the same bytes under another name repair rather than trust a damaged copy
    blob.chmod(0o600)
    blob.write_bytes(b"\xfe" * 4096)
    register_model(store, "copy", source)
    pull_model(store, "chat", tmp_path / "out2")


def test_register_refuses_links_that_leave_the_folder(store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_text("do not upload")
    source = _model_dir(tmp_path / "m")
    (source / "extra.bin").symlink_to(secret)
    with pytest.raises(InputError, match=r"extra.bin is a symbolic link to .*secret.key, outside the folder"):
        register_model(store, "chat", source)
    (source / "extra.bin").unlink()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("private")
    (source / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="linked is a symbolic link to .*elsewhere, outside the folder"):
        register_model(store, "chat", source)
    (source / "linked").unlink()
    (source / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InputError, match="which does not exist"):
        register_model(store, "chat", source)
    assert store.db.count_rows()["model_versions"] == 0


def test_links_inside_the_folder_are_stored_as_their_targets(store: Store, tmp_path: Path) -> None:
    source = _model_dir(tmp_path / "m")
    (source / "weights.safetensors").symlink_to("model.safetensors")
    (source / "tok").symlink_to("tokenizer", target_is_directory=True)
    (source / "tokenizer" / "loop").symlink_to("..", target_is_directory=True)  # back to the root: walked once
    register_model(store, "chat", source)
    paths = [f.path for f in get_model(store, "chat").files]
    assert {"weights.safetensors", "tok/tokenizer.json", "tokenizer/tokenizer.json"} <= set(paths)
    assert len(paths) == len(set(paths))


def test_pull_never_writes_through_links_or_over_folders(store: Store, tmp_path: Path) -> None:
    register_model(store, "chat", _model_dir(tmp_path / "m"))
    outside = tmp_path / "outside.json"
    outside.write_text("keep me")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "config.json").symlink_to(outside)
    with pytest.raises(InputError, match=r"config.json is a symbolic link .* does not write through links"):
        pull_model(store, "chat", dest, force=True)
    assert outside.read_text() == "keep me"
    (dest / "config.json").unlink()
    (dest / "config.json").mkdir()
    with pytest.raises(InputError, match="a directory is there"):
        pull_model(store, "chat", dest, force=True)
    (dest / "config.json").rmdir()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        pull_model(store, "chat", tmp_path / "a-file", force=True)
    linked = tmp_path / "linked-dest"
    linked.symlink_to(dest, target_is_directory=True)  # the destination itself may be a link
    pull_model(store, "chat", linked, force=True)
    assert (dest / "config.json").read_text() == '{"model_type": "llama"}'
    assert not os.path.islink(dest / "config.json")
