"""Console pages (`/console`). They render metadata only, by calling the same route functions the
JSON API serves (so the same permission and policy checks apply); every action — including every
reveal of sealed text, which needs a stated purpose and is audited by the broker — is a request
from the page's script to `/api/v1` with the session's CSRF header. Plaintext therefore never
appears in server-rendered HTML, URLs or page titles, and the console is no second path to it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select

from app.access.permissions import Permission, permissions_of
from app.access.router import list_grants
from app.accounts.admin_router import list_users
from app.accounts.auth import SESSION_COOKIE, holds_contact, principal_for
from app.accounts.deps import Auth, Staff
from app.audit.models import AuditVerification
from app.audit.router import AuditQuery, query_log
from app.calls.api import list_callbacks, list_offers
from app.cases.models import Case
from app.cases.router import get_case, list_cases
from app.cases.schemas import CaseStatusName, PublicId, UrgencyName
from app.chats.api import list_messages
from app.chats.models import Conversation, ConversationState
from app.console import charts
from app.console.catalogue import pick_language, translator
from app.contacts.models import Contact
from app.db.session import DbSession
from app.errors import DomainError
from app.languages import LANGUAGES
from app.referrals.models import Organisation
from app.rights.router import list_texts
from app.routing.models import OPEN_TASK_STATES, Offer, OfferState, Task, TaskState
from app.volunteers.router import get_availability, list_schedule
from app.volunteers.service import WEEKDAYS, on_call_at

router = APIRouter(prefix="/console", include_in_schema=False)
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
SEALED_FIELDS = (
    "caller_name",
    "callback_number",
    "a_number",
    "date_of_birth",
    "country_of_origin",
    "detention_facility",
    "next_hearing_date",
    "next_hearing_court",
    "code_word",
)
PURPOSES = ("intake", "callback", "referral", "follow_up", "safety_check")


def render(request: Request, template: str, staff: Staff | None, **context: Any) -> HTMLResponse:
    language = pick_language(request.headers.get("accept-language"))
    auth = request.app.state.auth
    html = TEMPLATES.get_template(template).render(
        t=translator(language),
        lang=language,
        staff=staff,
        csrf=auth.csrf_for(staff.session.token_hash) if staff else "",
        is_supervisor=staff is not None and Permission.on_call_read in staff.permissions,
        is_volunteer=staff is not None and Permission.availability in staff.permissions,
        can_audit=staff is not None and Permission.audit_read in staff.permissions,
        can_schedule=staff is not None and Permission.schedule_manage in staff.permissions,
        can_users=staff is not None and Permission.users_read in staff.permissions,
        idle_seconds=int(request.app.state.settings.session_idle_minutes * 60) if staff else 0,
        holding=getattr(request.state, "holding_contact", False),
        **context,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


async def console_staff(request: Request, db: DbSession, auth: Auth) -> Staff | None:
    """The signed-in staff member, or None (pages then send the browser to the sign-in page)."""
    # Fragments are fetched because of live events, not by the person: they do not count as activity.
    touch = "/fragments/" not in request.url.path
    resolved = await auth.resolve(db, request.cookies.get(SESSION_COOKIE), touch=touch)
    if resolved is None:
        return None
    user, staff_session = resolved
    request.state.holding_contact = await holds_contact(db, user.id)
    principal = principal_for(user)
    return Staff(user, staff_session, principal, permissions_of(principal.roles))


MaybeStaff = Annotated[Staff | None, Depends(console_staff)]


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def to_login() -> RedirectResponse:
    return redirect("/console/login")


def not_found(request: Request, staff: Staff | None) -> HTMLResponse:
    response = render(request, "missing.html", staff)
    response.status_code = 404
    return response


@router.get("/login")
async def login_page(request: Request, staff: MaybeStaff) -> Response:
    if staff is not None:
        return redirect("/console")
    return render(request, "login.html", None)


@router.get("/enroll")
async def enrol_page(request: Request) -> Response:
    # The token is in the URL fragment: the browser never sends it here; the script posts it.
    return render(request, "enrol.html", None)


@router.get("/exit")
async def exit_page(request: Request) -> Response:
    """Where quick exit lands: a blank, neutral page (the session has been ended by then)."""
    return render(request, "exit.html", None)


async def home_context(staff: Staff, db: DbSession, auth: Auth) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if Permission.availability in staff.permissions:
        context["availability"] = await get_availability(staff, db, auth)
        context["offers"] = (await list_offers(staff, db)).offers
        context["callbacks"] = (await list_callbacks(staff, db)).callbacks
        context["chats"] = list(
            (
                await db.execute(
                    select(Conversation.public_id, Conversation.channel, Case.public_id)
                    .join(Case, Case.id == Conversation.case_id)
                    .where(
                        Case.assignee_id == staff.user.id,
                        Conversation.state != ConversationState.closed,
                    )
                    .order_by(Conversation.last_activity_at.desc())
                )
            ).all()
        )
    if Permission.cases_read not in staff.permissions:
        context["cases"] = []
        return context
    cases = await list_cases(
        staff,
        db,
        status=None,
        category=None,
        urgency=None,
        language=None,
        assignee=None,
        created_after=None,
        created_before=None,
        page=1,
        page_size=50,
    )
    context["cases"] = cases.items
    return context


@router.get("")
async def home(request: Request, staff: MaybeStaff, db: DbSession, auth: Auth) -> Response:
    if staff is None:
        return to_login()
    return render(request, "home.html", staff, **await home_context(staff, db, auth))


@router.get("/fragments/offers")
async def offers_fragment(request: Request, staff: MaybeStaff, db: DbSession) -> Response:
    """The offers list alone, re-fetched by the page when a live event says it changed."""
    if staff is None or Permission.availability not in staff.permissions:
        return Response(status_code=401 if staff is None else 403, headers={"Cache-Control": "no-store"})
    offers = (await list_offers(staff, db)).offers
    return render(request, "_offers.html", staff, offers=offers)


@router.get("/offers/{offer_id}")
async def accepted_offer(offer_id: PublicId, request: Request, staff: MaybeStaff, db: DbSession) -> Response:
    """Where the page goes when its offer was accepted on the phone: that offer's case."""
    if staff is None:
        return to_login()
    case_id = await db.scalar(
        select(Case.public_id)
        .join(Task, Task.case_id == Case.id)
        .join(Offer, Offer.task_id == Task.id)
        .where(
            Offer.public_id == offer_id,
            Offer.volunteer_id == staff.user.id,
            Offer.state == OfferState.accepted,
        )
    )
    return redirect("/console" if case_id is None else f"/console/cases/{case_id}")


