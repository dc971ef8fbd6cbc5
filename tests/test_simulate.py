"""`hotline simulate` against a real HTTP server answering a fixed TwiML script (signatures checked)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner, Result

from app.cli import cli
from app.simulate import mask_number, needs_drill, parse_digits
from telephony.fake import Recorded, Reply, ScriptedApp, twiml

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "simulate-test-token-0123456789"
HOTLINE = "+15005550006"
CALLER = "+12025550123"
VOLUNTEER = "+15557770042"


@dataclass
class Served:
    app: ScriptedApp
    url: str


@pytest.fixture(autouse=True)
def no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read `.env` from the working directory: run where there is none."""
    monkeypatch.chdir(tmp_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served() -> Iterator[Served]:
    """A ScriptedApp (checks X-Twilio-Signature on every request) on a real loopback port."""
    app = ScriptedApp(TOKEN)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    app.public_url = url
    app.on("/twilio/voice/status", "")
    yield Served(app, url)
    server.should_exit = True
    thread.join(10)


def script_menu(app: ScriptedApp) -> None:
    """Say welcome, Gather one digit, Say the digit back, Hang up."""

    async def menu(request: Recorded) -> str:
        return twiml(f"<Say>You pressed {request['Digits']}.</Say>", "<Hangup/>")

    app.on(
        "/twilio/voice/incoming",
        twiml(
            "<Say>Welcome to the drill line.</Say>",
            '<Gather numDigits="1" action="/twilio/voice/menu" timeout="5">',
            '<Say language="es-MX">Para español oprima 2.</Say>',
            "</Gather>",
            "<Say>We did not get your choice.</Say>",
            "<Hangup/>",
        ),
    )
    app.on("/twilio/voice/menu", menu)


def script_dial(app: ScriptedApp) -> None:
    """Connect to one volunteer with a press-1 whisper."""

    async def accept(request: Recorded) -> str:
        if request["Digits"] == "1":
            return twiml("<Say>Connecting you to the caller.</Say>")
        return twiml("<Hangup/>")

    app.on(
        "/twilio/voice/incoming",
        twiml(
            "<Say>Please hold while we find a volunteer.</Say>",
            '<Dial action="/twilio/voice/dialled" timeout="20">',
            f'<Number url="/twilio/voice/whisper">{VOLUNTEER}</Number>',
            "</Dial>",
        ),
    )
    app.on(
        "/twilio/voice/whisper",
        twiml(
            '<Gather numDigits="1" action="/twilio/voice/accept" timeout="5">',
            "<Say>Hotline call. Press 1 to accept.</Say>",
            "</Gather>",
            "<Hangup/>",
        ),
    )
    app.on("/twilio/voice/accept", accept)
    app.on("/twilio/voice/dialled", twiml("<Say>Thank you for calling. Goodbye.</Say>", "<Hangup/>"))


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    environment = {"TWILIO_AUTH_TOKEN": TOKEN, "HOTLINE_ENV": "development", "HOTLINE_TWILIO_NUMBER": HOTLINE}
    environment.update(env or {})
    return CliRunner().invoke(cli, ["simulate", *args], env=environment, catch_exceptions=False)


def lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


def test_a_call_prints_the_expected_transcript(served: Served) -> None:
    script_menu(served.app)

    result = run("call", "--url", served.url, "--digits", "2", "--time-scale", "0.001")

    assert result.exit_code == 0, result.stderr
    assert lines(result) == [
        "caller hears: Welcome to the drill line.",
        "caller hears: Para español oprima 2. (es-MX)",
        "caller presses 2",
        "caller hears: You pressed 2.",
        "caller leg ends: completed",
        "outcome: caller leg completed",
    ]
    requests = [r for r in served.app.requests if r.method == "POST"]
    assert [r.path for r in requests][:2] == ["/twilio/voice/incoming", "/twilio/voice/menu"]
    assert all(r.signature_valid for r in requests)
    first = served.app.to("/twilio/voice/incoming")[0]
    assert (first["From"], first["To"], first.url) == (CALLER, HOTLINE, served.url + "/twilio/voice/incoming")
    assert "fake Twilio REST API at http://127.0.0.1:" in result.stderr


def test_silence_at_the_gather_falls_through(served: Served) -> None:
    script_menu(served.app)
    result = run("call", "--url", served.url, "--from", "+12025550199", "--time-scale", "0.001")
    assert result.exit_code == 0, result.stderr
    assert lines(result) == [
        "caller hears: Welcome to the drill line.",
        "caller hears: Para español oprima 2. (es-MX)",
        "caller presses nothing",
        "caller hears: We did not get your choice.",
        "caller leg ends: completed",
        "outcome: caller leg completed",
    ]
    assert served.app.to("/twilio/voice/incoming")[0]["From"] == "+12025550199"


def test_an_answering_volunteer_gets_the_whisper_and_is_connected(served: Served) -> None:
    script_dial(served.app)

    result = run("call", "--url", served.url, "--answer", "--time-scale", "0.001")

    assert result.exit_code == 0, result.stderr
    out = lines(result)
    assert out[:9] == [
        "caller hears: Please hold while we find a volunteer.",
        "caller hears: ringing",
        "volunteer +1…42 rings",
        "volunteer +1…42 answers",
        "volunteer +1…42 hears: Hotline call. Press 1 to accept.",
        "volunteer +1…42 presses 1",
        "volunteer +1…42 hears: Connecting you to the caller.",
        "caller is connected to volunteer +1…42",
        "volunteer +1…42 is connected to caller",
    ]
    assert "caller hears: Thank you for calling. Goodbye." in out
    assert out[-1] == "outcome: caller leg completed; volunteer +1…42 completed"
    assert VOLUNTEER not in result.output  # only the last two digits of a volunteer's number
    assert all(r.signature_valid for r in served.app.requests if r.method == "POST")


def test_an_unanswered_volunteer_leg_rings_out(served: Served) -> None:
    script_dial(served.app)
    result = run("call", "--url", served.url, "--no-answer", "--time-scale", "0.001")
    assert result.exit_code == 0, result.stderr
    assert lines(result) == [
        "caller hears: Please hold while we find a volunteer.",
        "caller hears: ringing",
        "volunteer +1…42 rings",
        "volunteer +1…42 leg ends: no-answer",
        "caller hears: Thank you for calling. Goodbye.",
        "caller leg ends: completed",
        "outcome: caller leg completed; volunteer +1…42 no-answer",
    ]
    assert served.app.to("/twilio/voice/dialled")[0]["DialCallStatus"] == "no-answer"


def test_a_volunteer_voicemail_never_accepts(served: Served) -> None:
    script_dial(served.app)
    result = run("call", "--url", served.url, "--machine", "--time-scale", "0.001")
    assert result.exit_code == 0, result.stderr
    out = lines(result)
    assert "volunteer +1…42 answers (voicemail)" in out
    assert "volunteer +1…42 presses nothing" in out
    assert not any("is connected" in line for line in out)
    assert served.app.to("/twilio/voice/dialled")[0]["DialCallStatus"] == "no-answer"


def test_drill_marks_every_webhook_url_inside_the_signature(served: Served) -> None:
    script_menu(served.app)
    result = run("call", "--url", served.url, "--digits", "1", "--drill", "--time-scale", "0.001")
    assert result.exit_code == 0, result.stderr
    incoming = served.app.to("/twilio/voice/incoming")[0]
    assert incoming.url == served.url + "/twilio/voice/incoming?drill=1"
    assert incoming.signature_valid
    status = served.app.to("/twilio/voice/status")
    assert status and all(r.url.endswith("?drill=1") and r.signature_valid for r in status)


def test_an_sms_conversation_prints_the_replies(served: Served) -> None:
    async def reply(request: Recorded) -> str:
        count = len(served.app.to("/twilio/messaging/incoming"))
        return twiml(f"<Message>Reply {count}: a volunteer will text you soon.</Message>")

    served.app.on("/twilio/messaging/incoming", reply)

    result = run(
        "sms",
        "--url",
        served.url,
        "--text",
        "I need help",
        "--text",
        "Are you there?",
        "--time-scale",
        "0.001",
    )

    assert result.exit_code == 0, result.stderr
    assert lines(result) == [
        "caller texts: I need help",
        "caller receives: Reply 1: a volunteer will text you soon.",
        "caller texts: Are you there?",
        "caller receives: Reply 2: a volunteer will text you soon.",
        "outcome: 2 sent, 2 received (2 as direct replies)",
    ]
    bodies = [r["Body"] for r in served.app.to("/twilio/messaging/incoming")]
    assert bodies == ["I need help", "Are you there?"]
    assert all(r.signature_valid for r in served.app.requests if r.method == "POST")


def test_a_server_that_answers_non_twiml_fails_with_one_line(served: Served) -> None:
    served.app.on("/twilio/voice/incoming", Reply("all good!", content_type="text/plain"))
    result = run("call", "--url", served.url, "--time-scale", "0.001")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("hotline: error:")]
    assert errors == [
        "hotline: error: the server did not answer /twilio/voice/incoming with usable TwiML "
        "(Twilio error 12300)"
    ]
    assert "Traceback" not in result.output


