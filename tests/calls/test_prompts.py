"""The voice prompt catalogue: every key in every language resolves to a prompt Twilio will play."""

from __future__ import annotations

import json
import shutil
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.calls.prompts import (
    CATALOGUE_LANGUAGES,
    DATA_DIR,
    MAX_POSITION,
    PROMPT_KEYS,
    STATIC_DIR,
    PromptError,
    catalogue,
    check_catalogue,
    language_for_digit,
    menu_prompts,
    resolve,
)
from app.languages import LANGUAGES
from telephony.twiml import (
    Prompt,
    TwimlContext,
    announce,
    check_context,
    emergency_option,
    hangup,
    hold,
    language_menu,
    leave,
    overflow_fallback,
    record_voicemail,
    whisper,
)
from telephony.voices import check_voice, voice_table

PUBLIC = "https://hotline.example.org"
BASE = f"{PUBLIC}/twilio/voice"
HOTLINE = "+14155550123"
OVERFLOW = "+14155550199"


def params_for(key: str) -> dict[str, Any]:
    if key == "hold_position":
        return {"position": 4}
    if key == "whisper":
        return {"channel": "call", "caller_language": "es", "emergency": True}
    return {}


def get(key: Any, language: str, **params: Any) -> Prompt:
    return resolve(key, language, public_url=PUBLIC, **params)


# --- coverage --------------------------------------------------------------------------------------


def test_catalogue_covers_the_menu_languages() -> None:
    assert set(CATALOGUE_LANGUAGES) == {"en", "es", "cmn", "yue", "ht", "ru", "bn"}
    assert set(CATALOGUE_LANGUAGES) <= set(LANGUAGES)
    assert set(catalogue()) == set(CATALOGUE_LANGUAGES)


@pytest.mark.parametrize("language", CATALOGUE_LANGUAGES)
@pytest.mark.parametrize("key", PROMPT_KEYS)
def test_every_key_resolves_in_every_language(key: str, language: str) -> None:
    prompt = get(key, language, **params_for(key))
    assert isinstance(prompt, Prompt)
    if prompt.audio_url is None:
        assert prompt.voice is not None and prompt.language is not None
        assert check_voice(prompt.voice, prompt.language) == []
        assert prompt.language.split("-")[0] == language
        assert "{" not in (prompt.text or "") and "}" not in (prompt.text or "")


def test_every_say_voice_is_in_the_table_and_matches_its_locale() -> None:
    table = voice_table()
    for code, prompts in catalogue().items():
        if prompts.voice is None:
            continue
        voice = table.get(prompts.voice)
        assert voice is not None, code
        assert voice.locale == prompts.say_language, code


def test_every_entry_is_marked_unreviewed() -> None:
    for prompts in catalogue().values():
        assert prompts.reviewed is False
        assert all(entry.reviewed is False for entry in prompts.entries.values())


def test_mandarin_and_cantonese_use_different_locales_and_voices() -> None:
    mandarin, cantonese = get("greeting", "cmn"), get("greeting", "yue")
    assert mandarin.language == "cmn-CN"
    assert cantonese.language is not None and cantonese.language.startswith("yue-")
    assert mandarin.voice != cantonese.voice
    assert mandarin.text != cantonese.text


def test_haitian_creole_plays_placeholder_recordings() -> None:
    for key in PROMPT_KEYS:
        prompt = get(key, "ht", **params_for(key))
        assert prompt.text is None and prompt.voice is None
        assert prompt.audio_url is not None
        assert prompt.audio_url.startswith(f"{PUBLIC}/static/prompts/placeholder-ht-")
        assert prompt.audio_url.endswith(".wav")
        assert (STATIC_DIR / prompt.audio_url.rsplit("/", 1)[1]).is_file()
    entries = catalogue()["ht"].entries.values()
    assert all(entry.placeholder and entry.text for entry in entries)


def test_recording_url_is_built_from_public_url() -> None:
    expected = f"{PUBLIC}/static/prompts/placeholder-ht-greeting.wav"
    assert get("greeting", "ht").audio_url == expected
    assert resolve("greeting", "ht", public_url=f"{PUBLIC}/").audio_url == expected
    with pytest.raises(PromptError):
        resolve("greeting", "ht", public_url="hotline.example.org")


def test_placeholder_recordings_are_small_valid_wavs() -> None:
    referenced = {entry.audio for entry in catalogue()["ht"].entries.values()}
    shipped = {path.name for path in STATIC_DIR.glob("placeholder-ht-*.wav")}
    assert shipped == referenced and len(shipped) == len(PROMPT_KEYS)
    for name in shipped:
        path = STATIC_DIR / name
        assert path.stat().st_size < 16_000
        with wave.open(str(path), "rb") as audio:
            assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 8000)
            assert 0.25 <= audio.getnframes() / audio.getframerate() <= 2.0


