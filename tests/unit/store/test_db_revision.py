"""The schema's revision and head, read without Alembic, agree with Alembic's own answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from keel.store import Database
from keel.store._db import _MIGRATIONS, _SCRIPT_NAME, _alembic_config


def test_the_head_from_file_names_is_alembics_head_and_history_is_one_line() -> None:
    scripts = ScriptDirectory.from_config(_alembic_config())
    assert Database.head() == scripts.get_current_head()
    names = sorted(p.name for p in (_MIGRATIONS / "versions").glob("*.py"))
    assert names and all(_SCRIPT_NAME.fullmatch(name) for name in names), names
    previous = None
    for name in names:
        source = (_MIGRATIONS / "versions" / name).read_text()
        assert re.search(rf'^revision = "{name[:4]}"$', source, re.M), name
        assert re.search(rf"^down_revision = {previous and repr(previous).replace(chr(39), chr(34))}$", source, re.M)
        previous = name[:4]


def _alembic_revision(db: Database) -> str | None:
    with db.read() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_revision_matches_alembic_on_empty_old_and_current_databases(database_url: str) -> None:
    db = Database(database_url)
    assert db.revision() is None and _alembic_revision(db) is None
    with db.write() as conn:
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
    assert db.revision() == _alembic_revision(db) == "0003"
    assert db.upgrade() is True  # from an old revision, Alembic runs the rest
    assert db.revision() == _alembic_revision(db) == Database.head()
    assert db.upgrade() is False
    with db.write() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
    assert db.revision() is None and _alembic_revision(db) is None
    db.dispose()


def test_opening_a_current_database_imports_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    Database(url).upgrade()
    probe = (
        "import sys\nfrom keel.store import Database\n"
        f"db = Database({url!r})\nassert db.upgrade() is False and db.revision() == db.head()\n"
        "print('alembic' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "False"
