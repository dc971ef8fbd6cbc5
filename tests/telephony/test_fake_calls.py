"""The call simulator follows TwiML like Twilio: transcripts, verbs, queues, dials, callbacks, rules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from telephony.fake import (
    APPLICATION_ERROR,
    CallSimulator,
    FakeTwilio,
    NumberConfig,
    Party,
    Recorded,
    ScriptedApp,
    twiml,
)
from telephony.rest import NotFound, TwilioRestClient

HOTLINE = "+18005550100"
CALLER = "+15551230000"
VOLUNTEER = "+15557770001"
SECOND_VOLUNTEER = "+15557770002"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeTwilio) -> FakeTwilio:
    return server.reset()


@pytest.fixture
def app(fake: FakeTwilio) -> ScriptedApp:
    app = ScriptedApp(fake.auth_token)
    app.on("/status", "")
    fake.configure_number(
        NumberConfig(HOTLINE, voice_url=app.url("/voice"), status_callback=app.url("/status"))
    )
    return app


@pytest.fixture
async def sim(fake: FakeTwilio, app: ScriptedApp) -> AsyncIterator[CallSimulator]:
    async with CallSimulator(fake, app=app, time_scale=0.001, webhook_timeout=2.0) as sim:
        yield sim


@pytest.fixture
async def client(fake: FakeTwilio) -> AsyncIterator[TwilioRestClient]:
    async with TwilioRestClient(
        fake.account_sid, auth_token=fake.auth_token, api_base_url=fake.base_url
    ) as c:
        yield c


def kinds_in_order(fake: FakeTwilio, wanted: set[str]) -> list[str]:
    return [kind for kind in fake.events.kinds() if kind in wanted]


async def test_fixed_script_produces_the_expected_transcript(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on(
        "/voice",
        twiml(
            '<Say language="en-US">Welcome to the hotline.</Say>',
            '<Pause length="2"/>',
            '<Gather numDigits="1" action="/language" timeout="5">',
            '<Say language="en-US">For English press 1.</Say>',
            '<Say language="es-MX">Para español oprima 2.</Say>',
            "</Gather>",
            "<Say>Sorry, we did not get your choice.</Say>",
        ),
    )
    app.on(
        "/language",
        twiml('<Say language="es-MX">Gracias.</Say><Play>https://cdn.example.org/hold.mp3</Play>'),
    )

    call = await sim.call(CALLER, HOTLINE, Party(digits=("2",)))

    assert call.lines == [
        "say[en-US]: Welcome to the hotline.",
        "pause: 2s",
        "say[en-US]: For English press 1.",
        "say[es-MX]: Para español oprima 2.",
        "say[es-MX]: Gracias.",
        "play: https://cdn.example.org/hold.mp3",
    ]
    assert call.final_status == "completed"
    first, choice = app.to("/voice")[0], app.to("/language")[0]
    assert all(r.signature_valid for r in app.requests)
    assert first["CallStatus"] == "ringing" and first["Direction"] == "inbound"
    assert (first["From"], first["To"], first["Caller"], first["Called"]) == (
        CALLER,
        HOTLINE,
        CALLER,
        HOTLINE,
    )
    assert choice["CallSid"] == call.sid and choice["CallStatus"] == "in-progress"
    assert (choice["Digits"], choice["FinishedOnKey"]) == ("2", "")
    completed = app.to("/status")[0]
    assert completed["CallStatus"] == "completed" and completed["SequenceNumber"] == "0"
    assert int(completed["CallDuration"]) >= 2


async def test_gather_without_input_falls_through_to_the_next_verb(
    app: ScriptedApp, sim: CallSimulator
) -> None:
    app.on("/voice", twiml('<Gather action="/never"><Say>Press a key.</Say></Gather><Say>No input.</Say>'))
    call = await sim.call(CALLER, HOTLINE, Party(digits=(None,)))
    assert call.said == ["Press a key.", "No input."]
    assert app.to("/never") == []


async def test_gather_action_on_empty_result_posts_empty_digits(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml('<Gather action="/empty" actionOnEmptyResult="true"><Say>Key?</Say></Gather>'))
    app.on("/empty", twiml("<Say>Nothing pressed.</Say>"))
    call = await sim.call(CALLER, HOTLINE, Party())
    assert call.said == ["Key?", "Nothing pressed."]
    assert app.to("/empty")[0]["Digits"] == ""


async def test_gather_reports_digits_before_the_finish_key(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml('<Gather action="/code"><Say>Code then pound.</Say></Gather>'))
    app.on("/code", twiml("<Hangup/>"))
    await sim.call(CALLER, HOTLINE, Party(digits=("4711#9",)))
    request = app.to("/code")[0]
    assert (request["Digits"], request["FinishedOnKey"]) == ("4711", "#")


async def test_gather_without_action_posts_to_the_current_document(
    app: ScriptedApp, sim: CallSimulator
) -> None:
    app.on("/voice", twiml('<Gather numDigits="1"><Say>Menu.</Say></Gather>'), twiml("<Say>Chosen.</Say>"))
    call = await sim.call(CALLER, HOTLINE, Party(digits=("3",)))
    assert call.said == ["Menu.", "Chosen."]
    assert app.to("/voice")[1]["Digits"] == "3"


WHISPER = twiml(
    '<Gather numDigits="1" action="/accept" timeout="8"><Say>Hotline call. Press 1 to accept.</Say></Gather>',
    "<Hangup/>",
)


async def test_dial_with_whisper_bridges_and_the_caller_hears_none_of_it(
    app: ScriptedApp, sim: CallSimulator, fake: FakeTwilio
) -> None:
    app.on(
        "/voice",
        twiml(
            '<Say>Connecting you.</Say><Dial action="/dialed" timeout="20">'
            f'<Number url="/whisper">{VOLUNTEER}</Number></Dial>'
        ),
    )
    app.on("/whisper", WHISPER)
    app.on("/accept", twiml())
    app.on("/dialed", twiml("<Say>The volunteer has left the call.</Say>"))
    sim.add_party(VOLUNTEER, Party(answer_after=4, digits=("1",), talk_seconds=25))

    call = await sim.call(CALLER, HOTLINE, Party(talk_seconds=300))

    volunteer = call.children[0]
    assert call.said == ["Connecting you.", "The volunteer has left the call."]
    assert "ringback" in [h.kind for h in call.transcript]
    assert all("accept" not in line for line in call.lines)
    assert volunteer.said == ["Hotline call. Press 1 to accept."]
    whisper = app.to("/whisper")[0]
    assert whisper["CallSid"] == volunteer.sid and whisper["ParentCallSid"] == call.sid
    assert whisper["Direction"] == "outbound-dial" and whisper["To"] == VOLUNTEER
    dialed = app.to("/dialed")[0]
    assert dialed["DialCallStatus"] == "completed" and dialed["DialCallSid"] == volunteer.sid
    assert dialed["DialBridged"] == "true" and dialed["DialCallDuration"] == "25"
    assert volunteer.final_status == "completed"
    assert fake.call(volunteer.sid).parent_call_sid == call.sid
    bridge = fake.events.of("bridge", call.sid)[0]
    accept = fake.events.of("webhook", volunteer.sid, purpose="gather")[0]
    assert bridge.seq > accept.seq and bridge["with_sid"] == volunteer.sid


@pytest.mark.parametrize(
    ("party", "expected"),
    [
        (Party(answer="no-answer"), "no-answer"),
        (Party(answer_after=40), "no-answer"),
        (Party(answer="busy"), "busy"),
        (Party(answer="failed"), "failed"),
    ],
)
async def test_dial_outcomes_reach_the_action(
    app: ScriptedApp, sim: CallSimulator, party: Party, expected: str
) -> None:
    app.on("/voice", twiml(f'<Dial action="/dialed" timeout="20"><Number>{VOLUNTEER}</Number></Dial>'))
    app.on("/dialed", twiml("<Say>Nobody took the call.</Say>"))
    sim.add_party(VOLUNTEER, party)
    call = await sim.call(CALLER, HOTLINE)
    dialed = app.to("/dialed")[0]
    assert dialed["DialCallStatus"] == expected and dialed["DialBridged"] == "false"
    assert call.children[0].final_status == expected
    assert call.said == ["Nobody took the call."]


async def test_voicemail_box_answering_a_whisper_never_bridges(
    app: ScriptedApp, sim: CallSimulator, fake: FakeTwilio
) -> None:
    app.on("/voice", twiml(f'<Dial action="/dialed"><Number url="/whisper">{VOLUNTEER}</Number></Dial>'))
    app.on("/whisper", WHISPER)
    app.on("/dialed", twiml("<Say>Trying someone else.</Say>"))
    sim.add_party(VOLUNTEER, Party(answer="machine", answer_after=2))
    call = await sim.call(CALLER, HOTLINE)
    assert app.to("/dialed")[0]["DialCallStatus"] == "no-answer"
    assert app.to("/accept") == [] and fake.events.of("bridge") == []
    assert call.said == ["Trying someone else."]
    assert call.children[0].said == ["Hotline call. Press 1 to accept."]


async def test_first_of_simultaneous_numbers_to_answer_wins(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on(
        "/voice",
        twiml(
            f'<Dial action="/dialed"><Number>{VOLUNTEER}</Number><Number>{SECOND_VOLUNTEER}</Number></Dial>'
        ),
    )
    app.on("/dialed", twiml())
    sim.add_party(VOLUNTEER, Party(answer_after=9, talk_seconds=5))
    sim.add_party(SECOND_VOLUNTEER, Party(answer_after=2, talk_seconds=5))
    call = await sim.call(CALLER, HOTLINE)
    first, second = call.children
    assert app.to("/dialed")[0]["DialCallSid"] == second.sid
    assert (first.final_status, second.final_status) == ("canceled", "completed")


async def test_dial_without_action_continues_with_the_next_verb(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml(f"<Dial timeout='5'>{VOLUNTEER}</Dial><Say>After the dial.</Say>"))
    call = await sim.call(CALLER, HOTLINE)
    assert call.said == ["After the dial."]


async def test_dial_inside_a_whisper_is_error_13201(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml(f'<Dial action="/dialed"><Number url="/whisper">{VOLUNTEER}</Number></Dial>'))
    app.on("/whisper", twiml(f"<Dial>{SECOND_VOLUNTEER}</Dial>"))
    app.on("/dialed", twiml())
    sim.add_party(VOLUNTEER, Party())
    call = await sim.call(CALLER, HOTLINE)
    volunteer = call.children[0]
    assert volunteer.alerts == [13201]
    assert volunteer.said == [APPLICATION_ERROR]
    assert app.to("/dialed")[0]["DialCallStatus"] == "failed"


WAIT = twiml('<Say>You are caller number one.</Say><Pause length="10"/>')


async def test_enqueue_polls_wait_url_and_leave_reaches_the_action(
    app: ScriptedApp, sim: CallSimulator, fake: FakeTwilio
) -> None:
    app.on(
        "/voice", twiml('<Enqueue waitUrl="/wait" action="/left">english</Enqueue><Say>Unreachable.</Say>')
    )
    app.on("/wait", WAIT, WAIT, twiml("<Leave/>"))
    app.on("/left", twiml("<Say>Please leave a message.</Say>"))

    call = await sim.call(CALLER, HOTLINE)

    polls = app.to("/wait")
    assert len(polls) == 3
    queue = fake.queue("english")
    assert {p["QueueSid"] for p in polls} == {queue.sid}
    assert [p["QueuePosition"] for p in polls] == ["1", "1", "1"]
    assert [p["CurrentQueueSize"] for p in polls] == ["1", "1", "1"]
    # Re-polled after each document ends: a 5-word <Say> (2 s) and a 10 s pause.
    assert [p["QueueTime"] for p in polls] == ["0", "12", "24"]
    assert all(p["MaxQueueSize"] == "1000" and "AvgQueueTime" in p.form for p in polls)
    left = app.to("/left")[0]
    assert (left["QueueResult"], left["QueueSid"], left["QueueTime"]) == ("leave", queue.sid, "24")
    assert call.said[-1] == "Please leave a message." and "Unreachable." not in call.said
    assert fake.queue("english").members == []
    assert kinds_in_order(fake, {"queue.join", "queue.leave"}) == ["queue.join", "queue.leave"]


async def test_leave_without_action_continues_after_enqueue(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml('<Enqueue waitUrl="/wait">english</Enqueue><Say>Back from the queue.</Say>'))
    app.on("/wait", twiml("<Leave/>"))
    call = await sim.call(CALLER, HOTLINE)
    assert call.said == ["Back from the queue."]


async def test_queue_positions_count_callers_ahead(app: ScriptedApp, fake: FakeTwilio) -> None:
    app.on("/voice", twiml('<Enqueue waitUrl="/wait">english</Enqueue>'))
    app.on("/wait", twiml('<Pause length="5"/>'))
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        first = await sim.place_call(CALLER, HOTLINE)
        await fake.events.wait_for("queue.join", first.sid)
        second = await sim.place_call("+15551239999", HOTLINE, Party(hang_up_after=50))
        await second.wait()
        fake.store.update_call(first.sid, status="completed")  # as a REST hang-up would
        await first.wait()
    second_polls = [r for r in app.to("/wait") if r["CallSid"] == second.sid]
    assert second_polls[0]["QueuePosition"] == "2" and second_polls[0]["CurrentQueueSize"] == "2"


async def test_a_key_pressed_while_waiting_can_leave_the_queue(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml('<Enqueue waitUrl="/wait" action="/left">english</Enqueue>'))
    app.on(
        "/wait",
        twiml('<Gather numDigits="1" action="/wait-key"><Say>Press star to leave a message.</Say></Gather>'),
    )
    app.on("/wait-key", twiml("<Leave/>"))  # the Gather action still runs in the queue's context
    app.on("/left", twiml('<Say>Record after the tone.</Say><Record action="/saved" playBeep="true"/>'))
    app.on("/saved", twiml("<Hangup/>"))
    call = await sim.call(CALLER, HOTLINE, Party(digits=(None, "*"), record_seconds=5))
    assert app.to("/wait-key")[0]["Digits"] == "*"
    assert app.to("/left")[0]["QueueResult"] == "leave"
    assert len(app.to("/wait")) == 2 and app.to("/saved")[0]["RecordingDuration"] == "5"
    assert call.said == ["Press star to leave a message."] * 2 + ["Record after the tone."]


def test_hotline_numbers_use_the_public_webhook_paths() -> None:
    config = NumberConfig.hotline(HOTLINE, "https://hotline.example.org/", "https://spare.example.org")
    assert config.voice_url == "https://hotline.example.org/twilio/voice/incoming"
    assert config.status_callback == "https://hotline.example.org/twilio/voice/status"
    assert config.sms_url == "https://hotline.example.org/twilio/messaging/incoming"
    assert config.voice_fallback_url == "https://spare.example.org/twilio/voice/fallback"
    assert config.sms_fallback_url == "https://spare.example.org/twilio/messaging/fallback"


async def test_caller_hanging_up_in_the_queue_reports_hangup(
    app: ScriptedApp, sim: CallSimulator, fake: FakeTwilio
) -> None:
    app.on("/voice", twiml('<Enqueue waitUrl="/wait" action="/left">english</Enqueue>'))
    app.on("/wait", WAIT)
    app.on("/left", twiml("<Say>Ignored: the caller is gone.</Say>"))
    call = await sim.call(CALLER, HOTLINE, Party(hang_up_after=25))
    left = app.to("/left")[0]
    assert left["QueueResult"] == "hangup" and left["CallStatus"] == "completed"
    assert "Ignored: the caller is gone." not in call.said
    assert fake.queue("english").members == [] and call.final_status == "completed"


async def test_wait_document_with_a_forbidden_verb_ends_in_the_fallback(fake: FakeTwilio) -> None:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(
        NumberConfig(HOTLINE, voice_url=app.url("/voice"), voice_fallback_url=app.url("/fallback"))
    )
    app.on("/voice", twiml('<Enqueue waitUrl="/wait" action="/left">english</Enqueue>'))
    app.on("/wait", twiml(f"<Say>Hold on.</Say><Dial>{VOLUNTEER}</Dial>"))
    app.on("/fallback", twiml("<Say>We are having trouble. Please call back.</Say>"))
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        call = await sim.call(CALLER, HOTLINE)
    assert call.alerts == [12100]
    fallback = app.to("/fallback")[0]
    assert fallback["ErrorCode"] == "12100" and fallback["ErrorUrl"] == app.url("/wait")
    assert call.said == ["We are having trouble. Please call back."]  # nothing of the bad document ran
    assert app.to("/left") == [] and fake.queue("english").members == []
    assert fake.events.of("queue.leave", call.sid)[0]["result"] == "error"


async def test_redirect_in_the_wait_url_leaves_the_queue(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml('<Enqueue waitUrl="/wait" action="/left">english</Enqueue>'))
    app.on("/wait", twiml("<Redirect>/elsewhere</Redirect>"))
    app.on("/left", twiml("<Say>Not executed.</Say>"))
    app.on("/elsewhere", twiml("<Say>Redirected out of the queue.</Say>"))
    call = await sim.call(CALLER, HOTLINE)
    assert app.to("/left")[0]["QueueResult"] == "redirected-from-waitUrl"
    assert call.said == ["Redirected out of the queue."]


async def test_rest_dequeue_bridges_the_queued_caller_into_a_conference(
    app: ScriptedApp, sim: CallSimulator, fake: FakeTwilio, client: TwilioRestClient
) -> None:
    """The hotline's voice flow: queue → volunteer leg with whisper → press 1 → dequeue → conference."""
    offer: dict[str, str] = {}

    async def first_poll(request: Recorded) -> str:
        offer.update(queue=request["QueueSid"], caller=request["CallSid"])
        offer["leg"] = await client.create_call(
            to=VOLUNTEER, from_=HOTLINE, url=app.url("/offer"), status_callback=app.url("/status"), timeout=20
        )
        return WAIT

    async def accept(request: Recorded) -> str:
        await client.dequeue_call(offer["queue"], offer["caller"], app.url("/join"))
        with pytest.raises(NotFound):  # the same caller cannot be taken twice
            await client.dequeue_call(offer["queue"], offer["caller"], app.url("/join"))
        return twiml('<Dial><Conference endConferenceOnExit="true">task-7</Conference></Dial>')

    app.on(
        "/voice",
        twiml('<Say>Please hold.</Say><Enqueue waitUrl="/wait" action="/queue-done">english</Enqueue>'),
    )
    app.on("/wait", first_poll, WAIT)
    app.on("/offer", WHISPER.replace("/accept", "/accept-offer"))
    app.on("/accept-offer", accept)
    app.on("/join", twiml("<Dial><Conference>task-7</Conference></Dial>"))
    app.on("/queue-done", twiml("<Say>Not used after a REST dequeue.</Say>"))
    # Patience is generous: the volunteer waits in the conference for the app's REST dequeue.
    sim.add_party(VOLUNTEER, Party(answer_after=3, digits=("1",), talk_seconds=40, hold_patience=5000))

    call = await sim.call(CALLER, HOTLINE, Party(talk_seconds=600))
    await sim.wait_idle()

    volunteer = sim.leg(offer["leg"])
    # How many hold documents the caller heard depends on how fast the app accepted.
    assert call.said[0] == "Please hold." and set(call.said[1:]) == {"You are caller number one."}
    assert volunteer.said == ["Hotline call. Press 1 to accept."]
    assert app.to("/queue-done")[0]["QueueResult"] == "redirected"
    assert app.to("/join")[0]["CallSid"] == call.sid
    assert volunteer.final_status == call.final_status == "completed"
    assert kinds_in_order(
        fake,
        {
            "queue.join",
            "queue.dequeue_requested",
            "queue.leave",
            "conference.join",
            "bridge",
            "conference.end",
        },
    ) == [
        "queue.join",
        "queue.dequeue_requested",
        "queue.leave",
        "conference.join",
        "conference.join",
        "bridge",
        "conference.end",
    ]
    bridge = fake.events.of("bridge")[0]
    assert {bridge.sid, *bridge["with_sids"]} == {call.sid, volunteer.sid}
    assert [e["result"] for e in fake.events.of("queue.leave")] == ["redirected"]