# --- the production check --------------------------------------------------------------------------


def test_development_check_passes() -> None:
    assert check_catalogue(production=False) == []


def test_production_check_flags_every_haitian_placeholder() -> None:
    problems = check_catalogue(production=True)
    assert len(problems) == len(PROMPT_KEYS)
    assert all(problem.startswith("ht.") and "placeholder" in problem for problem in problems)
    assert all("Haitian Creole" in problem for problem in problems)


def test_production_check_passes_without_haitian_creole() -> None:
    others = [code for code in CATALOGUE_LANGUAGES if code != "ht"]
    assert check_catalogue(production=True, languages=others) == []


def test_a_configured_language_without_prompts_is_reported() -> None:
    assert check_catalogue(production=False, languages=["en", "fr"]) == ["fr: no prompts for this language"]


def edited_catalogue(tmp_path: Path, language: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    directory = tmp_path / "prompts"
    shutil.copytree(DATA_DIR, directory)
    path = directory / f"{language}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    edit(raw)
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return directory


def set_in(*path_and_value: Any) -> Callable[[dict[str, Any]], None]:
    *path, value = path_and_value

    def edit(raw: dict[str, Any]) -> None:
        target = raw
        for part in path[:-1]:
            target = target[part]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return edit


DELETE = object()


@pytest.mark.parametrize(
    ("language", "edit", "expected"),
    [
        ("en", set_in("say", "voice", "Polly.Nobody-Neural"), "en: voice 'Polly.Nobody-Neural' is not in"),
        ("ru", set_in("say", "language", "ru-UA"), "ru: voice 'Google.ru-RU-Wavenet-A' speaks 'ru-RU'"),
        # A Mandarin voice for Cantonese: a valid pair, but not Cantonese speech.
        ("yue", set_in("say", {"voice": "Polly.Zhiyu-Neural", "language": "cmn-CN"}), "yue: voice locale"),
        ("es", set_in("prompts", "goodbye", DELETE), "es: missing prompt 'goodbye'"),
        ("es", set_in("prompts", "farewell", {"text": "Adiós.", "reviewed": False}), "unknown prompt key"),
        ("bn", set_in("prompts", "hold_position", "text", "অপেক্ষা করুন।"), "bn.hold_position: placeholders"),
        ("en", set_in("prompts", "greeting", "text", "Hello {name}."), "en.greeting: placeholders"),
        ("en", set_in("prompts", "language_menu", "text", "For English, press one."), "does not name key 1"),
        ("cmn", set_in("prompts", "emergency_option", "text", "请稍候。"), "does not name key 9"),
        ("ru", set_in("menu_digit", 1), "ru: menu digit 1 already used by en"),
        ("ht", set_in("prompts", "goodbye", "placeholder", False), "named as a placeholder but not flagged"),
        ("ht", set_in("prompts", "goodbye", "audio", "ht-goodbye.wav"), "missing from app/static/prompts"),
        ("ht", set_in("prompts", "goodbye", "audio", DELETE), "ht.goodbye: neither a voice nor a recording"),
        ("en", set_in("terms", "emergency", DELETE), "en: terms must be exactly"),
        ("es", set_in("language_names", "yue", DELETE), "es: language_names lacks ['yue']"),
    ],
)
def test_check_reports_broken_entries(
    tmp_path: Path, language: str, edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    problems = check_catalogue(production=False, directory=edited_catalogue(tmp_path, language, edit))
    assert any(expected in problem for problem in problems), problems


def test_check_reports_a_malformed_file(tmp_path: Path) -> None:
    directory = edited_catalogue(tmp_path, "en", set_in("menu_digit", "1"))
    assert check_catalogue(production=False, directory=directory) == [
        "prompt catalogue: en.json: 'menu_digit' has the wrong type"
    ]


# --- parameters ------------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=MAX_POSITION), st.sampled_from(CATALOGUE_LANGUAGES[:4]))
def test_position_is_spoken_as_its_digits_only(position: int, language: str) -> None:
    text = get("hold_position", language, position=position).text
    template = catalogue()[language].entries["hold_position"].text
    assert text == template.replace("{position}", str(position))


@pytest.mark.parametrize("position", [True, "3", 3.0, None, b"3", "3; <Hangup/>"])
def test_position_must_be_an_int(position: Any) -> None:
    with pytest.raises(TypeError):
        get("hold_position", "en", position=position)


@pytest.mark.parametrize("position", [0, -1, MAX_POSITION + 1, 10**30])
def test_position_must_be_in_range(position: int) -> None:
    with pytest.raises(PromptError):
        get("hold_position", "en", position=position)


def test_position_is_validated_for_recordings_too() -> None:
    with pytest.raises(TypeError):
        get("hold_position", "ht", position="3")


@pytest.mark.parametrize(
    ("key", "params"),
    [
        ("hold_position", {}),
        ("hold_position", {"position": 1, "extra": "x"}),
        ("greeting", {"position": 1}),
        ("whisper", {"channel": "call", "caller_language": "es"}),
        ("whisper", {"channel": "sms", "caller_language": "es", "emergency": False}),
        ("whisper", {"channel": "call", "caller_language": "fr", "emergency": False}),
        ("whisper", {"channel": "call", "caller_language": "Spanish <Hangup/>", "emergency": False}),
    ],
)
def test_wrong_parameters_are_refused(key: str, params: dict[str, Any]) -> None:
    with pytest.raises(PromptError):
        get(key, "en", **params)


def test_emergency_flag_must_be_a_bool() -> None:
    with pytest.raises(TypeError):
        get("whisper", "en", channel="call", caller_language="es", emergency="yes")


def test_unknown_key_or_language() -> None:
    with pytest.raises(PromptError):
        get("hello", "en")
    with pytest.raises(PromptError):
        get("greeting", "fr")


def test_whisper_names_channel_language_and_emergency() -> None:
    assert get("whisper", "en", channel="call", caller_language="es", emergency=True).text == (
        "Hotline call, Spanish, emergency. Press 1 to accept."
    )
    assert get("whisper", "en", channel="callback", caller_language="yue", emergency=False).text == (
        "Callback, Cantonese. Press 1 to accept."
    )
    spanish = get("whisper", "es", channel="call", caller_language="cmn", emergency=True).text
    assert spanish is not None and "mandarín" in spanish and "emergencia" in spanish


def test_menu_prompts_and_digits() -> None:
    prompts = menu_prompts(list(CATALOGUE_LANGUAGES), public_url=PUBLIC)
    assert [prompt.language for prompt in prompts if prompt.audio_url is None] == [
        "en-US", "es-US", "cmn-CN", "yue-CN", "ru-RU", "bn-IN"
    ]  # fmt: skip
    digits = {code: catalogue()[code].menu_digit for code in CATALOGUE_LANGUAGES}
    assert sorted(digits.values()) == list(range(1, len(CATALOGUE_LANGUAGES) + 1))
    for code, digit in digits.items():
        assert language_for_digit(str(digit)) == code
    assert language_for_digit("5", ["en", "es"]) is None
    assert language_for_digit("9") is None


# --- rendered TwiML --------------------------------------------------------------------------------


def renderings(language: str) -> list[tuple[str, TwimlContext]]:
    def p(key: Any, **params: Any) -> Prompt:
        return get(key, language, **params)

    return [
        (announce([p("greeting")], redirect_url=f"{BASE}/menu"), "voice"),
        (
            language_menu([p("language_menu")], action_url=f"{BASE}/lang", no_input_url=f"{BASE}/menu"),
            "voice",
        ),
        (
            emergency_option([p("emergency_option")], action_url=f"{BASE}/emer", no_input_url=f"{BASE}/q"),
            "voice",
        ),
        (hold([p("hold_position", position=2), p("hold_waiting")]), "wait_url"),
        (
            hold(
                [p("still_waiting")],
                info_prompts=[p("voicemail_offer")],
                info_action_url=f"{BASE}/offer",
            ),
            "wait_url",
        ),
        (leave([p("hold_waiting")]), "wait_url"),
        (
            whisper(
                [p("whisper", channel="call", caller_language="bn", emergency=False)],
                action_url=f"{BASE}/accept",
            ),
            "whisper",
        ),
        (
            record_voicemail(
                [p("voicemail_prompt")],
                action_url=f"{BASE}/recorded",
                recording_status_callback_url=f"{BASE}/recording",
            ),
            "voice",
        ),
        (
            overflow_fallback(
                [p("unavailable")],
                overflow_number=OVERFLOW,
                caller_id=HOTLINE,
                connecting=[p("overflow_connecting")],
            ),
            "voice",
        ),
        (overflow_fallback([p("unavailable")], overflow_number=None), "voice"),
        (hangup([p("goodbye")]), "voice"),
    ]


@pytest.mark.parametrize("language", CATALOGUE_LANGUAGES)
def test_rendered_twiml_passes_its_context(language: str) -> None:
    for xml, context in renderings(language):
        check_context(xml, context)
        if language == "ht":
            assert "<Say" not in xml and "placeholder-ht-" in xml
        else:
            assert "<Play" not in xml and "<Say" in xml


def test_full_language_menu_renders() -> None:
    xml = language_menu(
        menu_prompts(list(CATALOGUE_LANGUAGES), public_url=PUBLIC),
        action_url=f"{BASE}/lang",
        no_input_url=f"{BASE}/menu",
    )
    check_context(xml, "voice")
    assert xml.count("<Say") == 6 and xml.count("<Play") == 1
    assert 'language="yue-CN"' in xml and 'language="cmn-CN"' in xml
