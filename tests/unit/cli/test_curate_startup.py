"""`keel curate run` loads what it runs: no Alembic on a current schema, no unused part of the registry or store.

Its CPU time is measured, not asserted, in benchmarks/curation_full_recipe.py and curation_vs_datatrove.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Modules `keel curate run --json` with a commit has no use for when the workspace's schema is current:
# Alembic's migration machinery, the prompt and model registries, doctor/gc, expectations, the text renderers,
# the steps the recipe does not name (the PII step loads keel.govern), and pandas (blocked: see block_pandas);
# nor the packages whose imports cost more than the little Keel used them for (pydantic-settings, python-ulid,
# filelock), nor a process pool for one worker.
UNUSED = (
    "pandas",
    "pydantic_settings",
    "ulid",
    "filelock",
    "concurrent.futures.process",
    "keel.curate._pii_step",
    "keel.curate._near_dedup",
    "keel.curate._quality_step",
    "keel.govern._keys",
    "alembic",
    "mako",
    "jinja2",
    "keel.registry._prompts",
    "keel.registry._models",
    "keel.registry._cards",
    "keel.store._maintenance",
    "keel.data._expectations",
    "keel.curate._explain",
    "keel.cli._render",
    "rich.progress",
)


def _modules_after_command(args: list[str], cwd: Path) -> tuple[dict[str, object], list[str]]:
    """Run `keel ARGS` in a fresh interpreter: its JSON output and the modules of UNUSED it had loaded."""
    probe = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: print(json.dumps([m for m in {UNUSED!r} if m in sys.modules]), file=sys.stderr))\n"
        "from keel.cli import main\n"
        f"main({args!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])


def test_curate_run_with_commit_loads_no_migration_machinery_nor_unused_parts(workspace: Path) -> None:
    lines = [json.dumps({"text": f"Ticket {i}: the order arrived late and the box was dented."}) for i in range(20)]
    (workspace / "t.jsonl").write_text("\n".join(lines) + "\n")
    (workspace / "r.yaml").write_text("inputs:\n  - path: t.jsonl\noutput: out\nsteps:\n  - exact_dedup: {}\n")
    report, loaded = _modules_after_command(["curate", "run", "r.yaml", "--json"], workspace)
    assert report["records_out"] == 20 and report["created"] is True
    assert report["version"]["ref"] == "r@v1"  # the command did start a run and commit, with the schema current
    assert loaded == []


def test_the_library_engine_imports_neither_the_store_nor_the_registry_through_keel_curate() -> None:
    probe = (
        "import sys\nfrom keel.curate import curate, load_recipe, source_node\n"
        "print(' '.join(m for m in ('keel.registry._runs', 'keel.data._versions', 'alembic') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == []
