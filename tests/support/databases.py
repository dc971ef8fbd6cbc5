"""Test databases: a migrated template per run, cloned for each test that commits.

Backend: PostgreSQL when `HOTLINE_TEST_DATABASE_URL` is set (a server URL; every run creates its own
uniquely named databases and drops them at the end), otherwise SQLite files in a temp directory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from app.db import migrate
from app.db.engine import create_database

TEST_DATABASE_ENV = "HOTLINE_TEST_DATABASE_URL"


def postgres_server_url() -> str | None:
    return os.environ.get(TEST_DATABASE_ENV) or None


def _libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class TestDatabases:
    __test__ = False
    """Creates, clones and drops test databases for one pytest run."""

    workdir: Path
    server_url: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    created: list[str] = field(default_factory=list)
    template: str | None = None

    @property
    def backend(self) -> str:
        return "postgresql" if self.server_url else "sqlite"

    def _admin(self) -> psycopg.Connection:
        assert self.server_url
        return psycopg.connect(_libpq(self.server_url), autocommit=True)

    def url_for(self, name: str) -> str:
        if self.server_url:
            return _libpq(self.server_url, name)
        return f"sqlite:///{self.workdir / name}.db"

    def empty(self, label: str = "db") -> str:
        """A new, empty database (no schema) and its URL."""
        name = f"hotline_test_{self.run_id}_{label}_{uuid.uuid4().hex[:8]}"
        if self.server_url:
            with self._admin() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return self.url_for(name)

    def migrated_template(self) -> str:
        if self.template is None:
            url = self.empty("template")
            database = create_database(url)

            async def run() -> None:
                try:
                    await migrate.upgrade(database)
                finally:
                    await database.dispose()

            # A thread of its own: this may be first needed from inside a running event loop.
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(asyncio.run, run()).result()
            self.template = self.created[-1]
        return self.url_for(self.template)

    def fresh(self, label: str = "db") -> str:
        """A new database at the latest migration, cloned from the run's template."""
        template = self.migrated_template()
        name = f"hotline_test_{self.run_id}_{label}_{uuid.uuid4().hex[:8]}"
        if self.server_url:
            assert self.template
            with self._admin() as conn:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(self.template)
                    )
                )
        else:
            shutil.copyfile(make_url(template).database or "", self.workdir / f"{name}.db")
        self.created.append(name)
        return self.url_for(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database or ""
        if self.server_url:
            with self._admin() as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(name + suffix).unlink(missing_ok=True)

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self.drop(self.url_for(name))
        self.created.clear()
