"""Alembic environment. Imports nothing from `app`: the caller hands over a connection and metadata.

`hotline db upgrade` and the service pass `config.attributes["connection"]` (a synchronous connection
obtained via `AsyncConnection.run_sync`). Run by hand, `sqlalchemy.url` from the ini or the
`HOTLINE_DATABASE_URL` environment variable is used with a synchronous driver.
"""

from __future__ import annotations

import os
from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine, pool
from sqlalchemy.types import TypeDecorator

config = context.config
target_metadata = config.attributes.get("target_metadata")


def _render_item(type_: str, obj: Any, _autogen_context: Any) -> str | bool:
    """Render the app's column types by their plain SQLAlchemy implementation (no app imports)."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def _configure_and_run(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite,  # SQLite can only ALTER through table copies
        compare_type=True,
        render_item=_render_item,
        transaction_per_migration=False,
    )
    if connection.dialect.name == "postgresql":
        # Never queue behind a long lock while holding our own: fail fast and retry the deploy.
        connection.exec_driver_sql("SET lock_timeout = '5s'")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = os.environ.get("HOTLINE_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set HOTLINE_DATABASE_URL to run migrations by hand")
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        _configure_and_run(conn)


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
