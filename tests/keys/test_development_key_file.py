"""Production refuses a key file the access log recorded as created by a development start, whatever
the file's own `development` flag says now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from app.clock import FrozenClock
from app.db.engine import Database
from app.main import StartupError, create_app
from crypto.keyfile import create_key_file


async def start(app: FastAPI) -> None:
    async with app.router.lifespan_context(app):
        pass


async def no_problems(database: Database) -> list[str]:
    return []


@pytest.fixture(autouse=True)
def any_database_role(monkeypatch: pytest.MonkeyPatch) -> None:
    # The PostgreSQL test server's role is a superuser, which production refuses before the keys.
    monkeypatch.setattr("app.main.service_role_problems", no_problems)


def edit(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2))  # the file keeps its 0600 mode


@pytest.mark.parametrize("edits", ["flag", "flag_and_key_id"])
async def test_production_refuses_a_development_key_file_whose_flag_was_edited(
    edits: str, make_settings: Any, clock: FrozenClock, database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "keys.json"
    await start(create_app(make_settings(keyring_file=str(path)), clock=clock, database=database))
    signing_key = json.loads(path.read_text())["checkpoint_signing"]["current"]["id"]

    def pretend_production(document: dict[str, Any]) -> None:
        assert document["development"] is True
        document["development"] = False
        if edits == "flag_and_key_id":
            document["checkpoint_signing"]["current"]["id"] = "ed25519:0123456789abcdef"

    edit(path, pretend_production)
    production = make_settings(keyring_file=str(path), env="production", docs_enabled=False)
    with pytest.raises(StartupError) as refused:
        await start(create_app(production, clock=clock, database=database))
    message = str(refused.value)
    assert "\n" not in message and "created by a development start" in message
    assert f"the access log recorded its signing key {signing_key}" in message


async def test_production_starts_on_keys_made_for_it(
    make_settings: Any, clock: FrozenClock, database: Database, tmp_path: Path
) -> None:
    # A development start's entry is in the log, but for another file: this one is not refused.
    await start(
        create_app(make_settings(keyring_file=str(tmp_path / "dev.json")), clock=clock, database=database)
    )
    create_key_file(tmp_path / "prod.json")
    production = make_settings(keyring_file=str(tmp_path / "prod.json"), env="production", docs_enabled=False)
    await start(create_app(production, clock=clock, database=database))
