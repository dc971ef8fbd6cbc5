"""Alembic, configured in code so it works from any directory and from an installed wheel.

The `migrations` package ships as package data; its location is found through importlib, not the
current directory.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from app.db.engine import Database


def alembic_config() -> Config:
    location = files("migrations")
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option(
        "file_template",
        "%%(year)d-%%(month).2d-%%(day).2d-%%(hour).2d%%(minute).2d_%%(slug)s",
    )
    from app.models import metadata  # every model registered on the shared metadata

    config.attributes["target_metadata"] = metadata
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _run(connection: Connection, action: str, target: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, action)(config, target)


async def upgrade(database: Database, target: str = "head") -> None:
    async with database.engine.begin() as conn:
        await conn.run_sync(_run, "upgrade", target)


async def downgrade(database: Database, target: str) -> None:
    async with database.engine.begin() as conn:
        await conn.run_sync(_run, "downgrade", target)


def _current(connection: Connection) -> Any:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(database: Database) -> str | None:
    async with database.engine.connect() as conn:
        revision: str | None = await conn.run_sync(_current)
        return revision


async def is_at_head(database: Database) -> bool:
    return await current_revision(database) == head_revision()