async def test_record_posts_the_recording_and_its_audio_is_downloadable(
    app: ScriptedApp, sim: CallSimulator, client: TwilioRestClient, fake: FakeTwilio
) -> None:
    audio = b"RIFF-voicemail-audio"
    app.on(
        "/voice",
        twiml(
            "<Say>Leave a message after the beep.</Say>",
            '<Record action="/saved" maxLength="120" recordingStatusCallback="/recording-status"/>',
        ),
    )
    app.on("/saved", twiml("<Say>Thank you.</Say>"))
    app.on("/recording-status", "")
    call = await sim.call(CALLER, HOTLINE, Party(record_seconds=12, recording_audio=audio))
    await sim.wait_idle()
    saved = app.to("/saved")[0]
    assert saved["RecordingDuration"] == "12" and saved["Digits"] == "#"
    assert saved["RecordingSid"] == call.recordings[0]
    assert (
        saved["RecordingUrl"]
        == f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Recordings/{call.recordings[0]}"
    )
    assert [h.kind for h in call.transcript] == ["say", "beep", "say"]
    status = app.to("/recording-status")[0]
    assert status["RecordingStatus"] == "completed" and status["RecordingSid"] == saved["RecordingSid"]
    assert await client.fetch_recording_audio(saved["RecordingSid"]) == audio


async def test_hanging_up_while_recording_posts_the_action_with_digits_hangup(
    app: ScriptedApp, sim: CallSimulator
) -> None:
    app.on("/voice", twiml('<Record action="/saved"/>'))
    app.on("/saved", twiml("<Say>Ignored.</Say>"))
    call = await sim.call(CALLER, HOTLINE, Party(record_seconds=60, hang_up_after=8))
    saved = app.to("/saved")[0]
    assert saved["Digits"] == "hangup" and saved["CallStatus"] == "completed"
    assert saved["RecordingDuration"] == "8" and call.said == []


async def test_redirect_verb_and_hangup(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml("<Say>One.</Say><Redirect>/two</Redirect><Say>Skipped.</Say>"))
    app.on("/two", twiml("<Say>Two.</Say><Hangup/><Say>Never.</Say>"))
    call = await sim.call(CALLER, HOTLINE)
    assert call.said == ["One.", "Two."]


async def test_rest_redirect_and_hangup_interrupt_a_live_call(
    app: ScriptedApp, sim: CallSimulator, client: TwilioRestClient, fake: FakeTwilio
) -> None:
    app.on("/voice", twiml('<Say>Hold.</Say><Pause length="600"/><Say>Too late.</Say>'))
    app.on("/moved", twiml('<Say>Moved by the app.</Say><Pause length="600"/>'))
    call = await sim.place_call(CALLER, HOTLINE)
    await fake.events.wait_for("verb", call.sid, verb="Pause")
    await client.redirect_call(call.sid, app.url("/moved"))
    await fake.events.wait_for("verb", call.sid, verb="Pause", count=2)  # the redirected document's pause
    await client.hang_up_call(call.sid)
    await call.wait()
    assert call.said == ["Hold.", "Moved by the app."]
    assert call.final_status == "completed"
    assert (await client.fetch_call(call.sid)).status == "completed"
    await client.hang_up_call(call.sid)  # hanging up an ended call is not an error


