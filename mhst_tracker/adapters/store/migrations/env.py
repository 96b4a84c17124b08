"""Alembic environment: runs the store's migrations on an async engine.

:func:`mhst_tracker.adapters.store.database.upgrade` passes an open connection in
``config.attributes["connection"]``; batch mode lets the same revisions alter SQLite tables.
"""

from alembic import context
from sqlalchemy.engine import Connection

from mhst_tracker.adapters.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the store's migrations with `mhst-tracker db upgrade`")
_run(connection)
