"""The access broker: policy → live key → audit → commit → decrypt, and nothing otherwise."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest
from fastapi.encoders import jsonable_encoder
from sqlalchemy import delete, event, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.access.content import AuditedRefusal, ContentAccess, check_content
from app.access.models import BreakGlassGrant
from app.access.policy import Principal, Purpose
from app.accounts.models import User
from app.audit.models import AuditEntry
from app.cases.models import Case
from app.cases.service import add_note, notes_of
from app.errors import InvalidInput, NotFound
from app.keys.models import DataKeyRecord
from app.keys.sealed import PlaintextAssignment, Sealed
from app.publicid import new_public_id
from crypto.errors import DecryptionError
from tests.support.factories import Services, make_case, make_user, principal_of, staff_reveal

FIELDS = {"caller_name": "Rosa Canary-Quispe", "a_number": "A012345678", "code_word": "girasol"}


async def audit_rows(services: Services) -> list[AuditEntry]:
    async with services.database.sessionmaker() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


async def setup_case(services: Services) -> tuple[Principal, Principal, Principal, Principal, str]:
    async with services.database.sessionmaker() as session, session.begin():
        volunteer = await make_user(session, services)
        other = await make_user(session, services)
        supervisor = await make_user(session, services, roles="supervisor")
        admin = await make_user(session, services, roles="admin")
        case = await make_case(session, services, assignee=volunteer, fields=FIELDS)
        public_id = case.public_id
    return (
        principal_of(volunteer),
        principal_of(other),
        principal_of(supervisor),
        principal_of(admin),
        public_id,
    )


async def load_case(session, public_id: str) -> Case:
    return (await session.scalars(select(Case).where(Case.public_id == public_id))).one()


async def test_assigned_volunteer_reads_and_the_read_is_audited_first(services: Services) -> None:
    volunteer, *_, public_id = await setup_case(services)
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        revealed = await staff_reveal(
            services.broker, session, volunteer, case, ["caller_name", "a_number"], Purpose.intake
        )
    assert revealed.values == {"caller_name": "Rosa Canary-Quispe", "a_number": "A012345678"}
    entry = (await audit_rows(services))[-1]
    assert (entry.action, entry.actor_id, entry.object_id, entry.fields, entry.purpose, entry.outcome) == (
        "case.reveal",
        volunteer.id,
        public_id,
        "a_number,caller_name",
        "intake",
        "ok",
    )


@pytest.mark.parametrize("who", ["other_volunteer", "supervisor_without_grant", "admin", "system"])
async def test_everyone_else_is_denied_as_not_found_and_audited(services: Services, who: str) -> None:
    _, other, supervisor, admin, public_id = await setup_case(services)
    principal = {
        "other_volunteer": other,
        "supervisor_without_grant": supervisor,
        "admin": admin,
        "system": Principal.system("routing"),
    }[who]
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        with pytest.raises(NotFound):
            await staff_reveal(services.broker, session, principal, case, ["caller_name"], Purpose.intake)
    entry = (await audit_rows(services))[-1]
    assert (entry.action, entry.actor_id, entry.outcome) == ("case.reveal", principal.id, "denied")


async def test_supervisor_reads_only_with_an_active_break_glass_grant(services: Services) -> None:
    _, _, supervisor, _, public_id = await setup_case(services)
    async with services.database.sessionmaker() as session, session.begin():
        case = await load_case(session, public_id)
        grant = BreakGlassGrant(
            public_id=new_public_id("BG"),
            case_id=case.id,
            supervisor_id=supervisor.user_id,
            created_at=services.clock.now(),
            expires_at=services.clock.now() + timedelta(minutes=30),
        )
        await services.sealer.seal(session, grant, "reason", "caller in danger, assignee unreachable")
        session.add(grant)
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        revealed = await staff_reveal(
            services.broker, session, supervisor, case, ["code_word"], Purpose.break_glass
        )
    assert revealed.values == {"code_word": "girasol"}
    assert (await audit_rows(services))[-1].details == {"break_glass": True}
    services.clock.advance(timedelta(minutes=31))  # the grant is time-boxed
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        with pytest.raises(NotFound):
            await staff_reveal(services.broker, session, supervisor, case, ["code_word"], Purpose.break_glass)


async def test_system_purposes_open_only_their_fields(services: Services) -> None:
    volunteer, *_, public_id = await setup_case(services)

    async def attempt(principal: Principal, attribute: str) -> str | None:
        async with services.database.sessionmaker() as session:
            case = await load_case(session, public_id)
            return await services.broker.reveal_for_system(
                session,
                principal,
                case,
                attribute,
                purpose=Purpose.code_word_check,
                object_type="case",
                object_id=public_id,
            )

    assert await attempt(Principal.system("code-word"), "code_word") == "girasol"
    with pytest.raises(NotFound):
        await attempt(Principal.system("code-word"), "caller_name")
    with pytest.raises(NotFound):  # staff cannot borrow system purposes
        await attempt(volunteer, "code_word")
    outcomes = [(e.action, e.outcome) for e in (await audit_rows(services))[-3:]]
    assert outcomes == [("system.reveal", "ok"), ("system.reveal", "denied"), ("system.reveal", "denied")]


async def test_bad_reveal_requests_are_refused_before_anything(services: Services) -> None:
    volunteer, *_, public_id = await setup_case(services)
    before = len(await audit_rows(services))
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        with pytest.raises(InvalidInput):
            await staff_reveal(services.broker, session, volunteer, case, ["status"], Purpose.intake)
        with pytest.raises(InvalidInput):
            await staff_reveal(
                services.broker, session, volunteer, case, ["caller_name"], Purpose.dial_volunteer
            )
    assert len(await audit_rows(services)) == before


async def test_fail_closed_when_the_audit_insert_fails(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    volunteer, *_, public_id = await setup_case(services)
    before = len(await audit_rows(services))
    from app.audit import service as audit_service

    # The audit row's INSERT is rejected by the database (NOT NULL on entry_hash).
    monkeypatch.setattr(audit_service, "entry_hash", lambda prev, body: None)
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        with pytest.raises(IntegrityError) as caught:
            await staff_reveal(services.broker, session, volunteer, case, ["caller_name"], Purpose.intake)
    monkeypatch.undo()
    assert "Canary" not in repr(caught.value) and "Canary" not in str(caught.value)
    assert len(await audit_rows(services)) == before


async def test_fail_closed_when_commit_fails_after_the_audit_row_is_written(services: Services) -> None:
    volunteer, *_, public_id = await setup_case(services)
    before = len(await audit_rows(services))
    written: list[int] = []

    def fail_after_audit(session: Session) -> None:
        # Registered after the audit hook: the audit row has been inserted in this transaction.
        count = session.execute(text("SELECT count(*) FROM audit_entries")).scalar()
        written.append(int(count or 0))
        raise RuntimeError("disk full")

    event.listen(Session, "before_commit", fail_after_audit)
    result = None
    try:
        async with services.database.sessionmaker() as session:
            case = await load_case(session, public_id)
            with pytest.raises(RuntimeError, match="disk full"):
                result = await staff_reveal(
                    services.broker, session, volunteer, case, ["caller_name"], Purpose.intake
                )
    finally:
        event.remove(Session, "before_commit", fail_after_audit)
    assert written == [before + 1]
    assert result is None
    assert len(await audit_rows(services)) == before


async def test_destroyed_data_key_reads_as_erased(services: Services) -> None:
    volunteer, *_, public_id = await setup_case(services)
    async with services.database.sessionmaker() as session, session.begin():
        case = await load_case(session, public_id)
        await session.execute(
            update(DataKeyRecord)
            .where(DataKeyRecord.subject_id == case.id)
            .values(wrapped=None, destroyed_at=services.clock.now())
        )
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        revealed = await staff_reveal(
            services.broker, session, volunteer, case, ["caller_name"], Purpose.intake
        )
    assert revealed.values == {"caller_name": None} and revealed.erased == ["caller_name"]


async def test_notes_are_revealed_in_one_audited_batch(services: Services) -> None:
    volunteer, *_, public_id = await setup_case(services)
    async with services.database.sessionmaker() as session, session.begin():
        case = await load_case(session, public_id)
        author = await session.get(User, volunteer.user_id)
        for body in ("first call: husband detained", "second call: hearing moved"):
            await add_note(
                session,
                services.sealer,
                services.clock,
                case,
                author=author,
                actor=volunteer.actor,
                body=body,
            )
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        notes = await notes_of(session, case)
        access = await check_content(session, services.clock, volunteer, case)
        revealed = await services.broker.reveal_content(
            session,
            access,
            purpose=Purpose.intake,
            rows=[(str(i), note, "body") for i, note in enumerate(notes)],
            audit_fields=["notes"],
        )
    assert [revealed.values[str(i)] for i in range(2)] == [
        "first call: husband detained",
        "second call: hearing moved",
    ]
    entry = (await audit_rows(services))[-1]
    assert (entry.action, entry.fields, entry.details) == ("case.reveal", "notes", {"count": 2})


async def test_no_staff_reveal_without_the_content_capability(services: Services) -> None:
    """Every staff reveal needs the ContentAccess that only check_content() makes: the broker
    refuses a principal, a forged capability, and staff on the system path."""
    volunteer, other, *_, public_id = await setup_case(services)
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        with pytest.raises(TypeError):
            await services.broker.reveal_case(session, volunteer, ["caller_name"], Purpose.intake)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ContentAccess(case, volunteer, False)
        with pytest.raises(TypeError):
            await services.broker.reveal_rows(
                session,
                volunteer,
                [case],
                "caller_name",
                purpose=Purpose.intake,
                action="case.reveal",
                object_type="case",
                object_id=public_id,
            )
        with pytest.raises(AuditedRefusal):
            await check_content(session, services.clock, other, case)
    before = len(await audit_rows(services))
    assert before > 0 and all(
        e.action != "case.reveal" or e.outcome == "denied" for e in await audit_rows(services)
    )


async def test_sealed_values_are_opaque_and_plaintext_cannot_be_assigned(services: Services) -> None:
    _, *_, public_id = await setup_case(services)
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        value = case.caller_name
        assert isinstance(value, Sealed)
        assert repr(value) == str(value) == "<Sealed>"
        assert "Rosa" not in repr(case.__dict__)
        with pytest.raises(TypeError):
            pickle.dumps(value)
        with pytest.raises((TypeError, ValueError)):
            jsonable_encoder({"name": value})
        with pytest.raises(PlaintextAssignment):
            case.caller_name = "Rosa"  # type: ignore[assignment]
        with pytest.raises(PlaintextAssignment):
            case.code_word = b"raw bytes"  # type: ignore[assignment]


async def test_ciphertext_moved_to_another_row_column_or_case_fails(services: Services) -> None:
    volunteer, *_, public_id = await setup_case(services)
    async with services.database.sessionmaker() as session, session.begin():
        author = await session.get(User, volunteer.user_id)
        other_case = await make_case(
            session, services, assignee=author, fields={"caller_name": "Someone Else"}
        )
        other_id = other_case.public_id
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        other = await load_case(session, other_id)
        stolen_name = case.caller_name
        # Another column of the same row: the field id is bound into the ciphertext.
        case.country_of_origin = stolen_name
        with pytest.raises(DecryptionError):
            await staff_reveal(
                services.broker, session, volunteer, case, ["country_of_origin"], Purpose.intake
            )
    async with services.database.sessionmaker() as session:
        other = await load_case(session, other_id)
        case = await load_case(session, public_id)
        other.caller_name = case.caller_name  # another row and subject
        with pytest.raises(DecryptionError):
            await staff_reveal(services.broker, session, volunteer, other, ["caller_name"], Purpose.intake)


async def test_a_key_whose_creation_rolled_back_is_never_sealed_with(services: Services) -> None:
    """A data key created in a transaction that rolls back was never recorded: sealing with it
    from memory afterwards would make the value unreadable for good (found by the 200-call surge:
    a volunteer's leg SID sealed under such a key could not be hung up)."""
    volunteer, *_, public_id = await setup_case(services)
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        case_id = case.id
        await session.execute(delete(DataKeyRecord).where(DataKeyRecord.subject_id == case_id))
        await session.commit()
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        await services.sealer.seal(session, case, "caller_name", "first try")  # creates the key
        await session.rollback()  # e.g. the webhook's work cancelled at its deadline
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        await services.sealer.seal(session, case, "caller_name", "Rosa Canary-Quispe")
        await session.commit()
    async with services.database.sessionmaker() as session:
        case = await load_case(session, public_id)
        revealed = await staff_reveal(
            services.broker, session, volunteer, case, ["caller_name"], Purpose.intake
        )
    assert revealed.values == {"caller_name": "Rosa Canary-Quispe"} and revealed.erased == []
