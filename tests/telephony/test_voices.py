"""The vendored Twilio voice table: where it came from, what it covers, and the voice/locale check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from telephony.twiml import Prompt
from telephony.voices import TABLE_PATH, check_voice, load_table, voice_table

# The <Say> locales the prompt catalogue may use (issue 7's languages; Haitian Creole has none).
NEEDED_LOCALES = ["en-US", "es-US", "es-MX", "cmn-CN", "yue-CN", "yue-HK", "ru-RU", "bn-IN"]


def test_table_records_its_source() -> None:
    table = voice_table()
    assert table.source.startswith("https://www.twilio.com/docs/voice/twiml/say/text-speech")
    assert "TwilioDevEd/api-snippets" in table.retrieved
    assert {voice.source for voice in table.voices.values()} <= {"api-snippets", "transcriptions"}


@pytest.mark.parametrize("locale", NEEDED_LOCALES)
def test_every_needed_locale_has_a_voice(locale: str) -> None:
    assert voice_table().for_locale(locale)


def test_haitian_creole_has_no_twilio_voice() -> None:
    table = voice_table()
    assert not any(locale.startswith("ht") for locale in table.locales())
    assert [entry.locale for entry in table.no_voice] == ["ht-HT"]


def test_mandarin_and_cantonese_are_separate_locales() -> None:
    table = voice_table()
    assert table.voices["Polly.Zhiyu-Neural"].locale == "cmn-CN"
    assert table.voices["Polly.Hiujin-Neural"].locale == "yue-CN"
    assert {voice.locale for voice in table.voices.values() if voice.id.startswith("Google.yue-")} == {
        "yue-HK"
    }
    assert not set(table.for_locale("cmn-CN")) & set(table.for_locale("yue-CN") + table.for_locale("yue-HK"))


def test_every_voice_is_a_valid_say_voice() -> None:
    for voice in voice_table().voices.values():
        prompt = Prompt.say("test", voice=voice.id, language=voice.locale)
        assert (prompt.voice, prompt.language) == (voice.id, voice.locale)
        assert voice.provider in ("polly", "google") and voice.tier in ("standard", "premium")


def test_check_voice() -> None:
    assert check_voice("Polly.Joanna-Neural", "en-US") == []
    assert check_voice("Google.yue-HK-Standard-A", "yue-HK") == []
    assert check_voice("Polly.Hiujin-Neural", "yue-HK") == [
        "voice 'Polly.Hiujin-Neural' speaks 'yue-CN', not 'yue-HK'"
    ]
    assert check_voice("Polly.Zhiyu-Neural", "yue-CN") == [
        "voice 'Polly.Zhiyu-Neural' speaks 'cmn-CN', not 'yue-CN'"
    ]
    assert check_voice("Polly.Nobody", "en-US") == [
        "voice 'Polly.Nobody' is not in the vendored Twilio voice table"
    ]
    # Legacy basic voices are deliberately not vendored.
    assert check_voice("alice", "en-US") != []


def _write(tmp_path: Path, voices: list[dict[str, Any]]) -> Path:
    raw = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    raw["voices"] = voices
    path = tmp_path / "voices.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


GOOD = {
    "id": "Google.ru-RU-Standard-A",
    "locale": "ru-RU",
    "provider": "google",
    "tier": "standard",
    "gender": "female",
    "source": "api-snippets",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"locale": "ru-UA"}, "does not embed its locale"),
        ({"id": "ru-RU-Standard-A"}, "prefix"),
        ({"provider": "azure"}, "unknown provider"),
        ({"tier": "gold"}, "unknown tier"),
        ({"gender": ""}, "'gender'"),
    ],
)
def test_load_table_refuses_malformed_entries(tmp_path: Path, change: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_table(_write(tmp_path, [GOOD | change]))


def test_load_table_refuses_duplicates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        load_table(_write(tmp_path, [GOOD, GOOD]))
    assert list(load_table(_write(tmp_path, [GOOD])).voices) == [GOOD["id"]]


def test_check_voice_uses_a_given_table(tmp_path: Path) -> None:
    table = load_table(_write(tmp_path, [GOOD]))
    assert check_voice("Google.ru-RU-Standard-A", "ru-RU", table=table) == []
    assert check_voice("Polly.Joanna-Neural", "en-US", table=table) != []