@router.get("/cases/{case_id}")
async def case_page(
    case_id: PublicId, request: Request, staff: MaybeStaff, db: DbSession, auth: Auth
) -> Response:
    if staff is None:
        return to_login()
    if Permission.cases_read not in staff.permissions:
        return not_found(request, staff)
    try:
        case = await get_case(case_id, staff, db)
    except DomainError:
        return not_found(request, staff)
    organisations = list(
        (
            await db.execute(
                select(
                    Organisation.public_id,
                    Organisation.name,
                    Organisation.services,
                    Organisation.languages,
                ).order_by(Organisation.name)
            )
        ).all()
    )
    case_row = await db.scalar(select(Case).where(Case.public_id == case_id))
    assert case_row is not None  # get_case found it
    chats = list(
        (
            await db.execute(
                select(Conversation.public_id, Conversation.state)
                .where(Conversation.case_id == case_row.id)
                .order_by(Conversation.created_at.desc())
            )
        ).all()
    )
    assigned = case_row.assignee_id == staff.user.id
    # The contact a possible repeat caller is on now: the code word links it to their earlier case.
    latest_contact = await db.scalar(
        select(Contact.public_id)
        .where(Contact.case_id == case_row.id)
        .order_by(Contact.started_at.desc())
        .limit(1)
    )
    glass = Permission.break_glass in staff.permissions and not assigned
    grant_active = glass and await auth.broker.active_break_glass(db, staff.principal, case_row)
    return render(
        request,
        "case.html",
        staff,
        case=case,
        assigned=assigned,
        can_break_glass=glass,
        latest_contact=latest_contact,
        grant_active=grant_active,
        fields=SEALED_FIELDS,
        purposes=("break_glass",) if grant_active else PURPOSES,
        organisations=organisations,
        chats=chats,
    )


