"""`keel scan` and the scan at registration: pickles that call, executables, safetensors headers."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from keel.cli._app import app
from keel.registry._models import UnsafeModelError, register_model, scan_model
from keel.registry._scan import scan_files
from keel.store import Store, events


class _Payload:
    """Unpickling this runs a shell command: the classic poisoned checkpoint."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > /tmp/keel-scan-should-never-run",))


def _model(folder: Path, weights: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    for name, data in weights.items():
        (folder / name).write_bytes(data)
    return folder


def _safetensors(tmp_path: Path) -> bytes:
    path = tmp_path / "good.safetensors"
    save_file({"w": np.ones((2, 3), dtype=np.float32), "b": np.zeros(3, dtype=np.float16)}, str(path))
    return path.read_bytes()


def test_a_pickle_with_an_os_system_payload_is_refused(store: Store, tmp_path: Path) -> None:
    evil = _model(tmp_path / "evil", {"pytorch_model.bin": pickle.dumps(_Payload())})
    with pytest.raises(UnsafeModelError, match=r"imports (posix|os)\.system"):
        register_model(store, "evil", evil)
    model, created = register_model(store, "evil", evil, allow_unsafe=True)
    assert created
    with store.db.read() as conn:
        audited = events(conn, action="model.register.unsafe")
    assert audited and audited[0].object_id == model.node
    _, report = scan_model(store, model.ref)
    assert not report.safe and report.findings[0].kind == "pickle_global"
    assert not Path("/tmp/keel-scan-should-never-run").exists()  # scanning never unpickles


def test_keel_scan_exits_2_on_the_poisoned_version_and_0_on_a_clean_one(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(workspace)
    runner = CliRunner()
    evil = _model(tmp_path / "evil", {"pytorch_model.bin": pickle.dumps(_Payload())})
    refused = runner.invoke(app, ["model", "register", "m", str(evil)])
    assert refused.exit_code == 2 and "refusing to register m" in refused.output
    assert "Traceback" not in refused.output
    assert runner.invoke(app, ["model", "register", "m", str(evil), "--allow-unsafe"]).exit_code == 0
    scanned = runner.invoke(app, ["scan", "m@v1", "--json"])
    assert scanned.exit_code == 2
    assert json.loads(scanned.output)["safe"] is False
    clean = _model(tmp_path / "clean", {"model.safetensors": _safetensors(tmp_path)})
    assert runner.invoke(app, ["model", "register", "m", str(clean)]).exit_code == 0
    ok = runner.invoke(app, ["scan", "m@v2"])
    assert ok.exit_code == 0 and "m@v2: safe" in ok.output


def test_an_innocent_pickle_passes(tmp_path: Path) -> None:
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0], "name": "layer"}))
    assert scan_files([("weights.pkl", path)]).safe


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (lambda d: struct.pack("<Q", 10**9) + d[8:], "the header claims"),
        (lambda d: struct.pack("<Q", 4) + b"nope" + d[12:], "not JSON"),
        (lambda d: d[:-4], "data section"),  # data section cut short
        (lambda d: d[:6], "8-byte header length"),
    ],
)
def test_a_malformed_safetensors_header_is_reported(tmp_path: Path, mutate: object, detail: str) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(mutate(_safetensors(tmp_path)))  # type: ignore[operator]
    report = scan_files([("model.safetensors", path)])
    assert [f.severity for f in report.findings] == ["suspicious"] and detail in report.findings[0].detail
    good = tmp_path / "good.safetensors"
    assert scan_files([("good.safetensors", good)]).findings == []


def test_an_executable_is_dangerous_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + b"\x00" * 64)
    report = scan_files([("tokenizer.json", path)])
    assert not report.safe and report.findings[0].kind == "executable"


def test_a_version_registered_unsafe_is_not_deployed_unless_allowed(store: Store, tmp_path: Path) -> None:
    from keel.serve import canary_deployment, create_deployment

    clean = _model(tmp_path / "clean", {"model.safetensors": _safetensors(tmp_path)})
    evil = _model(tmp_path / "evil", {"pytorch_model.bin": pickle.dumps(_Payload())})
    register_model(store, "m", clean)
    register_model(store, "m", evil, allow_unsafe=True)
    route = {"upstream": "http://127.0.0.1:9/v1"}
    with pytest.raises(UnsafeModelError, match="refusing to deploy m@v2"):
        create_deployment(store, "d", "m@v2", route=route)
    create_deployment(store, "d", "m@v1", route=route)
    with pytest.raises(UnsafeModelError, match="refusing to deploy m@v2"):
        canary_deployment(store, "d", "m@v2", weight=10)
    canary_deployment(store, "d", "m@v2", weight=10, allow_unsafe=True)
    with store.db.read() as conn:
        allowed = events(conn, action="deployment.allow_unsafe")
    assert [(e.object_id, e.details["model"]) for e in allowed] == [("deployment:d", "m@v2")]