async def test_status_callbacks_carry_sequence_numbers_even_out_of_order(
    fake: FakeTwilio, client: TwilioRestClient
) -> None:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(NumberConfig(HOTLINE))
    app.on("/leg", twiml("<Say>Hello volunteer.</Say>"))
    app.on("/leg-status", "")
    async with CallSimulator(fake, app=app, time_scale=0.001, status_callback_order="reversed") as sim:
        sim.add_party(VOLUNTEER, Party(answer_after=2))
        sid = await client.create_call(
            to=VOLUNTEER, from_=HOTLINE, url=app.url("/leg"), status_callback=app.url("/leg-status")
        )
        await (await sim.wait_for_leg(VOLUNTEER)).wait()
        await sim.wait_idle()
    callbacks = app.to("/leg-status")
    assert [r["SequenceNumber"] for r in callbacks] == ["3", "2", "1", "0"]
    by_sequence = sorted(callbacks, key=lambda r: int(r["SequenceNumber"]))
    assert [r["CallStatus"] for r in by_sequence] == ["initiated", "ringing", "in-progress", "completed"]
    assert all(r["CallSid"] == sid and r["CallbackSource"] == "call-progress-events" for r in callbacks)
    assert by_sequence[-1]["CallDuration"] == "1" and "Timestamp" in by_sequence[-1].form  # one short <Say>