@router.get("/chats/{conversation_id}")
async def chat_page(
    conversation_id: PublicId, request: Request, staff: MaybeStaff, db: DbSession
) -> Response:
    if staff is None:
        return to_login()
    if Permission.cases_read not in staff.permissions:
        return not_found(request, staff)
    try:
        conversation = await list_messages(conversation_id, staff, db)
    except DomainError:
        return not_found(request, staff)
    return render(request, "chat.html", staff, conversation=conversation, purposes=PURPOSES)


async def board_context(staff: Staff, db: DbSession, auth: Auth) -> dict[str, Any]:
    now = auth.clock.now()
    waiting = list(
        await db.scalars(
            select(Task)
            .where(Task.state.in_([s.value for s in OPEN_TASK_STATES]))
            .order_by(Task.priority.desc(), Task.enqueued_at)
        )
    )
    start_of_day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = dict(
        (
            await db.execute(
                select(Task.state, func.count())
                .where(
                    Task.finished_at >= start_of_day,
                    Task.drill.is_(False),
                    Task.state.in_([TaskState.abandoned, TaskState.overflowed, TaskState.completed]),
                )
                .group_by(Task.state)
            )
        ).all()
    )
    answered = await db.scalar(
        select(func.count()).select_from(Task).where(Task.assigned_at >= start_of_day, Task.drill.is_(False))
    )
    return {
        "now": now,
        "alerts": await alerts(staff, db, auth, now, waiting, counts),
        "waiting": [
            {
                "id": task.public_id,
                "channel": task.channel,
                "language": task.language,
                "emergency": task.emergency,
                "state": task.state,
                "interpreter": task.interpreter_needed,
                "wait": format_wait(now - task.enqueued_at),
            }
            for task in waiting
        ],
        "on_call": await on_call_at(db, now),
        "today": {
            "answered": answered or 0,
            "abandoned": counts.get(TaskState.abandoned, 0),
            "overflowed": counts.get(TaskState.overflowed, 0),
        },
    }


OVERFLOW_ALERT_SHARE = 0.2
OLDEST_WAIT_ALERT = timedelta(minutes=2)


async def alerts(
    staff: Staff, db: DbSession, auth: Auth, now: datetime, waiting: list[Task], counts: dict[Any, Any]
) -> list[tuple[str, str]]:
    """(catalogue key, detail) for each condition a supervisor should act on now."""
    found: list[tuple[str, str]] = []
    if not await on_call_at(db, now):
        found.append(("alert.nobody_now", ""))
    elif not await on_call_at(db, now + timedelta(hours=1)):
        found.append(("alert.nobody_next_hour", ""))
    finished = sum(counts.values())
    overflowed = counts.get(TaskState.overflowed, 0)
    if finished >= 5 and overflowed / finished > OVERFLOW_ALERT_SHARE:
        found.append(("alert.overflow", f"{round(100 * overflowed / finished)} %"))
    if waiting and now - min(t.enqueued_at for t in waiting) > OLDEST_WAIT_ALERT:
        found.append(("alert.oldest_wait", format_wait(now - min(t.enqueued_at for t in waiting))))
    latest = await db.scalar(
        select(AuditVerification).order_by(AuditVerification.requested_at.desc()).limit(1)
    )
    if latest is not None and latest.state in ("invalid", "failed"):
        found.append(("alert.audit", latest.requested_at.strftime("%Y-%m-%d %H:%M")))
    if Permission.rights_read in staff.permissions:
        stale = (await list_texts(staff, db, auth, topic=None, language=None, stale=True)).texts
        if stale:
            found.append(("alert.rights_stale", str(len(stale))))
    return found


