"""The console in a real browser (Debian's chromium driven by playwright) against two uvicorn
processes on PostgreSQL and the fake Twilio. Twilio's webhooks go to one process; both browsers
are served by the other, so every live event crosses processes through LISTEN/NOTIFY.

One story, in order: a volunteer enrols (QR + TOTP) and signs in, goes available, sees a Spanish
emergency call offered within 2 s, answers it on the (simulated) phone, and the console opens the
case: intake revealed with a purpose and filled in, a note, a referral, closed. A supervisor
watches the call wait on the live board, then finds the volunteer's reveals in the access log and
verifies the chain. A text conversation is accepted and answered from the console and the reply
reaches the fake Twilio. Quick exit leaves nothing in the browser. Each main page passes an
accessibility check (axe-core when `npm pack axe-core` or HOTLINE_TEST_AXE_JS provides it, and
always a structural check of our own). Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select

from app.access.broker import AccessBroker
from app.accounts.models import User
from app.accounts.service import create_user
from app.cases.models import Case, CaseNote, Referral
from app.clock import SystemClock
from app.db.engine import create_database
from app.keys.sealed import Sealed
from app.keys.store import KeyStore, Sealer
from app.routing.models import Offer, Task
from app.volunteers.service import WeeklyShift, replace_shifts
from crypto.keyfile import create_key_file
from telephony.fake import CallSimulator, FakeTwilio, NumberConfig, Party
from tests.support.cli import clean_environment
from tests.support.factories import SETUP

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE_VERSION = "4.14.1"
HOTLINE = "+12125550199"
VOLUNTEER_PHONE = "+12125550177"
CALLER = "+12025550188"
TEXTER = "+12025550166"
PASSWORD = "kitchen table lamp 2026 night"
# Fictional details typed into the intake form: none may show up in a URL, a title or storage.
CALLER_NAME = "Ana Ejemplo Prueba"
A_NUMBER = "A012345678"
SENSITIVE = (CALLER_NAME, "Ejemplo", A_NUMBER, "012345678", VOLUNTEER_PHONE, CALLER, TEXTER, "5550188")

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is a test dependency")

STRUCTURAL_CHECK = """() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("html without lang");
  if (!document.querySelector("main")) problems.push("no main landmark");
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  if (!document.title.trim()) problems.push("no title");
  const visible = (el) => !el.closest("[hidden]") && el.getClientRects().length > 0;
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!visible(el)) continue;
    const label = (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.closest("label")
      || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!label) problems.push("field without a label: " + (el.name || el.id));
  }
  for (const el of document.querySelectorAll("button, a[href]")) {
    if (visible(el) && !(el.textContent.trim() || el.getAttribute("aria-label")))
      problems.push("control without a name");
  }
  for (const table of document.querySelectorAll("table")) {
    if (!table.querySelector("th[scope]")) problems.push("table without header cells");
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) problems.push("horizontal scrolling");
  return problems;
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def axe_source(cache: Path) -> str | None:
    """axe-core's browser build: HOTLINE_TEST_AXE_JS, or `npm pack` (offline mirrors work)."""
    given = os.environ.get("HOTLINE_TEST_AXE_JS")
    if given and Path(given).is_file():
        return Path(given).read_text()
    target = cache / "axe.min.js"
    if target.is_file():
        return target.read_text()
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        packed = (
            subprocess.run(
                [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", str(cache), "--silent"],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with tarfile.open(cache / packed) as archive:
            member = archive.extractfile("package/axe.min.js")
            if member is None:
                return None
            target.write_bytes(member.read())
    except (subprocess.SubprocessError, OSError, IndexError, KeyError, tarfile.TarError):
        return None
    return target.read_text()


@dataclass
class Setup:
    webhook_url: str
    console_url: str
    fake: FakeTwilio
    database_url: str
    volunteer_email: str
    volunteer_token: str
    supervisor_email: str
    supervisor_token: str


async def seed(database_url: str, key_path: Path) -> tuple[str, str, str, str]:
    """A volunteer (Spanish, verified phone, on call all week) and a supervisor, both still to enrol."""
    material = create_key_file(key_path)
    database = create_database(database_url)
    clock = SystemClock()
    sealer = Sealer(KeyStore(material, str(key_path)), clock)
    AccessBroker(sealer, clock)
    async with database.sessionmaker() as session, session.begin():
        volunteer, volunteer_token = await create_user(
            session,
            sealer,
            clock,
            actor=SETUP,
            email="volunteer@example.org",
            name="Vera Voluntaria",
            roles="volunteer",
            phone=VOLUNTEER_PHONE,
            languages="es,en",
        )
        volunteer.phone_verified_at = datetime.now(UTC)
        await replace_shifts(
            session, clock, volunteer, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
        )
        # A second volunteer with no shifts yet: the supervisor gives them one in the schedule editor.
        await create_user(
            session,
            sealer,
            clock,
            actor=SETUP,
            email="oscar@example.org",
            name="Oscar Nightshift",
            roles="volunteer",
            languages="en",
        )
        _supervisor, supervisor_token = await create_user(
            session,
            sealer,
            clock,
            actor=SETUP,
            email="supervisor@example.org",
            name="Sam Supervisor",
            roles="supervisor",
            languages="en,es",
        )
        await seed_history(session)
    await database.dispose()
    return "volunteer@example.org", volunteer_token, "supervisor@example.org", supervisor_token


async def seed_history(session: Any) -> None:
    """Finished contacts of the last days (metadata only), so the board's charts have something."""
    now = datetime.now(UTC)
    outcomes = ("completed", "completed", "completed", "abandoned", "overflowed")
    for n in range(90):
        enqueued = now - timedelta(days=n % 6, hours=(n * 7) % 24, minutes=n % 50) - timedelta(minutes=5)
        state = outcomes[n % len(outcomes)]
        session.add(
            Task(
                public_id=f"TK-HIST-{n:04d}",
                channel="voice" if n % 3 else "chat",
                language=("en", "es", "es", "ht", "cmn")[n % 5],
                emergency=n % 11 == 0,
                priority=0,
                state=state,
                escalation_step=0,
                interpreter_needed=False,
                drill=False,
                enqueued_at=enqueued,
                assigned_at=enqueued + timedelta(seconds=8 + (n * 13) % 90) if state == "completed" else None,
                finished_at=enqueued + timedelta(minutes=4),
            )
        )


def start_server(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=log.parent,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"{url}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert process.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not come up"
            await asyncio.sleep(0.2)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


@pytest.fixture
async def two_servers(
    backend: str, fresh_database_url: str, tmp_path: Path, fake_twilio: FakeTwilio
) -> AsyncIterator[Setup]:
    if backend != "postgresql":
        pytest.skip("the browser tests run two server processes, which needs PostgreSQL")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (.ci/run installs it)")
    webhook_port, console_port = free_port(), free_port()
    webhook_url = f"http://127.0.0.1:{webhook_port}"
    key_path = tmp_path / "keys.json"
    emails_tokens = await seed(fresh_database_url, key_path)
    fake_twilio.configure_number(NumberConfig.hotline(HOTLINE, webhook_url))
    env = clean_environment(
        {
            "HOTLINE_DATABASE_URL": fresh_database_url,
            "HOTLINE_KEYRING_FILE": str(key_path),
            "HOTLINE_SPOOL_DIR": str(tmp_path / "spool"),
            # Both processes sit behind the one public address Twilio signs for.
            "HOTLINE_PUBLIC_URL": webhook_url,
            "TWILIO_ACCOUNT_SID": fake_twilio.account_sid,
            "TWILIO_AUTH_TOKEN": fake_twilio.auth_token,
            "HOTLINE_TWILIO_API_URL": fake_twilio.base_url,
            "HOTLINE_TWILIO_NUMBER": HOTLINE,
            "HOTLINE_OVERFLOW_NUMBER": "+12125550100",
            "HOTLINE_JOBS_POLL_SECONDS": "0.1",
            "HOTLINE_LOG_LEVEL": "WARNING",
            "HOTLINE_EVENTS_KEEPALIVE_SECONDS": "5",
            # The fake rings for this many *simulated* seconds (6 s at the test's time scale).
            "HOTLINE_VOICE_RING_SECONDS": "60",
            "HOTLINE_MAX_QUEUE_SECONDS": "3600",
            "HOTLINE_LANGUAGE_MATCH_SECONDS": "3600",
        }
    )
    servers = [
        start_server(webhook_port, env, tmp_path / "webhooks.log"),
        start_server(console_port, env, tmp_path / "console.log"),
    ]
    try:
        await wait_ready(webhook_url, servers[0])
        await wait_ready(f"http://127.0.0.1:{console_port}", servers[1])
        yield Setup(
            webhook_url,
            f"http://127.0.0.1:{console_port}",
            fake_twilio,
            fresh_database_url,
            *emails_tokens,
        )
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for name in ("webhooks.log", "console.log"):
            print(f"--- {name}\n" + "\n".join((tmp_path / name).read_text().splitlines()[-30:]))
        for server in servers:
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                pytest.fail("a server did not stop within 20 s of SIGTERM (open event streams?)")


class Checks:
    """Accessibility problems, URLs and titles seen along the way."""

    def __init__(self, axe: str | None) -> None:
        self.axe = axe
        self.problems: list[str] = []
        self.urls: list[str] = []
        self.titles: list[str] = []
        self.axe_pages = 0

    def watch(self, page: Any) -> None:
        page.on("request", lambda request: self.urls.append(request.url))

    async def page(self, page: Any, name: str) -> None:
        self.titles.append(await page.title())
        for problem in await page.evaluate(STRUCTURAL_CHECK):
            self.problems.append(f"{name}: {problem}")
        if self.axe is None:
            return
        # Evaluated through the DevTools protocol, which the page's CSP does not govern.
        await page.evaluate(self.axe)
        result = await page.evaluate(
            "async () => (await axe.run(document, {runOnly: {type: 'tag', values: "
            "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})).violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
        )
        self.problems.extend(f"{name}: axe {violation}" for violation in result)
        self.axe_pages += 1


async def sign_in(page: Any, base: str, email: str, secret: str, *, offset: float = 30) -> None:
    """The code for the next time step: the enrolment confirmation used this one."""
    await page.goto(f"{base}/console/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Code from your authenticator app").fill(
        pyotp.TOTP(secret).at(time.time() + offset)
    )
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/console")


async def next_code(secret: str, used_step: int) -> str:
    """A code for a step after `used_step` that the server accepts now (it allows one step ahead)."""
    # Wait until the used step is the current one (at most 30 s): then the next one is accepted.
    await asyncio.sleep(max(0.0, used_step * 30 - time.time() + 0.5))
    return pyotp.TOTP(secret).at(time.time() + 30)


async def until(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_the_console_in_a_browser(
    two_servers: Setup, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = two_servers
    base = setup.console_url
    checks = Checks(axe_source(tmp_path_factory.mktemp("axe")))
    if checks.axe is None and os.environ.get("HOTLINE_TEST_REQUIRE_AXE"):
        pytest.fail("axe-core is required here (HOTLINE_TEST_AXE_JS or npm) but unavailable")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    database = create_database(setup.database_url)
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        # The volunteer on a phone-sized screen, the supervisor on a desktop.
        volunteer_context = await browser.new_context(viewport={"width": 360, "height": 780}, locale="en-US")
        supervisor_context = await browser.new_context(
            viewport={"width": 1280, "height": 900}, locale="en-US"
        )
        volunteer_context.set_default_timeout(15_000)
        supervisor_context.set_default_timeout(15_000)
        page = await volunteer_context.new_page()
        board = await supervisor_context.new_page()
        checks.watch(page)
        checks.watch(board)

        # --- the volunteer enrols: QR code rendered server-side, key shown, code confirmed -----
        await page.goto(f"{base}/console/enroll#token={setup.volunteer_token}")
        assert "#token" not in page.url  # the script takes the token out of the address bar
        await checks.page(page, "enrol")
        await page.get_by_label("Choose a password").fill(PASSWORD)
        await page.get_by_role("button", name="Continue").click()
        await page.locator("#enrol-qr svg").wait_for()
        secret = (await page.locator("#enrol-key").text_content() or "").strip()
        assert len(secret) >= 16
        await page.get_by_label("Code shown by the app").fill(pyotp.TOTP(secret).now())
        await page.get_by_role("button", name="Confirm").click()
        await page.get_by_text("Your account is ready.").wait_for()
        await page.goto(f"{base}/console/login")
        await checks.page(page, "login")
        await sign_in(page, base, setup.volunteer_email, secret)
        await checks.page(page, "volunteer home")

        # --- the supervisor (enrolled through the API) opens the live board -----------------
        async with httpx.AsyncClient(base_url=base) as http:
            started = await http.post(
                "/api/v1/auth/enroll", json={"token": setup.supervisor_token, "password": PASSWORD}
            )
            supervisor_secret = started.json()["totp_secret"]
            confirmed = await http.post(
                "/api/v1/auth/enroll/confirm",
                json={"token": setup.supervisor_token, "totp": pyotp.TOTP(supervisor_secret).now()},
            )
            assert confirmed.status_code == 200, confirmed.text
        await sign_in(board, base, setup.supervisor_email, supervisor_secret)
        login_step = int(time.time() // 30) + 1  # the sign-in used the next step's code
        await board.goto(f"{base}/console/board")
        await board.get_by_text("Live updates on.").wait_for()

        # --- available: voice 1, chat 2 ------------------------------------------------------
        await page.get_by_label("State").select_option("available")
        await page.get_by_label("Calls at once").fill("1")
        await page.get_by_label("Chats at once").fill("2")
        await page.get_by_role("button", name="Save availability").click()
        await page.get_by_text("Availability saved.").wait_for()
        await page.get_by_text("Live updates on.").wait_for()

        # Simulated time runs ten times faster than the browser's: prompts are short.
        async with CallSimulator(setup.fake, time_scale=0.1, webhook_timeout=15) as sim:
            # The volunteer's phone rings and is answered 3 s later, pressing 1 in the whisper.
            sim.add_party(
                VOLUNTEER_PHONE, Party(answer_after=30, digits=("1",), talk_seconds=200, hold_patience=6000)
            )
            call = asyncio.create_task(
                sim.call(
                    CALLER,
                    HOTLINE,
                    Party(digits=("2", "9"), talk_seconds=200, hold_patience=6000),
                    timeout=120,
                )
            )
            # Spanish, emergency: offered to the volunteer; the webhook went to the other process.
            offer_card = page.locator("li.offer")
            try:
                await offer_card.wait_for(timeout=15_000)
            except playwright_api.TimeoutError:
                print("\n".join(str(h) for h in sim.legs()[0].transcript) if sim.legs() else "no legs")
                async with database.sessionmaker() as session:
                    print("offers:", [(o.public_id, o.state) for o in await session.scalars(select(Offer))])
                raise
            seen_at = datetime.now(UTC)
            async with database.sessionmaker() as session:
                offer = (await session.scalars(select(Offer))).one()
            latency = (seen_at - offer.created_at).total_seconds()
            assert latency < 2.0, f"the offer took {latency:.2f} s to appear"
            card = await offer_card.inner_text()
            assert "ES" in card and "Emergency" in card and "Call" in card
            # The supervisor sees the call waiting (ringing the volunteer) with its language.
            row = board.locator("#waiting tr[data-task]")
            await row.wait_for(timeout=5_000)
            assert "ES" in await row.inner_text() and "Emergency" in await row.inner_text()
            await checks.page(board, "live board")
            await board.screenshot(path=str(SCREENSHOTS / "supervisor-board.png"), full_page=True)

            # Pressing 1 on the phone accepts: the console opens the case.
            try:
                await page.wait_for_url(f"{base}/console/cases/*", timeout=20_000)
            except playwright_api.TimeoutError:
                for leg in sim.legs():
                    print(leg.sid, "\n".join(str(h) for h in leg.transcript))
                async with database.sessionmaker() as session:
                    print("offers:", [(o.public_id, o.state) for o in await session.scalars(select(Offer))])
                raise
            case_id = page.url.rsplit("/", 1)[1]
            await page.get_by_label("Purpose").select_option("intake")
            async with page.expect_response(lambda r: r.url.endswith("/reveal")) as revealed:
                await page.get_by_role("button", name="Show intake details").click()
            assert (await revealed.value).status == 200
            await page.get_by_label("Caller's name").fill(CALLER_NAME)
            await page.get_by_label("A-number").fill(A_NUMBER)
            await page.get_by_label("Country of origin").fill("Guatemala")
            await page.get_by_label("Detention facility").fill("Elizabeth Detention Center")
            await page.get_by_label("Next hearing date (YYYY-MM-DD)").fill("2027-01-15")
            await page.get_by_role("button", name="Save intake").click()
            await page.locator("#intake-form .message").filter(has_text="Saved.").wait_for()
            await page.get_by_label("New note").fill("Husband detained this morning; hearing in January.")
            await page.get_by_role("button", name="Add note").click()
            await page.locator("#notes li").first.wait_for()

            # Typed but not saved: autosaved, sealed, on the server, and restored after a reload.
            def court_saved(response: Any) -> bool:
                request = response.request
                return request.method == "PUT" and "Immigration Court" in (request.post_data or "")

            async with page.expect_response(court_saved):
                await page.get_by_label("Court of the next hearing").fill("Elizabeth Immigration Court")
            await page.reload()
            await page.get_by_label("Purpose").select_option("intake")
            await page.get_by_role("button", name="Show intake details").click()
            await page.locator("#notes li").first.wait_for()
            assert await page.get_by_label("Caller's name").input_value() == CALLER_NAME
            await page.get_by_text("Your unsaved draft was restored.").wait_for()
            court = await page.get_by_label("Court of the next hearing").input_value()
            assert court == "Elizabeth Immigration Court"
            await page.get_by_role("button", name="Save intake").click()
            await page.locator("#intake-form .message").filter(has_text="Saved.").wait_for()
            await checks.page(page, "case")
            await page.screenshot(path=str(SCREENSHOTS / "volunteer-case.png"), full_page=True)
            await page.get_by_label("Organisation", exact=True).select_option(index=0)
            await page.get_by_role("button", name="Refer the case").click()
            await page.locator("#referrals li").first.wait_for()
            await page.get_by_role("button", name="Close the case").click()
            await page.get_by_text("This case is closed.").wait_for()
            await call

            # --- a text conversation, answered from the console -----------------------------
            await page.goto(f"{base}/console")
            await page.get_by_text("Live updates on.").wait_for()
            menu = await sim.send_message(TEXTER, HOTLINE, "necesito ayuda urgente")
            assert menu.replies
            await sim.send_message(TEXTER, HOTLINE, "2")
            await page.get_by_role("button", name="Accept").click()
            await page.wait_for_url(f"{base}/console/cases/*")
            chat_case = page.url.rsplit("/", 1)[1]
            await page.locator('a[href^="/console/chats/"]').first.click()
            await page.wait_for_url(f"{base}/console/chats/*")
            await page.get_by_label("Purpose").select_option("intake")
            await page.get_by_role("button", name="Show messages").click()
            await page.locator("#messages li", has_text="necesito ayuda urgente").wait_for()
            await checks.page(page, "chat")
            await page.get_by_label("Reply").fill("Hola, le ayudamos. ¿Está en un lugar seguro?")
            await page.get_by_role("button", name="Send").click()
            await page.get_by_text("Reply queued for sending.").wait_for()

            async def reply_arrived() -> bool:
                return "Hola, le ayudamos. ¿Está en un lugar seguro?" in sim.inbox(TEXTER)

            assert await until(reply_arrived, 15), f"reply never reached the fake Twilio: {sim.inbox(TEXTER)}"
            await sim.wait_idle(30)

        # --- the supervisor gives the second volunteer a Saturday night shift ----------------
        await board.goto(f"{base}/console/schedule")
        await checks.page(board, "schedule")
        oscar = board.locator("form.schedule", has_text="Oscar Nightshift")
        await oscar.get_by_role("button", name="Add a shift").click()
        await oscar.get_by_label("Day").select_option("sat")
        await oscar.get_by_label("Starts (local time)").fill("22:00")
        await oscar.get_by_label("Length (minutes)").fill("480")
        async with board.expect_navigation():  # saved, then the page reloads
            await oscar.get_by_role("button", name="Save shifts").click()
        saved = board.locator("form.schedule", has_text="Oscar Nightshift")
        assert await saved.locator('input[data-field="start"]').input_value() == "22:00"

        # --- break-glass on the closed case: a reason and a fresh code, then a reveal ---------
        await board.goto(f"{base}/console/cases/{case_id}")
        await board.get_by_label("Reason (at least 20 characters)").fill(
            "Caller's family reports an urgent safety threat; the volunteer is off shift."
        )
        await board.get_by_label("Code from your authenticator app").fill(
            await next_code(supervisor_secret, login_step)
        )
        await board.get_by_role("button", name="Break glass").click()
        await board.get_by_text("Break-glass access is active on this case").wait_for()
        await board.get_by_role("button", name="Show intake details").click()
        await board.locator("#v-caller_name", has_text=CALLER_NAME).wait_for()
        await checks.page(board, "case under break-glass")
        await board.goto(f"{base}/console/break-glass")
        assert "Waiting for another supervisor" in await board.locator("#grants").inner_text()

        # --- the supervisor finds both reveals in the access log and verifies the chain ------
        await board.goto(f"{base}/console/audit?case={case_id}")
        entries = await board.locator("#audit-entries").inner_text()
        reveals = [line for line in entries.splitlines() if "case.reveal" in line]
        assert any("intake" in line for line in reveals), entries
        assert any("break_glass" in line for line in reveals), entries
        assert any("notes" in line for line in reveals), entries  # notes come in the same entry
        await board.get_by_role("button", name="Verify chain").click()
        await board.locator('#verify-result[data-outcome="ok"]').wait_for(timeout=30_000)
        await checks.page(board, "access log")
        await board.screenshot(path=str(SCREENSHOTS / "audit-viewer.png"), full_page=True)

        # --- quick exit: Esc twice ends the session and leaves nothing behind -----------------
        await page.goto(f"{base}/console")
        await page.keyboard.press("Escape")
        await page.keyboard.press("Escape")
        await page.wait_for_url(f"{base}/console/exit")
        storage = await page.evaluate("() => [localStorage.length, sessionStorage.length]")
        assert storage == [0, 0]
        assert not [c for c in await volunteer_context.cookies() if "session" in c["name"]]
        checks.titles.append(await page.title())
        await page.goto(f"{base}/console")
        assert page.url == f"{base}/console/login"  # the session is over on the server too
        await browser.close()

    # What the database holds: the story happened, sealed.
    async with database.sessionmaker() as session:
        case = (await session.scalars(select(Case).where(Case.public_id == case_id))).one()
        assert case.status == "closed" and isinstance(case.caller_name, Sealed)
        assert (await session.scalars(select(CaseNote).where(CaseNote.case_id == case.id))).all()
        assert (await session.scalars(select(Referral).where(Referral.case_id == case.id))).all()
        volunteer = (await session.scalars(select(User).where(User.email == setup.volunteer_email))).one()
        chat = (await session.scalars(select(Case).where(Case.public_id == chat_case))).one()
        assert chat.assignee_id == volunteer.id
    await database.dispose()
    for url in checks.urls:
        assert not any(value in url for value in SENSITIVE), url
    for title in checks.titles:
        assert not any(value in title for value in SENSITIVE) and case_id not in title, title
    assert checks.problems == [], "\n".join(checks.problems)
    with capsys.disabled():
        print(
            f"\noffer shown {latency:.2f} s after it was made (limit 2 s); "
            f"accessibility: structural check on every main page; axe-core {AXE_VERSION} on "
            f"{checks.axe_pages} pages" + ("" if checks.axe else " (axe-core unavailable: npm missing)")
        )
