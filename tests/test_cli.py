"""The `hotline` command as an operator runs it: clear one-line errors that change nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.cli import clean_environment, hotline
from tests.support.databases import TestDatabases

ROOT = Path(__file__).resolve().parent.parent


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert text in result.stderr


def test_every_command_has_help(tmp_path: Path) -> None:
    for command in ([], ["serve"], ["db"], ["db", "upgrade"], ["db", "grant"]):
        result = hotline(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "Usage: hotline" in result.stdout


def test_workers_above_one_on_sqlite_is_refused_before_touching_anything(tmp_path: Path) -> None:
    result = hotline("serve", "--workers", "2", cwd=tmp_path)
    assert_one_line_error(result, "--workers above 1 needs PostgreSQL")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HOTLINE_DATABASE_URL": "mysql://root@localhost/x"},
            "HOTLINE_DATABASE_URL: must start with sqlite",
        ),
        ({"HOTLINE_DATABASE_URL": "sqlite:///missing-dir/sub/x.db"}, "cannot connect to the database"),
        ({"HOTLINE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}, "cannot connect to the database"),
        ({"HOTLINE_ENV": "staging"}, "HOTLINE_ENV: Input should be 'development' or 'production'"),
    ],
)
def test_unusable_configuration_is_one_clear_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = hotline("db", "upgrade", cwd=tmp_path, env=env)
    assert_one_line_error(result, message)
    assert list(tmp_path.iterdir()) == []


def test_production_refuses_to_serve_with_each_problem_named(tmp_path: Path) -> None:
    result = hotline("serve", cwd=tmp_path, env={"HOTLINE_ENV": "production"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("hotline: refusing to start in production: ") for line in lines)
    assert any("HOTLINE_PUBLIC_URL must be https" in line for line in lines)
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_works_from_any_directory(tmp_path: Path, test_databases: TestDatabases) -> None:
    url = test_databases.empty("cli")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = hotline("db", "upgrade", cwd=elsewhere, env={"HOTLINE_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout
    again = hotline("db", "upgrade", cwd=elsewhere, env={"HOTLINE_DATABASE_URL": url})
    assert again.returncode == 0 and again.stdout == result.stdout


def test_db_grant_gives_the_service_role_table_privileges(
    tmp_path: Path, test_databases: TestDatabases
) -> None:
    url = test_databases.fresh("grant")
    if test_databases.backend != "postgresql":
        assert_one_line_error(
            hotline("db", "grant", "svc", cwd=tmp_path, env={"HOTLINE_DATABASE_URL": url}), "PostgreSQL only"
        )
        return
    role = f"hotline_svc_{test_databases.run_id}"
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        missing = hotline("db", "grant", "no_such_role_x", cwd=tmp_path, env={"HOTLINE_DATABASE_URL": url})
        assert_one_line_error(missing, "role no_such_role_x does not exist")
        result = hotline("db", "grant", role, cwd=tmp_path, env={"HOTLINE_DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        with psycopg.connect(url, autocommit=True) as conn:

            def can(privilege: str, table: str) -> bool:
                row = conn.execute(
                    "SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)
                ).fetchone()
                return bool(row and row[0])

            assert can("INSERT", "jobs") and can("UPDATE", "jobs") and can("DELETE", "jobs")
            assert can("SELECT", "alembic_version") and not can("UPDATE", "alembic_version")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_on_the_embedded_default_answers(tmp_path: Path) -> None:
    port = _free_port()
    environment = clean_environment()
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        assert response.status_code == 200
        assert (tmp_path / "hotline.db").exists()
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status reflects it.
    assert server.returncode in (0, -15), stderr
    assert '"msg": "service stopped"' in stderr
