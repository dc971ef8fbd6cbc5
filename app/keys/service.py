"""Loading the key file, and creating it on a first development start only.

Keys never live in the database. A development start with no key file creates one (0600) with a
loud warning, but never for a database that already holds audit entries: those were written under
keys that must be restored, not replaced. Production refuses a missing file and a file made by a
development start: one that says so, or one whose signing key the access log recorded as created
by a development start (`keys.file_created`), whatever the file says now (`recorded_as_development`,
checked at start-up by `app.main.open_keys`).
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEntry
from crypto.errors import KeyFileError
from crypto.keyfile import KeyMaterial, create_key_file, load_key_file
from crypto.signing import public_key_fingerprint

log = logging.getLogger("hotline.keys")


class KeyCustodyError(RuntimeError):
    """The keys cannot be used; the message is one line for the operator and never holds key material."""


async def database_holds_data(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(func.count()).select_from(AuditEntry).limit(1)))


async def recorded_as_development(session: AsyncSession, material: KeyMaterial) -> str | None:
    """A signing key id of this file that the access log recorded as created by a development start.

    Ids are matched as written in the file and as fingerprints of its public keys, so renaming a
    key id in the JSON does not hide it either. The file's own `development` flag is only a claim.
    """
    ids: set[str] = set()
    for key_id, public_key in material.checkpoint_verifier().public_keys_b64().items():
        ids.update((key_id, public_key_fingerprint(base64.b64decode(public_key))))
    created = await session.scalars(
        select(AuditEntry.details).where(AuditEntry.action == "keys.file_created")
    )
    for details in created:
        if isinstance(details, dict) and details.get("development") is True:
            if details.get("signing_key") in ids:
                return str(details["signing_key"])
    return None


async def load_or_create_keys(
    path: str, *, production: bool, session: AsyncSession
) -> tuple[KeyMaterial, bool]:
    """Return the key material and whether the file was created just now."""
    target = Path(path)
    if os.path.lexists(target):  # noqa: ASYNC240 — once, at start-up
        try:
            material = load_key_file(target)
        except KeyFileError as exc:
            raise KeyCustodyError(str(exc)) from None
        if production and material.development:
            raise KeyCustodyError(
                f"key file {target} was created by a development start; production needs keys made "
                "with `hotline keys init`"
            )
        return material, False
    if production:
        raise KeyCustodyError(
            f"key file {target} not found: create it once with `hotline keys init --file {target}` "
            "and set HOTLINE_KEYRING_FILE"
        )
    if await database_holds_data(session):
        raise KeyCustodyError(
            f"key file {target} not found but the database already holds data: restore the key file "
            "from its backup (a new one cannot read or vouch for existing records)"
        )
    try:
        material = create_key_file(target, development=True)
    except KeyFileError as exc:
        raise KeyCustodyError(str(exc)) from None
    log.warning(
        "DEVELOPMENT KEY FILE CREATED: keys for this database are in %s. Back it up; losing it loses "
        "every sealed record. Production refuses this file: use `hotline keys init`.",
        target,
    )
    return material, True
