"""Documentation that cannot drift: every setting and command is documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from keel.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"KEEL_{name.upper()}" in text, f"docs/configuration.md does not document KEEL_{name.upper()}"


def test_cli_reference_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_readme_gives_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "keel demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