def test_a_wrong_auth_token_is_refused_by_the_server(served: Served) -> None:
    script_menu(served.app)
    result = run("call", "--url", served.url, "--time-scale", "0.001", env={"TWILIO_AUTH_TOKEN": "wrong"})
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "hotline: error: the server refused the signed webhook to /twilio/voice/incoming (HTTP 403): "
        "check that TWILIO_AUTH_TOKEN is the server's and --url is its HOTLINE_PUBLIC_URL"
    )
    assert not any(r.signature_valid for r in served.app.requests if r.method == "POST")


def test_a_server_error_is_named(served: Served) -> None:
    served.app.on("/twilio/messaging/incoming", Reply("boom", status=500))
    result = run("sms", "--url", served.url, "--text", "hello", "--time-scale", "0.001")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "hotline: error: the server answered /twilio/messaging/incoming with HTTP 500 (Twilio error 11200)"
    )


def test_an_unreachable_server_fails_with_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run("call", "--url", url)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"hotline: error: cannot reach the server at {url} (ConnectError)"
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["call"], ["sms", "--text", "hi"]])
def test_a_non_loopback_target_needs_drill(command: list[str]) -> None:
    # Refused before anything is started or sent: no network needed.
    result = run(*command, "--url", "https://hotline.example.org")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "hotline: error: refusing to simulate against https://hotline.example.org: it is not a loopback "
        "address, so it may be a production server; add --drill to mark the contact as a drill "
        "(left out of statistics)"
    )
    assert result.stdout == ""


