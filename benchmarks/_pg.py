"""A private PostgreSQL schema for one benchmark run, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def postgres_schema_url(prefix: str = "keel_bench") -> Iterator[str | None]:
    """Yield a URL whose search_path is a fresh schema, or None when no server is configured."""
    base = os.environ.get("KEEL_BENCH_POSTGRES_URL") or os.environ.get("KEEL_TEST_POSTGRES_URL")
    if not base:
        yield None
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(base).set(drivername="postgresql+psycopg"))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
