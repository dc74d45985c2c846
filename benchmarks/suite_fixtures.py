"""What the test suite's shared set-ups save, per use: each pair measured alternately in the same run, in CPU time.

- a new SQLite workspace: `init_workspace` migrating a new database, against copying a migrated database first
  (tests/conftest.py's `workspace` and `store` fixtures);
- a new PostgreSQL workspace (with KEEL_TEST_POSTGRES_URL set): a new schema migrated by `init_workspace` (the
  `store` fixture before), against the session's recorded migration SQL replayed in it (tests/postgres.py, the
  fixture now), against a new database copied from a migrated one with `CREATE DATABASE ... TEMPLATE` (measured
  and dropped); each made, opened, closed and dropped, as a test's fixture does. Beside the test process's CPU:
  the server's (its processes' and their exited children's, so other users of the server count too; compare the
  variants within a run), the wall time, and the checkpoints the server was asked for;
- the CLI's command tree: built for each check, against built once (tests/unit/cli/test_cli_consistency.py);
- one `keel` command: as its own process, against in this process through Typer's CliRunner
  (tests/unit/cli/test_access_cli.py).

CPU time (this process's, plus its children's for the subprocess) does not count waiting for a core, so the
figures hold on a busy machine; the load average is printed beside them.

    [KEEL_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test] python benchmarks/suite_fixtures.py [--rounds 20]

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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/postgres.py


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


def _server_cpu() -> float:
    """CPU seconds of the local PostgreSQL server: its processes' own and their exited children's (backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile: its time is in the postmaster's children's time now
            continue
        comm, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm == "postgres":  # the postmaster and every backend and auxiliary process
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / tick


def _compare(rounds: int, variants: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Client CPU, server CPU and wall time per run of each variant, the variants taking turns."""
    spent = {name: [0.0, 0.0, 0.0] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            cpu, server, wall = _cpu(), _server_cpu(), time.perf_counter()
            run()
            totals = spent[name]
            totals[0] += _cpu() - cpu
            totals[1] += _server_cpu() - server
            totals[2] += time.perf_counter() - wall
    figures = {}
    for name, (cpu, server, wall) in spent.items():
        figures[f"{name}_cpu_s"] = round(cpu / rounds, 4)
        figures[f"{name}_server_cpu_s"] = round(server / rounds, 4)
        figures[f"{name}_wall_s"] = round(wall / rounds, 4)
    return figures


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _postgres_workspace(rounds: int, base_url: str, scratch: Path) -> dict[str, object]:
    """A PostgreSQL workspace made as the store fixture made it before, as it makes it now, and as it was not."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from tests.postgres import (
        admin_engine,
        create_schema,
        drop_schema,
        migrate_schema,
        migration_sql,
        schema_url,
        unique_name,
    )

    from keel.store import Database, init_workspace

    admin = admin_engine(base_url)
    sql = migration_sql(admin, base_url)

    def workspace(url: str) -> None:
        with _environ(KEEL_DATABASE_URL=url):
            opened = init_workspace(Path(tempfile.mkdtemp(dir=scratch)) / "ws")
            opened.audit_key  # noqa: B018 - made on first use, as the fixtures do
            opened.close()

    def migrated() -> None:  # the store fixture before: an empty schema, migrated by init_workspace
        schema = unique_name("keel_bench")
        create_schema(admin, schema)
        workspace(schema_url(base_url, schema))
        drop_schema(admin, schema)

    def replayed() -> None:  # the store fixture now
        schema = unique_name("keel_bench")
        create_schema(admin, schema)
        migrate_schema(admin, sql, schema)
        workspace(schema_url(base_url, schema))
        drop_schema(admin, schema)

    # Measured and dropped: a database per test, copied from a migrated template database.
    template = unique_name("keel_bench_template")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{template}"'))
    template_url = make_url(base_url).set(database=template).render_as_string(hide_password=False)
    db = Database(template_url)
    db.upgrade()
    db.dispose()  # PostgreSQL copies only a database nobody is connected to

    def database_copied() -> None:
        name = unique_name("keel_bench")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        workspace(make_url(base_url).set(database=name).render_as_string(hide_password=False))
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))

    variants = {"migrate_schema": migrated, "replay_migration": replayed, "template_database": database_copied}
    try:
        with admin.connect() as conn:
            checkpoints = conn.scalar(text("SELECT checkpoints_req FROM pg_stat_bgwriter"))
        figures = _compare(rounds, variants)
        with admin.connect() as conn:
            checkpoints = conn.scalar(text("SELECT checkpoints_req FROM pg_stat_bgwriter")) - checkpoints
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{template}"'))
        admin.dispose()
    return {
        **figures,
        "checkpoints_requested_per_round": round(checkpoints / rounds, 2),
        "rounds": rounds,
        "load_average": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only-postgres", action="store_true", help="measure the PostgreSQL workspaces only")
    args = parser.parse_args()
    rounds = args.rounds
    postgres_url = os.environ.get("KEEL_TEST_POSTGRES_URL")
    if args.only_postgres:
        if not postgres_url:
            print(
                "expected KEEL_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test); set it",
                file=sys.stderr,
            )
            sys.exit(2)
        scratch = Path(tempfile.mkdtemp(prefix="keel-suite-bench-"))
        figures = {"postgres_workspace": _postgres_workspace(rounds, postgres_url, scratch)}
        shutil.rmtree(scratch, ignore_errors=True)
        print(json.dumps(figures))
        return

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
        "postgres_workspace": _postgres_workspace(rounds, postgres_url, scratch) if postgres_url else None,
        "rounds": rounds,
        "load_average": round(os.getloadavg()[0], 2),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
