"""Schemas left by a killed test run are swept at the next run's start; a live run's schemas are kept.

Other engineers' suites use the same server while this runs: only the schemas this test makes are asserted on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.conftest import PostgresServer
from tests.postgres import claim_run, create_schema, drop_schema, schema_of, sweep_dead_runs, unique_name

ROOT = Path(__file__).resolve().parents[3]
# Another test run, as far as the server can tell: it claims a run, makes a test and a template schema, says their
# names and waits (alive) until it is killed.
OTHER_RUN = textwrap.dedent(
    """
    import sys
    from tests.postgres import admin_engine, claim_run, create_schema
    url = sys.argv[1]
    run = claim_run(url)
    admin = admin_engine(url)
    names = [run.name("keel_test"), run.name("keel_template")]
    for name in names:
        create_schema(admin, name)
    print(" ".join(names), flush=True)
    sys.stdin.readline()
    """
)


def _exists(server: PostgresServer, schema: str) -> bool:
    with server.admin.connect() as conn:
        return bool(conn.scalar(text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}))


@pytest.mark.postgres
def test_a_killed_runs_schemas_are_swept_and_a_live_runs_are_kept(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    legacy = unique_name("keel_test")  # an older suite's name: no run to check, so never swept
    lookalike = f"keel_test_rDEADBEEF_{'0' * 16}"  # upper-case hex: not a name a run makes (no run holds it either)
    others = (legacy, lookalike)
    for schema in others:
        create_schema(postgres_server.admin, schema)
    other = subprocess.Popen([sys.executable, "-c", OTHER_RUN, postgres_server.base_url], env=env, cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert other.stdout is not None
        theirs = other.stdout.readline().split()
        assert len(theirs) == 2 and all(_exists(postgres_server, s) for s in theirs), theirs
        mine = schema_of(postgres_url)
        # The other run is alive: its lock is held, nothing of it goes; nor this run's, nor other names.
        assert not set(sweep_dead_runs(postgres_server.run)) & {*theirs, mine, *others}
        assert all(_exists(postgres_server, s) for s in (*theirs, mine, *others))

        other.send_signal(signal.SIGKILL)  # as `kill -9` of pytest: no teardown
        other.wait(timeout=60)
        deadline = time.monotonic() + 60  # the server notices the closed connection and releases its lock
        while any(_exists(postgres_server, s) for s in theirs) and time.monotonic() < deadline:
            sweep_dead_runs(postgres_server.run)  # another run may sweep them first: what counts is that they go
            time.sleep(0.2)
        assert not any(_exists(postgres_server, s) for s in theirs)
        assert all(_exists(postgres_server, s) for s in (mine, *others))
    finally:
        if other.poll() is None:
            other.kill()
        other.communicate(timeout=60)
        for schema in others:
            drop_schema(postgres_server.admin, schema)


@pytest.mark.postgres
def test_a_run_number_is_held_by_one_live_run_only(postgres_server: PostgresServer) -> None:
    second = claim_run(postgres_server.base_url)
    try:
        assert second.number != postgres_server.run.number
        taken = second.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (0x6B65656C, postgres_server.run.number))
        assert taken.fetchone() == (False,)  # this run's number is held while it lives
        assert second.name().startswith(f"keel_test_r{second.number:08x}_")
        with pytest.raises(ValueError, match="expected the prefix keel_test or keel_template; found 'keel_bench'"):
            second.name("keel_bench")
    finally:
        second.close()
