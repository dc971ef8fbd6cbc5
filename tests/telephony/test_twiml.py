"""TwiML builders: exact output for our flows, context rules, and text that can never become markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.twiml import (
    MAX_MESSAGE_BODY_CHARS,
    MAX_SAY_CHARS,
    MAX_TWIML_BYTES,
    Prompt,
    TwimlContext,
    TwimlError,
    announce,
    check_context,
    dial_conference,
    dial_number,
    emergency_option,
    empty_response,
    enqueue,
    hangup,
    hold,
    language_menu,
    leave,
    message_reply,
    overflow_fallback,
    record_voicemail,
    redirect,
    sanitize_text,
    whisper,
)

BASE = "https://hotline.example.org/twilio/voice"
DECL = '<?xml version="1.0" encoding="UTF-8"?>'
EN = Prompt.say("For English, press 1.", voice="Polly.Joanna", language="en-US")
ES = Prompt.say("Para español, oprima 2.", voice="Polly.Lupe", language="es-US")
HT = Prompt.play("https://media.example.org/prompts/ht/menu.mp3")
VOLUNTEER = "+14155552671"
HOTLINE = "+14155550123"


def structure(xml: str) -> tuple[Any, ...]:
    """Tags and attribute names of the whole tree: what markup injection would change."""

    def walk(element: ET.Element) -> tuple[Any, ...]:
        return (element.tag, tuple(sorted(element.attrib)), tuple(walk(child) for child in element))

    return walk(ET.fromstring(xml))


def says(xml: str) -> list[str]:
    return [element.text or "" for element in ET.fromstring(xml).iter("Say")]


# --- every builder, in the context Twilio runs it ------------------------------------------------

BUILDERS: list[tuple[str, Callable[[], str], TwimlContext]] = [
    (
        "language_menu",
        lambda: language_menu([EN, ES, HT], action_url=f"{BASE}/lang", no_input_url=f"{BASE}/menu?attempt=2"),
        "voice",
    ),
    (
        "emergency_option",
        lambda: emergency_option([EN], action_url=f"{BASE}/emergency", no_input_url=f"{BASE}/queue"),
        "voice",
    ),
    ("announce", lambda: announce([EN, HT], redirect_url=f"{BASE}/next"), "voice"),
    ("announce_hangup", lambda: announce([EN], hang_up=True), "voice"),
    (
        "enqueue",
        lambda: enqueue("task-3f2a", wait_url=f"{BASE}/wait", action_url=f"{BASE}/left", before=[EN]),
        "voice",
    ),
    ("hold_music", lambda: hold([EN], music_url="https://media.example.org/hold.mp3"), "wait_url"),
    (
        "hold_info",
        lambda: hold([EN], info_prompts=[ES], info_action_url=f"{BASE}/info", pause_seconds=15),
        "wait_url",
    ),
    ("leave", lambda: leave([EN]), "wait_url"),
    ("whisper", lambda: whisper([EN], action_url=f"{BASE}/accept?attempt=1&offer=o-9"), "whisper"),
    (
        "dial_conference",
        lambda: dial_conference("task-3f2a", status_callback_url=f"{BASE}/conference"),
        "voice",
    ),
    (
        "dial_number",
        lambda: dial_number(
            VOLUNTEER, caller_id=HOTLINE, action_url=f"{BASE}/dialed", whisper_url=f"{BASE}/whisper"
        ),
        "voice",
    ),
    (
        "record_voicemail",
        lambda: record_voicemail([EN], action_url=f"{BASE}/vm", recording_status_callback_url=f"{BASE}/rec"),
        "voice",
    ),
    ("redirect", lambda: redirect(f"{BASE}/next"), "voice"),
    ("hangup", lambda: hangup([EN]), "voice"),
    (
        "overflow",
        lambda: overflow_fallback([EN], overflow_number=VOLUNTEER, caller_id=HOTLINE, connecting=[ES]),
        "voice",
    ),
    ("overflow_no_number", lambda: overflow_fallback([EN], overflow_number=None), "voice"),
    ("message_reply", lambda: message_reply("We are here. A volunteer will reply soon."), "messaging"),
    ("empty", empty_response, "voice"),
]


@pytest.mark.parametrize(
    ("build", "context"), [(b, c) for _, b, c in BUILDERS], ids=[n for n, _, _ in BUILDERS]
)
def test_every_builder_output_is_valid_in_its_context(
    build: Callable[[], str], context: TwimlContext
) -> None:
    xml = build()
    assert xml.startswith(DECL + "<Response")
    check_context(xml, context)


def test_language_menu_exact() -> None:
    xml = language_menu([EN, HT], action_url=f"{BASE}/lang", no_input_url=f"{BASE}/menu?attempt=2", timeout=6)
    assert xml == (
        DECL + "<Response>"
        f'<Gather action="{BASE}/lang" input="dtmf" method="POST" numDigits="1" timeout="6">'
        '<Say language="en-US" voice="Polly.Joanna">For English, press 1.</Say>'
        "<Play>https://media.example.org/prompts/ht/menu.mp3</Play>"
        "</Gather>"
        f'<Redirect method="POST">{BASE}/menu?attempt=2</Redirect>'
        "</Response>"
    )


def test_whisper_exact_hangs_up_without_input() -> None:
    xml = whisper([EN], action_url=f"{BASE}/accept")
    assert xml == (
        DECL + "<Response>"
        f'<Gather action="{BASE}/accept" input="dtmf" method="POST" numDigits="1" timeout="5">'
        '<Say language="en-US" voice="Polly.Joanna">For English, press 1.</Say>'
        "</Gather><Hangup /></Response>"
    )


def test_enqueue_exact_has_no_workflow() -> None:
    xml = enqueue("task-3f2a", wait_url=f"{BASE}/wait", action_url=f"{BASE}/left")
    assert xml == (
        DECL + "<Response>"
        f'<Enqueue action="{BASE}/left" method="POST" waitUrl="{BASE}/wait" waitUrlMethod="POST">'
        "task-3f2a</Enqueue>"
        "</Response>"
    )


def test_dial_conference_exact() -> None:
    xml = dial_conference(
        "task-3f2a",
        status_callback_url=f"{BASE}/conference",
        status_callback_events=("start", "end", "join", "leave"),
        start_conference_on_enter=True,
        end_conference_on_exit=True,
        action_url=f"{BASE}/after",
    )
    assert xml == (
        DECL + "<Response>"
        f'<Dial action="{BASE}/after" method="POST">'
        '<Conference beep="false" endConferenceOnExit="true" startConferenceOnEnter="true" '
        f'statusCallback="{BASE}/conference" statusCallbackEvent="start end join leave" '
        'statusCallbackMethod="POST" waitUrl="">task-3f2a</Conference>'
        "</Dial></Response>"
    )


def test_dial_number_exact() -> None:
    xml = dial_number(
        VOLUNTEER, caller_id=HOTLINE, action_url=f"{BASE}/dialed", whisper_url=f"{BASE}/whisper", timeout=20
    )
    assert xml == (
        DECL + "<Response>"
        f'<Dial action="{BASE}/dialed" answerOnBridge="true" callerId="{HOTLINE}" method="POST" timeout="20">'
        f'<Number method="POST" url="{BASE}/whisper">{VOLUNTEER}</Number>'
        "</Dial></Response>"
    )


def test_record_voicemail_attributes() -> None:
    record = ET.fromstring(
        record_voicemail(
            [EN],
            action_url=f"{BASE}/vm",
            recording_status_callback_url=f"{BASE}/rec",
            max_length=90,
            trim=False,
        )
    ).find("Record")
    assert record is not None
    assert record.attrib == {
        "action": f"{BASE}/vm",
        "method": "POST",
        "maxLength": "90",
        "playBeep": "true",
        "trim": "do-not-trim",
        "timeout": "5",
        "finishOnKey": "#",
        "recordingStatusCallback": f"{BASE}/rec",
        "recordingStatusCallbackMethod": "POST",
        "recordingStatusCallbackEvent": "completed absent",
        "transcribe": "false",
    }


def test_hold_uses_pause_without_music_and_gather_for_info() -> None:
    root = ET.fromstring(hold([EN], info_prompts=[ES], info_action_url=f"{BASE}/info", pause_seconds=15))
    assert [child.tag for child in root] == ["Say", "Gather", "Pause"]
    assert root[2].attrib == {"length": "15"}
    assert [child.tag for child in root[1]] == ["Say"]
    music = ET.fromstring(hold(music_url="https://media.example.org/hold.mp3"))
    assert [child.tag for child in music] == ["Play"]


def test_hold_info_needs_both_prompt_and_url() -> None:
    with pytest.raises(ValueError):
        hold(info_prompts=[EN])
    with pytest.raises(ValueError):
        hold(info_action_url=f"{BASE}/info")


def test_leave_is_the_last_verb() -> None:
    assert [child.tag for child in ET.fromstring(leave([EN]))] == ["Say", "Leave"]


def test_overflow_dials_then_apologises_then_hangs_up() -> None:
    root = ET.fromstring(
        overflow_fallback([EN], overflow_number=VOLUNTEER, caller_id=HOTLINE, connecting=[ES])
    )
    assert [child.tag for child in root] == ["Say", "Dial", "Say", "Hangup"]
    assert root[1].text == VOLUNTEER and root[1].attrib == {"callerId": HOTLINE, "timeout": "30"}
    no_number = ET.fromstring(overflow_fallback([EN], overflow_number=None, connecting=[ES]))
    assert [child.tag for child in no_number] == ["Say", "Hangup"]


def test_overflow_renders_without_any_dependency() -> None:
    # Same inputs, same bytes: it can be precomputed, served by a second host or pasted into a TwiML Bin.
    first = overflow_fallback([EN], overflow_number=VOLUNTEER)
    assert first == overflow_fallback([EN], overflow_number=VOLUNTEER)


def test_message_reply_and_empty_response() -> None:
    assert message_reply("Hola") == DECL + "<Response><Message>Hola</Message></Response>"
    assert empty_response() == DECL + "<Response />"
    check_context(empty_response(), "messaging")


# --- input validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE}/gather?from=+14155552671",
        f"{BASE}/gather?from=%2B14155552671",
        f"{BASE}/callers/%2b14155552671/step",
        f"{BASE}/gather?step=menu&attempt=1",  # unsorted query keys
        "/twilio/voice/gather",  # relative
        "ftp://hotline.example.org/x",
        "https://user:pass@hotline.example.org/x",
        f"{BASE}/gather with space",
        "",
    ],
)
def test_callback_urls_are_refused_when_unsafe(url: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        redirect(url)
    assert "4155552671" not in str(excinfo.value)


def test_sorted_query_and_connection_override_fragment_are_fine() -> None:
    check_context(redirect(f"{BASE}/gather?attempt=1&step=menu#rc=2&rt=3000"), "voice")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": "hi", "audio_url": "https://media.example.org/a.mp3"},
        {},
        {"text": "hi", "voice": "Polly.Joanna"},
        {"text": "hi", "language": "en-US"},
        {"text": "   ", "voice": "Polly.Joanna", "language": "en-US"},
        {"text": "\x00\x01", "voice": "Polly.Joanna", "language": "en-US"},
        {"text": "x" * (MAX_SAY_CHARS + 1), "voice": "Polly.Joanna", "language": "en-US"},
        {"text": "hi", "voice": 'Polly"Joanna', "language": "en-US"},
        {"text": "hi", "voice": "Polly.Joanna", "language": "English"},
        {"audio_url": "file:///etc/passwd"},
        {"audio_url": "https://media.example.org/a.mp3", "voice": "Polly.Joanna"},
        {"audio_url": "https://media.example.org/+14155552671.mp3"},
    ],
)
def test_invalid_prompts_are_refused(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Prompt(**kwargs)


def test_prompt_accepts_google_voices_and_three_letter_languages() -> None:
    cantonese = Prompt.say("你好", voice="Google.yue-HK-Standard-A", language="yue-HK")
    assert cantonese.language == "yue-HK"
    assert Prompt.say("x" * MAX_SAY_CHARS, voice="alice", language="en-US").text is not None


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, "task 1", "task<1>", "+14155552671", "4155552671", "-leading-dash", "tâche"],
)
def test_queue_names_are_ids_only(name: str) -> None:
    with pytest.raises(ValueError):
        enqueue(name, wait_url=f"{BASE}/wait", action_url=f"{BASE}/left")


def test_conference_name_limit_and_events() -> None:
    dial_conference("t" * 128, status_callback_url=f"{BASE}/c")
    with pytest.raises(ValueError):
        dial_conference("t" * 129, status_callback_url=f"{BASE}/c")
    with pytest.raises(ValueError):
        dial_conference("task-1", status_callback_url=f"{BASE}/c", status_callback_events=("begin",))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        dial_conference("task-1", status_callback_url=f"{BASE}/c", status_callback_events=())


@pytest.mark.parametrize(
    "number", ["anonymous", "+266696687", "+17378742833", "4155552671", "+1415555267", ""]
)
def test_dial_number_requires_a_valid_e164_number(number: str) -> None:
    with pytest.raises(ValueError):
        dial_number(number, caller_id=HOTLINE, action_url=f"{BASE}/dialed")
    with pytest.raises(ValueError):
        dial_number(VOLUNTEER, caller_id=number, action_url=f"{BASE}/dialed")
    if number:
        with pytest.raises(ValueError):
            overflow_fallback([EN], overflow_number=number)


@pytest.mark.parametrize("timeout", [0, -1, 61, True])
def test_gather_timeouts_are_bounded(timeout: int) -> None:
    with pytest.raises(ValueError):
        whisper([EN], action_url=f"{BASE}/accept", timeout=timeout)


def test_builders_that_need_prompts_refuse_none() -> None:
    for build in (
        lambda: language_menu([], action_url=f"{BASE}/a", no_input_url=f"{BASE}/b"),
        lambda: emergency_option([], action_url=f"{BASE}/a", no_input_url=f"{BASE}/b"),
        lambda: whisper([], action_url=f"{BASE}/a"),
        lambda: overflow_fallback([], overflow_number=None),
    ):
        with pytest.raises(ValueError):
            build()
    with pytest.raises(TypeError):
        announce(["plain text"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        announce([EN], redirect_url=f"{BASE}/a", hang_up=True)


def test_record_requires_keypad_finish_keys() -> None:
    with pytest.raises(ValueError):
        record_voicemail(
            [EN], action_url=f"{BASE}/vm", recording_status_callback_url=f"{BASE}/r", finish_on_key="a"
        )


def test_message_reply_limits() -> None:
    assert message_reply("x" * MAX_MESSAGE_BODY_CHARS)
    with pytest.raises(ValueError):
        message_reply("x" * (MAX_MESSAGE_BODY_CHARS + 1))
    with pytest.raises(ValueError):
        message_reply(" \x00 ")


def test_too_large_document_is_refused_by_builders() -> None:
    prompts = [Prompt.say("x" * MAX_SAY_CHARS, voice="alice", language="en-US")] * 16
    with pytest.raises(TwimlError):
        announce(prompts)


# --- check_context --------------------------------------------------------------------------------


def doc(body: str) -> str:
    return f"{DECL}<Response>{body}</Response>"


@pytest.mark.parametrize(
    ("body", "context"),
    [
        ("<Dial>+14155552671</Dial>", "wait_url"),
        ("<Enqueue>q</Enqueue>", "wait_url"),
        ("<Record />", "wait_url"),
        ("<Dial><Conference>t</Conference></Dial>", "whisper"),
        ("<Enqueue>q</Enqueue>", "whisper"),
        ("<Leave />", "whisper"),
        ("<Record />", "whisper"),
        ("<Leave />", "voice"),
        ("<Message>hi</Message>", "voice"),
        ("<Say>hi</Say>", "messaging"),
        ("<Gather><Dial>+14155552671</Dial></Gather>", "voice"),
        ("<Gather><Gather /></Gather>", "wait_url"),
        ("<Dial><Say>x</Say></Dial>", "voice"),
        ("<Unknown />", "voice"),
        ("<Message><Say>x</Say></Message>", "messaging"),
    ],
)
def test_check_context_rejects_verbs_not_allowed_there(body: str, context: TwimlContext) -> None:
    with pytest.raises(TwimlError):
        check_context(doc(body), context)


@pytest.mark.parametrize(
    ("body", "context"),
    [
        (
            "<Play>u</Play><Say>s</Say><Pause /><Gather><Say>s</Say></Gather>"
            "<Redirect>u</Redirect><Leave /><Hangup />",
            "wait_url",
        ),
        (
            "<Play>u</Play><Say>s</Say><Pause /><Gather><Play>u</Play></Gather>"
            "<Redirect>u</Redirect><Hangup />",
            "whisper",
        ),
        ("<Dial><Queue>q</Queue></Dial><Record /><Reject />", "voice"),
        ("<Message><Body>b</Body><Media>u</Media></Message><Redirect>u</Redirect>", "messaging"),
    ],
)
def test_check_context_accepts_what_twilio_allows(body: str, context: TwimlContext) -> None:
    check_context(doc(body), context)


@pytest.mark.parametrize(
    "xml",
    [
        " " + doc(""),
        "\n" + doc(""),
        doc("<Say>x</Say>")[:-3],
        f'{DECL}<!DOCTYPE r [<!ENTITY a "b">]><Response>&a;</Response>',
        f"{DECL}<Reply><Say>x</Say></Reply>",
        doc("stray text<Say>x</Say>"),
        doc("<Say>x</Say>tail text"),
        "Internal Server Error",
    ],
)
def test_check_context_rejects_malformed_documents(xml: str) -> None:
    with pytest.raises(TwimlError):
        check_context(xml, "voice")


def test_check_context_size_limit() -> None:
    filler = "<Pause />" * ((MAX_TWIML_BYTES - len(doc(""))) // len("<Pause />"))
    check_context(doc(filler), "voice")
    with pytest.raises(TwimlError):
        check_context(doc(filler + "<Pause />" * 2), "voice")


def test_check_context_unknown_context() -> None:
    with pytest.raises(ValueError):
        check_context(doc(""), "fax")  # type: ignore[arg-type]


# --- free text never becomes markup ------------------------------------------------------------------

_NASTY = st.sampled_from(
    ["<", ">", "&", '"', "'", "]]>", "<![CDATA[", "</Say><Dial>+14155552671</Dial><Say>", "&amp;", "&#0;",
     "\x00", "\x01", "\x0b", "\x1f", "\x7f", "\r", "\r\n", "\n", "\t", "\ufffe", "\uffff", "\ud800",
     "é", "你好", "🙂", "\u202e", 'voice="x"', "<Hangup/>"]
)  # fmt: skip
# Fragments and single characters of any category, lone surrogates and controls included.
free_text = st.lists(st.one_of(_NASTY, st.characters(exclude_categories=())), max_size=80).map("".join)

PLACEHOLDER = "placeholder"


def _say(text: str) -> Prompt:
    return Prompt.say(text, voice="Polly.Joanna", language="en-US")


TEXT_BUILDERS: list[tuple[str, Callable[[str], str], TwimlContext]] = [
    ("announce", lambda t: announce([_say(t)], hang_up=True), "voice"),
    (
        "language_menu",
        lambda t: language_menu([_say(t), ES], action_url=f"{BASE}/lang", no_input_url=f"{BASE}/menu"),
        "voice",
    ),
    (
        "emergency_option",
        lambda t: emergency_option([_say(t)], action_url=f"{BASE}/e", no_input_url=f"{BASE}/q"),
        "voice",
    ),
    (
        "enqueue",
        lambda t: enqueue("task-1", wait_url=f"{BASE}/w", action_url=f"{BASE}/a", before=[_say(t)]),
        "voice",
    ),
    ("hold", lambda t: hold([_say(t)], info_prompts=[_say(t)], info_action_url=f"{BASE}/info"), "wait_url"),
    ("leave", lambda t: leave([_say(t)]), "wait_url"),
    ("whisper", lambda t: whisper([_say(t)], action_url=f"{BASE}/accept"), "whisper"),
    (
        "dial_conference",
        lambda t: dial_conference("task-1", status_callback_url=f"{BASE}/c", before=[_say(t)]),
        "voice",
    ),
    (
        "dial_number",
        lambda t: dial_number(VOLUNTEER, caller_id=HOTLINE, action_url=f"{BASE}/d", before=[_say(t)]),
        "voice",
    ),
    (
        "record_voicemail",
        lambda t: record_voicemail(
            [_say(t)], action_url=f"{BASE}/vm", recording_status_callback_url=f"{BASE}/r"
        ),
        "voice",
    ),
    ("hangup", lambda t: hangup([_say(t)]), "voice"),
    (
        "overflow",
        lambda t: overflow_fallback([_say(t)], overflow_number=VOLUNTEER, connecting=[_say(t)]),
        "voice",
    ),
]


@pytest.mark.parametrize(
    ("build", "context"), [(b, c) for _, b, c in TEXT_BUILDERS], ids=[n for n, _, _ in TEXT_BUILDERS]
)
@settings(max_examples=60, deadline=None)
@given(text=free_text)
def test_prompt_text_never_changes_the_document_structure(
    build: Callable[[str], str], context: TwimlContext, text: str
) -> None:
    expected = sanitize_text(text)
    if not expected.strip():
        with pytest.raises(ValueError):
            build(text)
        return
    xml = build(text)
    check_context(xml, context)
    assert structure(xml) == structure(build(PLACEHOLDER))
    assert expected in says(xml)


@settings(max_examples=200, deadline=None)
@given(text=free_text)
def test_message_body_never_changes_the_document_structure(text: str) -> None:
    expected = sanitize_text(text)
    if not expected.strip():
        with pytest.raises(ValueError):
            message_reply(text)
        return
    xml = message_reply(text)
    check_context(xml, "messaging")
    assert structure(xml) == structure(message_reply(PLACEHOLDER))
    message = ET.fromstring(xml).find("Message")
    assert message is not None and message.text == expected


@given(text=free_text)
def test_sanitize_text_only_removes_what_xml_cannot_carry(text: str) -> None:
    cleaned = sanitize_text(text)
    legal = "".join(
        ch
        for ch in text
        if ch in "\t\n\r" or 0x20 <= ord(ch) <= 0xD7FF or 0xE000 <= ord(ch) <= 0xFFFD or ord(ch) >= 0x10000
    )
    assert cleaned == legal.replace("\r\n", "\n").replace("\r", "\n")
    assert sanitize_text(cleaned) == cleaned
    # Whatever survives is representable: it round-trips through an XML parser unchanged.
    element = ET.Element("Say")
    element.text = cleaned
    assert (ET.fromstring(ET.tostring(element, encoding="unicode")).text or "") == cleaned


@given(
    text=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xD7FF), min_size=1, max_size=200)
)
def test_ordinary_text_round_trips_exactly(text: str) -> None:
    if not text.strip():
        return
    assert says(announce([_say(text)])) == [text]
