"""Referral directory API: staff search it (optionally from a case); admins maintain and verify it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AfterValidator, AwareDatetime
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.permissions import Permission
from app.accounts.deps import Auth, Staff, require
from app.cases.router import public_ids, visible_case
from app.cases.schemas import PublicId
from app.db.session import DbSession
from app.errors import NotFound
from app.referrals import service
from app.referrals.models import Organisation
from app.referrals.schemas import (
    AreaName,
    HoursOut,
    LanguageCode,
    OrganisationIn,
    OrganisationList,
    OrganisationMatch,
    OrganisationOut,
    OrganisationPatch,
    ServiceName,
    Window,
)

router = APIRouter(prefix="/organisations", tags=["referrals"])
Reader = Annotated[Staff, require(Permission.directory_read)]
Manager = Annotated[Staff, require(Permission.directory_manage)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such organisation."}}
INVALID: dict[int | str, dict[str, Any]] = {422: {"description": "Invalid input; nothing was changed."}}


def _plausible(moment: datetime | None) -> datetime | None:
    """Far-off years overflow time-zone arithmetic; nobody searches for them."""
    if moment is not None and not 2000 <= moment.year <= 2100:
        raise ValueError("must be a time between the years 2000 and 2100")
    return moment


def describe(organisation: Organisation, verifiers: dict[Any, str]) -> dict[str, Any]:
    return {
        "id": organisation.public_id,
        "name": organisation.name,
        "services": list(organisation.services),
        "languages": organisation.language_list,
        "hours": HoursOut(
            timezone=organisation.timezone,
            open_24_7=organisation.open_24_7,
            windows=[Window(**w) for w in organisation.opening_hours],
            known=organisation.open_24_7 or bool(organisation.opening_hours),
        ),
        "service_areas": list(organisation.service_areas),
        "intake_phone": organisation.intake_phone,
        "intake_url": organisation.intake_url,
        "accepts_direct_referrals": organisation.accepts_direct_referrals,
        "active": organisation.active,
        "verified": organisation.verified,
        "verified_on": organisation.verified_on,
        "verified_by": verifiers.get(organisation.verified_by_id),
        "updated_at": organisation.updated_at,
    }


async def _out(db: AsyncSession, organisation: Organisation) -> OrganisationOut:
    return OrganisationOut(**describe(organisation, await public_ids(db, {organisation.verified_by_id})))


async def _organisation(db: AsyncSession, public_id: str) -> Organisation:
    organisation = await db.scalar(select(Organisation).where(Organisation.public_id == public_id))
    if organisation is None:
        raise NotFound()
    return organisation


@router.get("", response_model=OrganisationList, responses=INVALID | {404: {"description": "No such case."}})
async def search_organisations(
    staff: Reader,
    db: DbSession,
    auth: Auth,
    need: ServiceName | None = None,
    language: LanguageCode | None = None,
    area: AreaName | None = None,
    open_now: Annotated[
        bool, Query(description="Only organisations open at the moment searched (now, or open_at).")
    ] = False,
    open_at: Annotated[
        AwareDatetime | None,
        AfterValidator(_plausible),
        Query(description="The moment for `open` (with a UTC offset, years 2000–2100); default now."),
    ] = None,
    case: Annotated[
        PublicId | None,
        Query(description="Derive the need (from the case's category) and the language ranked first."),
    ] = None,
    verified: Annotated[bool, Query(description="Only organisations an admin has verified.")] = False,
    include_inactive: Annotated[bool, Query(description="Admins: deactivated entries too.")] = False,
    page: Annotated[int, Query(ge=1, le=1_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OrganisationList:
    """Ranked: verified first, then those serving the language, then those open, then by name."""
    needs: list[str] = [need] if need else []
    rank_language = None
    if case is not None:
        found = await visible_case(db, staff.principal, case)
        if not needs:
            needs = service.needs_of(found)
        rank_language = found.language
    at = open_at or auth.clock.now()
    matches = await service.search(
        db,
        at=at,
        needs=needs,
        language=language,
        rank_language=rank_language,
        area=area,
        open_only=open_now,
        verified_only=verified,
        include_inactive=include_inactive and Permission.directory_manage in staff.permissions,
    )
    shown = matches[(page - 1) * page_size : page * page_size]
    verifiers = await public_ids(db, {m.organisation.verified_by_id for m in shown})
    return OrganisationList(
        items=[
            OrganisationMatch(
                **describe(m.organisation, verifiers), open=m.open, language_match=m.language_match
            )
            for m in shown
        ],
        page=page,
        page_size=page_size,
        total=len(matches),
        at=at,
        needs=needs,
        language=language or rank_language,
    )


@router.post(
    "",
    response_model=OrganisationOut,
    status_code=201,
    responses=INVALID | {409: {"description": "The name is taken."}},
)
async def create_organisation(
    body: OrganisationIn, staff: Manager, db: DbSession, auth: Auth
) -> OrganisationOut:
    """A new entry, unverified until an admin verifies it."""
    organisation = await service.create(db, auth.clock, body.model_dump(), actor=staff.principal.actor)
    return await _out(db, organisation)


@router.patch(
    "/{organisation_id}",
    response_model=OrganisationOut,
    responses=NOT_FOUND | INVALID | {409: {"description": "The name is taken."}},
)
async def update_organisation(
    organisation_id: PublicId, body: OrganisationPatch, staff: Manager, db: DbSession, auth: Auth
) -> OrganisationOut:
    """Changing the name, intake phone or URL, or the hours clears the verification."""
    organisation = await _organisation(db, organisation_id)
    changes = body.model_dump(exclude_unset=True)
    await service.update(db, auth.clock, organisation, changes, actor=staff.principal.actor)
    return await _out(db, organisation)


@router.post(
    "/{organisation_id}/verify",
    response_model=OrganisationOut,
    responses=NOT_FOUND | {409: {"description": "Deactivated, or no intake phone or URL to verify."}},
)
async def verify_organisation(
    organisation_id: PublicId, staff: Manager, db: DbSession, auth: Auth
) -> OrganisationOut:
    """Record that this admin checked the public details today."""
    organisation = await _organisation(db, organisation_id)
    await service.verify(db, auth.clock, organisation, staff.user, actor=staff.principal.actor)
    return await _out(db, organisation)


@router.delete("/{organisation_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
async def deactivate_organisation(
    organisation_id: PublicId, staff: Manager, db: DbSession, auth: Auth
) -> Response:
    """Deactivate: out of searches and texts, kept for the referrals that name it."""
    organisation = await _organisation(db, organisation_id)
    await service.deactivate(db, auth.clock, organisation, actor=staff.principal.actor)
    return Response(status_code=204)