def test_a_production_configuration_needs_drill_even_on_loopback(served: Served) -> None:
    script_menu(served.app)
    result = run("call", "--url", served.url, env={"HOTLINE_ENV": "production"})
    assert result.exit_code == 2 and "HOTLINE_ENV is production" in result.stderr
    assert served.app.requests == []  # not even the reachability probe


def test_missing_auth_token_or_number_is_one_line() -> None:
    result = run("call", "--url", "http://127.0.0.1:9", env={"TWILIO_AUTH_TOKEN": ""})
    assert result.exit_code == 2 and "TWILIO_AUTH_TOKEN is not set" in result.stderr
    result = run("call", "--url", "http://127.0.0.1:9", env={"HOTLINE_TWILIO_NUMBER": ""})
    assert result.exit_code == 2 and "pass --to or set HOTLINE_TWILIO_NUMBER" in result.stderr


def test_helpers() -> None:
    assert mask_number("+15557770042") == "+1…42"
    assert mask_number("whatsapp:+447700900123") == "+4…23"
    assert parse_digits("1,,2#") == ("1", None, "2#")
    assert parse_digits("") == ()
    assert needs_drill("http://127.0.0.1:8000", production=False) is False
    assert needs_drill("http://localhost:8000", production=False) is False
    assert needs_drill("http://[::1]:8000", production=False) is False
    assert needs_drill("http://127.0.0.1:8000", production=True) is True
    assert needs_drill("http://10.0.0.5:8000", production=False) is True


def test_the_hotline_command_runs_simulate(served: Served) -> None:
    script_menu(served.app)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "TWILIO_"))}
    environment.update({"PYTHONPATH": str(ROOT), "TWILIO_AUTH_TOKEN": TOKEN})
    args = [
        "simulate",
        "call",
        "--url",
        served.url,
        "--to",
        HOTLINE,
        "--digits",
        "3",
        "--time-scale",
        "0.001",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT / "tests",
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "caller presses 3" in result.stdout.splitlines()
    assert "caller hears: You pressed 3." in result.stdout.splitlines()
