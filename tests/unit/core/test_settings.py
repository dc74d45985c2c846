from __future__ import annotations

from pathlib import Path

import pytest

from keel.core.errors import ConfigError, KeelError, WorkspaceNotFoundError
from keel.core.settings import CONFIG_FILE, Settings, find_workspace, load_settings, workspace_template


def _workspace(root: Path, config: str = "version: 1\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / CONFIG_FILE).write_text(config)
    return root


def test_discovery_walks_up_like_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workspace(tmp_path / "ws")
    deep = ws / "data" / "raw"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_workspace() == ws.resolve()
    assert load_settings().workspace == ws.resolve()


def test_keel_workspace_variable_wins_over_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = _workspace(tmp_path / "here")
    there = _workspace(tmp_path / "there")
    monkeypatch.chdir(here)
    monkeypatch.setenv("KEEL_WORKSPACE", str(there))
    assert find_workspace() == there.resolve()
    monkeypatch.setenv("KEEL_WORKSPACE", str(tmp_path / "nowhere"))
    with pytest.raises(WorkspaceNotFoundError, match="KEEL_WORKSPACE points to .*nowhere"):
        find_workspace()


def test_no_workspace_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceNotFoundError) as caught:
        load_settings()
    assert "keel init" in str(caught.value)
    assert caught.value.exit_code == 2
    with pytest.raises(WorkspaceNotFoundError, match="expected a Keel workspace at"):
        load_settings(tmp_path)


def test_defaults(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws").resolve()
    settings = load_settings(ws)
    assert settings.resolved_database_url == f"sqlite:///{ws}/.keel/keel.db"
    assert settings.resolved_blob_url == str(ws / ".keel" / "blobs")
    assert settings.resolved_actor.startswith("local:")
    assert settings.source_of("database_url") == "the default"


def test_precedence_argument_environment_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workspace(tmp_path / "ws", "version: 1\nactor: file:a\nblob_url: from-file\nlog_level: INFO\n").resolve()
    monkeypatch.setenv("KEEL_ACTOR", "env:b")
    monkeypatch.setenv("KEEL_LOG_LEVEL", "ERROR")
    settings = load_settings(ws, log_level="DEBUG")
    assert settings.log_level == "DEBUG" and settings.source_of("log_level") == "an explicit argument"
    assert settings.actor == "env:b" and settings.source_of("actor") == "KEEL_ACTOR"
    assert settings.resolved_blob_url == str(ws / "from-file")
    assert settings.source_of("blob_url") == f"`blob_url` in {ws / CONFIG_FILE}"


def test_relative_sqlite_paths_are_relative_to_the_workspace(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws", "version: 1\ndatabase_url: sqlite:///meta/k.db\n").resolve()
    assert load_settings(ws).resolved_database_url == f"sqlite:///{ws}/meta/k.db"


def test_blob_options_from_json_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workspace(tmp_path / "ws")
    monkeypatch.setenv("KEEL_BLOB_OPTIONS", '{"endpoint_url": "http://127.0.0.1:9000"}')
    assert load_settings(ws).blob_options == {"endpoint_url": "http://127.0.0.1:9000"}


def test_every_bad_value_is_reported_at_once_with_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workspace(tmp_path / "ws", "version: 1\nlog_level: LOUD\ncolour: blue\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(ws, blob_options=["not", "a", "mapping"])
    message = str(caught.value)
    assert "log_level (from `log_level` in" in message and "'LOUD'" in message
    assert "colour (from `colour` in" in message and "Extra inputs are not permitted" in message
    assert "blob_options (from an explicit argument)" in message


def test_a_variable_that_must_hold_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workspace(tmp_path / "ws")
    monkeypatch.setenv("KEEL_BLOB_OPTIONS", "endpoint=x")
    with pytest.raises(
        ConfigError, match="^blob_options \\(from KEEL_BLOB_OPTIONS\\): expected JSON .* got 'endpoint=x'"
    ):
        load_settings(ws)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("version: 1\n  bad: [", "keel.yaml: expected YAML; line 2, column 6"),
        ("- a\n- b\n", "expected a mapping of settings; found a list"),
        ("version: 2\n", "this Keel reads version 1"),
        ("version: 1\nworkspace: /elsewhere\n", "remove the key"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, match: str) -> None:
    ws = _workspace(tmp_path / "ws", text)
    with pytest.raises(ConfigError, match=match):
        load_settings(ws)


def test_database_url_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workspace(tmp_path / "ws")
    monkeypatch.setenv("KEEL_DATABASE_URL", "::::")
    with pytest.raises(ConfigError, match="^KEEL_DATABASE_URL is not a database URL"):
        load_settings(ws)
    monkeypatch.setenv("KEEL_DATABASE_URL", "oracle://x@y/z")
    with pytest.raises(ConfigError, match="names the 'oracle' database"):
        load_settings(ws)
    monkeypatch.setenv("KEEL_DATABASE_URL", "postgresql://u@h/d")
    assert load_settings(ws).resolved_database_url == "postgresql://u@h/d"


def test_unparseable_database_url_error_hides_its_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workspace(tmp_path / "ws")
    monkeypatch.setenv("KEEL_DATABASE_URL", "postgres ql://keel:s3cr@t-Pa55@db:5432/keel")  # a space in the scheme
    with pytest.raises(ConfigError, match="^KEEL_DATABASE_URL is not a database URL") as raised:
        load_settings(ws)
    message = str(raised.value)
    assert "s3cr" not in message and "Pa55" not in message
    assert "postgres ql://keel:***@db:5432/keel" in message


def test_the_template_documents_every_setting() -> None:
    template = workspace_template()
    for name in Settings.model_fields:
        if name != "workspace":
            assert f"# {name}:" in template and f"KEEL_{name.upper()}" in template


def test_errors_carry_hints() -> None:
    error = KeelError("expected x; found y", hint="do z")
    assert str(error) == "expected x; found y; do z" and error.exit_code == 2


def test_a_megabyte_setting_is_shown_short_and_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _workspace(tmp_path / "ws")
    for name, value, where in [
        ("KEEL_LOG_LEVEL", "\x1b[2J" + "L" * 1_000_000, "log_level (from KEEL_LOG_LEVEL)"),
        ("KEEL_BLOB_OPTIONS", "\x1b]0;x\x07" + "{" * 1_000_000, "blob_options (from KEEL_BLOB_OPTIONS)"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as caught:
            load_settings(ws)
        monkeypatch.delenv(name)
        message = str(caught.value)
        assert len(message) < 1_000 and "\x1b" not in message and "\x07" not in message
        assert where in message and f"({len(value):,} characters)" in message
