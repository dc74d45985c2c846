"""What the test suite's shared set-ups save, per use: each pair measured alternately in the same run, in CPU time.

- a new SQLite workspace: `init_workspace` migrating a new database, against copying a migrated database first
  (tests/conftest.py's `workspace` and `store` fixtures);
- the CLI's command tree: built for each check, against built once (tests/unit/cli/test_cli_consistency.py);
- one `keel` command: as its own process, against in this process through Typer's CliRunner
  (tests/unit/cli/test_access_cli.py).

CPU time (this process's, plus its children's for the subprocess) does not count waiting for a core, so the
figures hold on a busy machine; the load average is printed beside them.

    python benchmarks/suite_fixtures.py [--rounds 20]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _pair(rounds: int, before: Callable[[], object], after: Callable[[], object]) -> dict[str, float]:
    spent = {"before": 0.0, "after": 0.0}
    for _ in range(rounds):
        for name, run in (("before", before), ("after", after)):
            started = _cpu()
            run()
            spent[name] += _cpu() - started
    return {f"{name}_cpu_s": round(total / rounds, 4) for name, total in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds

    import typer
    from typer.testing import CliRunner

    from keel.cli import app
    from keel.store import init_workspace

    scratch = Path(tempfile.mkdtemp(prefix="keel-suite-bench-"))
    template = scratch / "template"
    init_workspace(template).close()
    migrated = template / ".keel" / "keel.db"

    def fresh() -> None:
        init_workspace(Path(tempfile.mkdtemp(dir=scratch)) / "ws").close()

    def copied() -> None:
        root = Path(tempfile.mkdtemp(dir=scratch)) / "ws"
        (root / ".keel").mkdir(mode=0o700, parents=True)
        shutil.copyfile(migrated, root / ".keel" / "keel.db")
        opened = init_workspace(root)
        opened.audit_key  # noqa: B018 - made on first use, as the fixtures do
        opened.close()

    def tree() -> object:
        command = typer.main.get_command(app)
        command.load_all()  # type: ignore[attr-defined]
        return command

    built = tree()
    env = {**os.environ, "KEEL_WORKSPACE": str(template), "PYTHONPATH": os.pathsep.join(sys.path)}

    def process() -> None:
        command = [sys.executable, "-c", "from keel.cli import main; main()", "whoami", "--json"]
        subprocess.run(command, env=env, capture_output=True, check=True)

    def in_process() -> None:
        assert CliRunner().invoke(app, ["whoami", "--json"], env={"KEEL_WORKSPACE": str(template)}).exit_code == 0

    figures = {
        "workspace": _pair(rounds, fresh, copied),
        "cli_tree": _pair(rounds, tree, lambda: built),
        "keel_command": _pair(max(3, rounds // 4), process, in_process),
        "rounds": rounds,
        "load_average": round(os.getloadavg()[0], 2),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
