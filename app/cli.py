"""The `hotline` command. Every failure an operator can cause prints one clear line and exits non-zero."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from app.db.engine import Database, DatabaseConfigError, create_database
from app.settings import Settings, load_settings


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"hotline: error: {message}", err=True)
    sys.exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first.get("loc") else "setting"
        if not name.startswith(("HOTLINE_", "TWILIO_")):
            name = f"HOTLINE_{name}"
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        fail(f"{name}: {message}")


def run_with_database(settings: Settings, work: Callable[[Database], Coroutine[Any, Any, Any]]) -> Any:
    """Open the configured database, run `work`, and turn connection problems into one line."""

    async def runner() -> Any:
        try:
            database = create_database(
                settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
            )
        except DatabaseConfigError as exc:
            fail(str(exc))
        try:
            if not await database.ping(timeout=10):
                fail("cannot connect to the database at HOTLINE_DATABASE_URL")
            return await work(database)
        finally:
            await database.dispose()

    try:
        return asyncio.run(runner())
    except KeyboardInterrupt:
        fail("interrupted", code=130)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Confidential 24/7 hotline case-intake service."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to bind.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (PostgreSQL).",
)
def serve(host: str, port: int, workers: int) -> None:
    """Apply migrations (embedded SQLite default) and start the service."""
    import uvicorn

    from app.db import migrate
    from app.logging import configure_logging

    settings = settings_or_exit()
    problems = settings.production_problems()
    if problems:
        for problem in problems:
            click.echo(f"hotline: refusing to start in production: {problem}", err=True)
        sys.exit(2)
    if settings.is_sqlite and workers > 1:
        fail("--workers above 1 needs PostgreSQL: the embedded SQLite database serves one process")
    try:
        create_database(settings.database_url)  # validates the URL before anything else happens
    except DatabaseConfigError as exc:
        fail(str(exc))
    if settings.is_sqlite:

        async def upgrade(database: Database) -> None:
            await migrate.upgrade(database)

        run_with_database(settings, upgrade)
    configure_logging(settings.log_level)
    click.echo(f"hotline: serving on http://{host}:{port} ({settings.env.value})", err=True)
    uvicorn.run(
        "app.main:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        server_header=False,
    )


@cli.group()
def db() -> None:
    """Database schema and grants."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations (run as the owning role)."""
    from app.db import migrate

    settings = settings_or_exit()

    async def work(database: Database) -> str | None:
        await migrate.upgrade(database, revision)
        return await migrate.current_revision(database)

    current = run_with_database(settings, work)
    click.echo(f"hotline: database at revision {current}")


@db.command("grant")
@click.argument("role")
def db_grant(role: str) -> None:
    """Grant the service ROLE what it needs on PostgreSQL (owner-run)."""
    from app.db.grants import GrantError, apply_grants

    settings = settings_or_exit()
    if settings.is_sqlite:
        fail("db grant applies to PostgreSQL only; SQLite has no roles")

    async def work(database: Database) -> list[str]:
        return await apply_grants(database, role)

    try:
        statements = run_with_database(settings, work)
    except GrantError as exc:
        fail(str(exc))
    for statement in statements:
        click.echo(statement)
    click.echo(f"hotline: granted {role} the service privileges")


def main() -> None:
    cli(prog_name="hotline")


if __name__ == "__main__":
    main()
