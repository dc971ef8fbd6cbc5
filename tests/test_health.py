from __future__ import annotations

import os

import httpx
import pytest
from fastapi import FastAPI

from app.db.engine import create_database
from app.settings import Settings


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] is True


async def test_readyz_is_503_when_the_database_is_unreachable(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    working = app.state.database
    app.state.database = create_database("postgresql://nobody@127.0.0.1:1/none")
    try:
        response = await client.get("/readyz")
    finally:
        await app.state.database.dispose()
        app.state.database = working
    assert response.status_code == 503
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": False, "keyring": True}}


async def test_request_id_is_returned_and_unsafe_ones_replaced(client: httpx.AsyncClient) -> None:
    kept = await client.get("/healthz", headers={"X-Request-ID": "abcDEF123-req"})
    assert kept.headers["x-request-id"] == "abcDEF123-req"
    replaced = await client.get("/healthz", headers={"X-Request-ID": "<script>+15551234567</script>"})
    assert replaced.headers["x-request-id"] != "<script>+15551234567</script>"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_unknown_route_error_body_is_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope?name=Maria")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "http_404"
    assert "Maria" not in response.text


async def test_readyz_is_503_when_the_key_file_becomes_unsafe(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    os.chmod(settings.keyring_file, 0o644)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": True, "keyring": False}


def test_the_embedded_database_file_is_private(settings: Settings, app: object, backend: str) -> None:
    from sqlalchemy.engine import make_url

    if backend != "sqlite":
        pytest.skip("PostgreSQL's files belong to its server")

    path = make_url(settings.database_url).database or ""
    assert os.stat(path).st_mode & 0o077 == 0
