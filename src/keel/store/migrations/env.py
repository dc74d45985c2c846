"""Alembic environment: Keel passes an open connection; developers may run `alembic` against a workspace."""

from alembic import context
from sqlalchemy import create_engine

from keel.store.schema import metadata

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # `alembic -c src/keel/store/alembic.ini revision --autogenerate` in a workspace
    from keel.core.settings import load_settings

    engine = create_engine(load_settings().resolved_database_url)
    with engine.begin() as conn:
        _run(conn)
