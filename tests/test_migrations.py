from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from app.db import migrate
from app.db.engine import create_database
from app.models import metadata
from tests.support.databases import TestDatabases


def _drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_downgrade_upgrade_and_no_drift(test_databases: TestDatabases) -> None:
    url = test_databases.empty("migrations")
    database = create_database(url)
    try:
        await migrate.upgrade(database)
        assert await migrate.is_at_head(database)
        async with database.engine.connect() as conn:
            assert await conn.run_sync(_drift) == []
            assert set(metadata.tables) <= await conn.run_sync(_tables)

        await migrate.downgrade(database, "base")
        async with database.engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        assert await migrate.current_revision(database) is None

        await migrate.upgrade(database)
        async with database.engine.connect() as conn:
            assert await conn.run_sync(_drift) == []
        assert await migrate.current_revision(database) == migrate.head_revision()
    finally:
        await database.dispose()
        test_databases.drop(url)


def test_revisions_are_dated_named_and_self_contained() -> None:
    from importlib.resources import files

    versions = files("migrations") / "versions"
    names = [p.name for p in versions.iterdir() if p.name.endswith(".py") and p.name != "__init__.py"]
    assert names
    for name in names:
        stamp, _, slug = name.partition("_")
        assert len(stamp) == len("2026-11-26-0619") and stamp[4] == "-" and slug, name
        source = (versions / name).read_text()
        assert "from app" not in source and "import app" not in source, name
        assert "def downgrade" in source, name