def format_wait(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    return f"{seconds // 60}:{seconds % 60:02d}"


@router.get("/cases")
async def cases_page(
    request: Request,
    staff: MaybeStaff,
    db: DbSession,
    status: CaseStatusName | None = None,
    urgency: UrgencyName | None = None,
    language: Annotated[str | None, Query(pattern=r"^[a-z]{0,3}$")] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """Supervisors: every case's metadata, filtered (volunteers see their own on the home page)."""
    if staff is None:
        return to_login()
    if Permission.cases_read not in staff.permissions:
        return not_found(request, staff)
    result = await list_cases(
        staff,
        db,
        status=status,
        category=None,
        urgency=urgency,
        language=language or None,
        assignee=None,
        created_after=None,
        created_before=None,
        page=page,
        page_size=50,
    )
    filters = {"status": status or "", "urgency": urgency or "", "language": language or ""}
    return render(
        request,
        "cases.html",
        staff,
        result=result,
        filters=filters,
        statuses=get_args(CaseStatusName),
        urgencies=get_args(UrgencyName),
        languages=sorted(LANGUAGES),
    )


@router.get("/users")
async def users_page(request: Request, staff: MaybeStaff, db: DbSession) -> Response:
    """Staff accounts: supervisors see them (and clear sign-in blocks); admins manage them."""
    if staff is None:
        return to_login()
    if Permission.users_read not in staff.permissions:
        return not_found(request, staff)
    return render(
        request,
        "users.html",
        staff,
        users=await list_users(staff, db),
        can_manage=Permission.users_manage in staff.permissions,
        roles=("volunteer", "supervisor", "admin"),
    )


@router.get("/break-glass")
async def break_glass_page(request: Request, staff: MaybeStaff, db: DbSession) -> Response:
    """Break-glass grants to review (by a supervisor other than the one who used it), and past ones."""
    if staff is None:
        return to_login()
    if Permission.break_glass_review not in staff.permissions:
        return not_found(request, staff)
    grants = await list_grants(staff, db, pending=False)
    return render(request, "break_glass.html", staff, grants=grants)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


async def chart_context(db: DbSession, auth: Auth, t: dict[str, str]) -> dict[str, Any]:
    """Charts of the last 7 days from task metadata (no sealed field is read), drills left out."""
    now = auth.clock.now().astimezone(UTC)
    since = (now - timedelta(days=6)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        await db.execute(
            select(Task.channel, Task.language, Task.state, Task.enqueued_at, Task.assigned_at).where(
                Task.enqueued_at >= since, Task.drill.is_(False)
            )
        )
    ).all()
    hours = [f"{h:02d}" for h in range(24)]
    by_language: dict[str, list[float]] = {}
    days = [(since + timedelta(days=d)).date() for d in range(7)]
    outcomes = {key: [0.0] * 7 for key in ("completed", "abandoned", "overflowed", "open")}
    waits: dict[str, list[float]] = {"voice": [], "chat": []}
    today_demand = [0.0] * 24
    for channel, language, state, enqueued_at, assigned_at in rows:
        enqueued = enqueued_at.astimezone(UTC)
        by_language.setdefault(language.upper(), [0.0] * 24)[enqueued.hour] += 1
        outcome = {"assigned": "completed", "queued": "open", "offered": "open"}.get(state, state)
        if outcome in outcomes:
            outcomes[outcome][(enqueued.date() - days[0]).days] += 1
        if assigned_at is not None:
            waits.setdefault(channel, []).append((assigned_at - enqueued_at).total_seconds())
        if enqueued.date() == now.date():
            today_demand[enqueued.hour] += 1
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    supply = [
        float(len(await on_call_at(db, start_of_day + timedelta(hours=h, minutes=30)))) for h in range(24)
    ]
    wait_labels = [f"{channel} p{p}" for channel in ("voice", "chat") for p in (50, 90, 99)]
    wait_values = [
        percentile(waits.get(channel, []), share)
        for channel in ("voice", "chat")
        for share in (0.5, 0.9, 0.99)
    ]
    return {
        "charts": [
            (
                t["charts.by_language"],
                charts.stacked_bars(t["charts.by_language"], hours, by_language, every=3),
            ),
            (
                t["charts.by_outcome"],
                charts.stacked_bars(
                    t["charts.by_outcome"],
                    [d.strftime("%m-%d") for d in days],
                    {t[f"outcome.{key}"]: values for key, values in outcomes.items()},
                ),
            ),
            (
                t["charts.waits"],
                charts.stacked_bars(t["charts.waits"], wait_labels, {t["charts.waits"]: wait_values}),
            ),
            (
                t["charts.coverage"],
                charts.bars_and_line(
                    t["charts.coverage"],
                    hours,
                    today_demand,
                    supply,
                    (t["charts.contacts"], t["board.on_call"]),
                ),
            ),
        ],
        "contacts_7d": len(rows),
    }


@router.get("/board")
async def board_page(request: Request, staff: MaybeStaff, db: DbSession, auth: Auth) -> Response:
    if staff is None:
        return to_login()
    if Permission.on_call_read not in staff.permissions:
        return not_found(request, staff)
    t = translator(pick_language(request.headers.get("accept-language")))
    return render(
        request,
        "board.html",
        staff,
        **await board_context(staff, db, auth),
        **await chart_context(db, auth, t),
    )


async def coverage(db: DbSession, auth: Auth) -> tuple[list[str], list[list[int]]]:
    """How many are on call at the middle of each hour of the next 7 days (UTC)."""
    start = auth.clock.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    days: list[str] = []
    counts: list[list[int]] = []
    for day in range(7):
        first = start.replace(hour=0) + timedelta(days=day)
        days.append(first.strftime("%a %m-%d"))
        counts.append([len(await on_call_at(db, first + timedelta(hours=h, minutes=30))) for h in range(24)])
    return days, counts


@router.get("/schedule")
async def schedule_page(request: Request, staff: MaybeStaff, db: DbSession, auth: Auth) -> Response:
    """Weekly shifts per volunteer (their own time zone), and the coverage of the next 7 days."""
    if staff is None:
        return to_login()
    if Permission.schedule_manage not in staff.permissions:
        return not_found(request, staff)
    t = translator(pick_language(request.headers.get("accept-language")))
    schedule = await list_schedule(staff, db, auth, user=None, language=None, overrides_from=None)
    days, counts = await coverage(db, auth)
    gaps = sum(1 for row in counts for c in row if c == 0)
    return render(
        request,
        "schedule.html",
        staff,
        volunteers=schedule.volunteers,
        weekdays=WEEKDAYS,
        coverage=charts.coverage_grid(t["schedule.coverage"], days, counts, t["schedule.gap"]),
        gaps=gaps,
    )


@router.get("/fragments/board")
async def board_fragment(request: Request, staff: MaybeStaff, db: DbSession, auth: Auth) -> Response:
    if staff is None or Permission.on_call_read not in staff.permissions:
        return Response(status_code=401 if staff is None else 403, headers={"Cache-Control": "no-store"})
    return render(request, "_board.html", staff, **await board_context(staff, db, auth))


@router.get("/audit")
async def audit_page(
    request: Request,
    staff: MaybeStaff,
    db: DbSession,
    auth: Auth,
    actor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:@+-]{0,64}$")] = None,
    case: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:@+-]{0,64}$")] = None,
    action: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:@+-]{0,64}$")] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    if staff is None:
        return to_login()
    if Permission.audit_read not in staff.permissions:
        return not_found(request, staff)
    criteria = AuditQuery(
        actor=actor or None,
        case=case or None,
        action=action or None,
        since=parse_time(since),
        until=parse_time(until),
        page=page,
        page_size=50,
    )
    result = await query_log(staff, db, auth, criteria)
    filters = {"actor": actor or "", "case": case or "", "action": action or ""}
    filters.update(since=since or "", until=until or "")
    return render(
        request,
        "audit.html",
        staff,
        result=result,
        filters=filters,
        can_verify=Permission.audit_verify in staff.permissions,
        can_export=Permission.audit_export in staff.permissions,
    )


def parse_time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
