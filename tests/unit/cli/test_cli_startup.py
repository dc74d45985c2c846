"""`keel --help` stays cheap: the root imports each command only when it runs (timed in benchmarks/cli_startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import typer
from typer.testing import CliRunner

from keel.cli import app
from keel.cli._app import COMMANDS, load_command

HEAVY = ("pyarrow", "torch", "transformers", "sqlalchemy", "numpy", "pandas", "keel.store", "keel.curate")


def _imported_after(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_the_cli_and_printing_help_import_no_heavy_library() -> None:
    assert _imported_after("import keel.cli") == []
    assert _imported_after("import keel") == []
    helped = "from keel.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _imported_after(helped) == []


def test_the_root_help_lists_every_command_with_its_own_summary() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name, (_, _, summary) in COMMANDS.items():
        command = load_command(name)
        assert command.name == name and (command.help or "").strip().splitlines()[0] == summary
        assert name in result.output


def test_commands_still_run_through_the_lazy_root() -> None:
    result = CliRunner().invoke(app, ["curate", "validate", "missing.yaml"])
    assert result.exit_code == 2 and "ConfigError" in result.output
    assert CliRunner().invoke(app, ["--version"]).output.startswith("keel ")
    assert isinstance(typer.main.get_command(app).get_command(None, "nosuch"), type(None))


def test_batch_commands_collect_rarely_and_servers_go_back_to_the_default_pace() -> None:
    # keel.cli.main raises the collector's threshold for batch commands; `keel serve` and `keel ui` call
    # server_collector() before their loop, or a request could wait on a scan of 100,000 young objects.
    code = (
        "import gc, sys; from keel.cli import _app, _context; import keel.cli._serve as s, keel.cli._ui as u; "
        "_app.app = lambda *a: print(gc.get_threshold()); _app.main(); "
        "_context.server_collector(); print(gc.get_threshold(), gc.get_freeze_count() > 0); "
        "import inspect; print(all('server_collector()' in inspect.getsource(f) for f in (s.serve, u.ui)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:3] == ["(100000, 20, 10)", "(700, 10, 10) True", "True"]
