"""Twilio ``<Say>`` voices: the vendored table and the check every spoken prompt passes.

``voices.json`` (next to this module) lists the Amazon Polly and Google voices Twilio accepts for
the locales the hotline uses, each with the one locale Twilio speaks it in, plus where the table
came from (``source``, ``retrieved``) and the languages Twilio has no voice for at all
(``no_voice``: Haitian Creole). A ``<Say>`` whose voice is not in the table, or whose
``language`` is not that voice's locale, is refused here rather than failing on a live call
(Twilio rejects invalid voice/language combinations).

The table is data shipped with the package; nothing here reads the environment or the network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "TABLE_PATH",
    "NoVoice",
    "Voice",
    "VoiceTable",
    "check_voice",
    "load_table",
    "voice_table",
]

TABLE_PATH: Final = Path(__file__).with_name("voices.json")

Provider = Literal["polly", "google"]
Tier = Literal["standard", "premium"]
_PROVIDERS: Final[dict[str, Provider]] = {"polly": "polly", "google": "google"}
_TIERS: Final[dict[str, Tier]] = {"standard": "standard", "premium": "premium"}
_PROVIDER_PREFIX: Final[dict[Provider, str]] = {"polly": "Polly.", "google": "Google."}


@dataclass(frozen=True, slots=True)
class Voice:
    """One Twilio voice: ``id`` is the ``<Say voice>`` value, ``locale`` the ``<Say language>``."""

    id: str
    locale: str
    provider: Provider
    tier: Tier
    gender: str
    source: str


@dataclass(frozen=True, slots=True)
class NoVoice:
    """A language Twilio cannot speak: its prompts have to be recordings."""

    language: str
    locale: str
    note: str


@dataclass(frozen=True, slots=True)
class VoiceTable:
    source: str
    retrieved: str
    voices: Mapping[str, Voice]
    no_voice: tuple[NoVoice, ...]

    def get(self, voice_id: str) -> Voice | None:
        return self.voices.get(voice_id)

    def for_locale(self, locale: str) -> list[Voice]:
        """Voices spoken in ``locale`` (exact match, e.g. ``"yue-HK"``), in table order."""
        return [voice for voice in self.voices.values() if voice.locale == locale]

    def locales(self) -> frozenset[str]:
        return frozenset(voice.locale for voice in self.voices.values())


def _require_str(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key!r} must be a non-empty string")
    return value


def load_table(path: Path = TABLE_PATH) -> VoiceTable:
    """Parse and validate a voice table file; :class:`ValueError` on anything malformed.

    Each voice id must be unique and carry its provider's prefix, and a Google voice id must
    embed its own locale (``Google.cmn-CN-Standard-A`` is ``cmn-CN``).
    """
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("voices"), list):
        raise ValueError(f"{path.name}: expected an object with a 'voices' list")
    source = _require_str(raw, "source", path.name)
    retrieved = _require_str(raw, "retrieved", path.name)
    voices: dict[str, Voice] = {}
    for index, item in enumerate(raw["voices"]):
        where = f"{path.name} voices[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object")
        voice_id = _require_str(item, "id", where)
        locale = _require_str(item, "locale", where)
        provider = _PROVIDERS.get(_require_str(item, "provider", where))
        tier = _TIERS.get(_require_str(item, "tier", where))
        if provider is None:
            raise ValueError(f"{where}: unknown provider {item['provider']!r}")
        if tier is None:
            raise ValueError(f"{where}: unknown tier {item['tier']!r}")
        if not voice_id.startswith(_PROVIDER_PREFIX[provider]):
            raise ValueError(f"{where}: {voice_id!r} lacks the {_PROVIDER_PREFIX[provider]!r} prefix")
        if provider == "google" and not voice_id.startswith(f"Google.{locale}-"):
            raise ValueError(f"{where}: {voice_id!r} does not embed its locale {locale!r}")
        if voice_id in voices:
            raise ValueError(f"{where}: duplicate voice {voice_id!r}")
        voices[voice_id] = Voice(
            id=voice_id,
            locale=locale,
            provider=provider,
            tier=tier,
            gender=_require_str(item, "gender", where),
            source=_require_str(item, "source", where),
        )
    no_voice = tuple(
        NoVoice(
            language=_require_str(item, "language", f"{path.name} no_voice"),
            locale=_require_str(item, "locale", f"{path.name} no_voice"),
            note=_require_str(item, "note", f"{path.name} no_voice"),
        )
        for item in raw.get("no_voice", [])
    )
    return VoiceTable(source=source, retrieved=retrieved, voices=MappingProxyType(voices), no_voice=no_voice)


@cache
def voice_table() -> VoiceTable:
    """The vendored table (loaded once)."""
    return load_table()


def check_voice(voice: str, language: str, *, table: VoiceTable | None = None) -> list[str]:
    """Problems with ``<Say voice=… language=…>`` (empty when Twilio will speak it).

    The voice must be in the vendored table and ``language`` must be exactly its locale.
    """
    table = voice_table() if table is None else table
    known = table.get(voice)
    if known is None:
        return [f"voice {voice!r} is not in the vendored Twilio voice table"]
    if known.locale != language:
        return [f"voice {voice!r} speaks {known.locale!r}, not {language!r}"]
    return []
