from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from typer.testing import CliRunner, Result

from keel.cli._context import KeelGroup, State
from keel.cli._prompt import prompt_app

runner = CliRunner()

# `prompt_app` is registered on the real root app in `keel.cli._app`; this mirrors its `root()`
# so the sub-app is tested exactly as it will be mounted.
app = typer.Typer(cls=KeelGroup, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", file_okay=False)] = None,
) -> None:
    ctx.obj = State(workspace)


app.add_typer(prompt_app, name="prompt")

PROMPT_FILE = """\
description: answers support questions
template: |
  Answer {{ question }} in a {{ tone }} tone.
  {% for e in examples %}Q: {{ e.input }} A: {{ e.output }}
  {% endfor %}
variables:
  question:
    description: the user's question
  tone:
    default: friendly
examples:
  - {input: "reset password?", output: "Use the link."}
"""


def _keel(workspace: Path, *args: str) -> Result:
    return runner.invoke(app, ["-w", str(workspace), "prompt", *args])


def _json(workspace: Path, *args: str) -> object:
    result = _keel(workspace, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_create_from_a_file_then_unchanged(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "support.yaml").write_text(PROMPT_FILE)
    result = _keel(workspace, "create", "support", str(tmp_path / "support.yaml"))
    assert result.exit_code == 0, result.output
    assert "Created prompt support@v1" in result.output
    result = _keel(workspace, "create", "support", str(tmp_path / "support.yaml"))
    assert result.exit_code == 0 and "support@v1 is unchanged" in result.output
    created = _json(workspace, "create", "support", str(tmp_path / "support.yaml"))
    assert isinstance(created, dict) and created["ref"] == "support@v1" and created["created"] is False


def test_create_from_template_option_and_show(workspace: Path) -> None:
    created = _json(workspace, "create", "greet", "--template", "Hi {{ who }} [bold]", "--var", "who")
    assert isinstance(created, dict) and created["created"] is True and created["version"] == 1
    assert created["variables"] == {"who": {"description": None, "required": True}}
    result = _keel(workspace, "show", "greet")
    assert result.exit_code == 0, result.output
    assert "greet@v1" in result.output and "Hi {{ who }} [bold]" in result.output  # no markup eaten
    assert "examples: 0" in result.output and "who" in result.output
    shown = _json(workspace, "show", "greet@v1")
    assert isinstance(shown, dict) and shown["template"] == "Hi {{ who }} [bold]" and shown["aliases"] == []


def test_create_input_errors_exit_2(workspace: Path, tmp_path: Path) -> None:
    result = _keel(workspace, "create", "p")
    assert result.exit_code == 2 and "InputError: expected either a prompt FILE or --template" in result.output
    result = _keel(workspace, "create", "p", "--template", "{{ a }}{{ b }}", "--var", "a")
    assert result.exit_code == 2
    assert "InputError: prompt 'p' has 1 problem: template: uses variables that are not declared: b" in result.output
    (tmp_path / "bad.yaml").write_text("template: 3\nextra: 1\n")
    result = _keel(workspace, "create", "p", str(tmp_path / "bad.yaml"))
    assert result.exit_code == 2 and "has 2 problems" in result.stderr and "Traceback" not in result.output


def test_render_with_vars_and_vars_file(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "support.yaml").write_text(PROMPT_FILE)
    assert _keel(workspace, "create", "support", str(tmp_path / "support.yaml")).exit_code == 0
    result = _keel(workspace, "render", "support", "--var", "question=what now?")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Answer what now? in a friendly tone.\nQ: reset password? A: Use the link.")
    (tmp_path / "vars.json").write_text(json.dumps({"question": "from file", "tone": "curt"}))
    rendered = _json(workspace, "render", "support@v1", "--vars-file", str(tmp_path / "vars.json"), "--var", "tone=dry")
    assert isinstance(rendered, dict) and rendered["ref"] == "support@v1"
    assert rendered["variables"] == {"question": "from file", "tone": "dry"}
    assert rendered["text"].startswith("Answer from file in a dry tone.")


def test_render_user_errors_exit_2(workspace: Path) -> None:
    assert _keel(workspace, "create", "p", "--template", "{{ a }}{{ b }}").exit_code == 0
    result = _keel(workspace, "render", "p", "--var", "a")
    assert result.exit_code == 2 and "InputError: expected --var NAME=VALUE; got 'a'" in result.output
    result = _keel(workspace, "render", "p", "--var", "zz=1")
    assert result.exit_code == 2
    assert "missing required variables: a, b; unexpected variables not declared by p@v1: zz" in result.output
    result = _keel(workspace, "render", "nope")
    assert result.exit_code == 2 and "NotFoundError: no prompt named 'nope'" in result.output
    assert _keel(workspace, "create", "evil", "--template", "{{ ''.__class__ }}").exit_code == 0
    result = _keel(workspace, "render", "evil")
    assert result.exit_code == 2 and "tried an unsafe operation" in result.output


def test_alias_rollback_history_and_list(workspace: Path) -> None:
    for text in ("v one", "v two"):
        assert _keel(workspace, "create", "p", "--template", text).exit_code == 0
    result = _keel(workspace, "alias", "p", "production", "v1", "--reason", "first")
    assert result.exit_code == 0 and "Moved p@production: (unset) → v1" in result.output
    moved = _json(workspace, "alias", "p", "production", "2", "--reason", "better", "--evidence", "eval:01X")
    assert isinstance(moved, dict) and (moved["from_version"], moved["to_version"]) == (1, 2)
    assert moved["evidence"] == "eval:01X"
    result = _keel(workspace, "rollback", "p", "production", "--reason", "regressed")
    assert result.exit_code == 0 and "Rolled back p@production: v2 → v1" in result.output
    assert _keel(workspace, "render", "p@production").stdout == "v one\n"
    moves = _json(workspace, "history", "p", "--alias", "production")
    assert isinstance(moves, list) and [(m["to_version"], m["reason"]) for m in moves] == [
        (1, "first"),
        (2, "better"),
        (1, "regressed"),
    ]
    result = _keel(workspace, "history", "p")
    assert result.exit_code == 0 and "regressed" in result.output
    listed = _json(workspace, "list")
    assert isinstance(listed, list) and [(s["name"], s["latest"], s["aliases"]) for s in listed] == [
        ("p", 2, {"production": 1})
    ]
    result = _keel(workspace, "list")
    assert result.exit_code == 0 and "production→v1" in result.output


def test_alias_user_errors_exit_2(workspace: Path) -> None:
    assert _keel(workspace, "create", "p", "--template", "x").exit_code == 0
    result = _keel(workspace, "alias", "p", "production", "v9", "--reason", "no")
    assert result.exit_code == 2 and "NotFoundError: prompt 'p' has versions v1..v1; got p@v9" in result.output
    result = _keel(workspace, "alias", "p", "Prod!", "1", "--reason", "no")
    assert result.exit_code == 2 and "InputError: expected an alias" in result.output
    result = _keel(workspace, "rollback", "p", "production", "--reason", "no")
    assert result.exit_code == 2 and "no earlier version to roll back to" in result.output
    result = _keel(workspace, "alias", "p", "production", "1")
    assert result.exit_code == 2 and "--reason" in result.output  # click's own usage error


def test_empty_list(workspace: Path) -> None:
    assert _json(workspace, "list") == []
    assert "No prompts yet" in _keel(workspace, "list").output