async def test_shuffled_status_callbacks_are_deterministic_per_seed(
    fake: FakeTwilio, client: TwilioRestClient
) -> None:
    orders = []
    for _ in range(2):
        app = ScriptedApp(fake.auth_token)
        app.on("/leg", twiml("<Say>Hi.</Say>"))
        app.on("/leg-status", "")
        async with CallSimulator(
            fake, app=app, time_scale=0.001, status_callback_order="shuffled", seed=7
        ) as sim:
            sim.add_party(VOLUNTEER, Party(answer_after=1))
            await client.create_call(
                to=VOLUNTEER, from_=HOTLINE, url=app.url("/leg"), status_callback=app.url("/leg-status")
            )
            await sim.wait_for_leg(VOLUNTEER)
            await sim.wait_idle()
        orders.append([r["SequenceNumber"] for r in app.to("/leg-status")])
    assert orders[0] == orders[1] and sorted(orders[0]) == ["0", "1", "2", "3"]


async def test_outbound_call_reports_machine_detection(fake: FakeTwilio, client: TwilioRestClient) -> None:
    app = ScriptedApp(fake.auth_token)
    app.on("/leg", twiml("<Hangup/>"))
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        sim.add_party(VOLUNTEER, Party(answer="machine", answer_after=5))
        sid = await client.create_call(
            to=VOLUNTEER, from_=HOTLINE, url=app.url("/leg"), machine_detection="Enable"
        )
        await (await sim.wait_for_leg(VOLUNTEER)).wait()
    request = app.to("/leg")[0]
    assert request["AnsweredBy"] == "machine_start" and request["Direction"] == "outbound-api"
    info = await client.fetch_call(sid)
    assert (info.status, info.answered_by) == ("completed", "machine_start")


async def test_rest_hangup_of_a_ringing_leg_cancels_it(fake: FakeTwilio, client: TwilioRestClient) -> None:
    app = ScriptedApp(fake.auth_token)
    app.on("/leg-status", "")
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        sim.add_party(VOLUNTEER, Party(answer_after=10_000))
        sid = await client.create_call(
            to=VOLUNTEER,
            from_=HOTLINE,
            url=app.url("/leg"),
            status_callback=app.url("/leg-status"),
            timeout=600,
        )
        leg = await sim.wait_for_leg(VOLUNTEER)
        await fake.events.wait_for("call.ringing", sid)
        await client.hang_up_call(sid)
        await leg.wait()
        await sim.wait_idle()
    assert leg.final_status == "canceled"
    assert app.to("/leg-status")[-1]["CallStatus"] == "canceled"


async def test_application_error_without_fallback_ends_the_call(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml("<Say>Unreachable</Say>").replace("<Response>", "<Response><Say>a & b</Say>"))
    call = await sim.call(CALLER, HOTLINE)
    assert call.alerts == [12100]
    assert call.said == [APPLICATION_ERROR] and call.final_status == "completed"


async def test_a_runaway_redirect_loop_is_cut_off(fake: FakeTwilio) -> None:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(NumberConfig(HOTLINE, voice_url=app.url("/voice")))
    app.on("/voice", twiml("<Redirect>/voice</Redirect>"))
    async with CallSimulator(fake, app=app, time_scale=0.001, max_steps=25) as sim:
        call = await sim.call(CALLER, HOTLINE)
    assert len(app.to("/voice")) == 25
    assert fake.events.of("sim.step-limit", call.sid)
