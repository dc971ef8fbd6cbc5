"""The voice prompt catalogue: what a caller (or a volunteer, for the whisper) hears, per language.

Prompts are data (DESIGN §4): one JSON file per language in ``app/calls/prompts/`` holds the
texts of every prompt key, the ``<Say>`` voice and locale for that language, and for a language
Twilio cannot speak (Haitian Creole) a recording per prompt instead. :func:`resolve` turns a
(key, language) pair into a :class:`telephony.twiml.Prompt` for the TwiML builders:

* a ``<Say>`` whose (voice, language) pair is in the vendored Twilio voice table
  (``telephony/voices.json``), or
* a ``<Play>`` of a recording: a file in ``app/static/prompts/`` served at
  ``{public_url}/static/prompts/<file>``, or an absolute https URL.

Development ships tone-only placeholder recordings for Haitian Creole
(``placeholder-ht-*.wav``, each entry flagged ``"placeholder": true``); ``check_catalogue(
production=True)`` reports every prompt that still relies on one, so production refuses to
start until a native speaker's recordings replace them. Each entry carries ``"reviewed": false``
until a native speaker has reviewed its text.

Substitution is closed: ``{position}`` only ever receives the digits of an ``int`` passed in, and
the whisper's ``{channel}``, ``{language}`` and ``{emergency}`` only ever receive words from the
catalogue's own ``terms`` and ``language_names``. No caller-supplied text reaches a prompt.
Recordings are fixed audio: they cannot speak a substituted value, so a recorded
``hold_position`` is heard without the number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

from app.languages import LANGUAGES
from telephony.twiml import MAX_SAY_CHARS, Prompt
from telephony.voices import check_voice

__all__ = [
    "CATALOGUE_LANGUAGES",
    "DATA_DIR",
    "EMERGENCY_DIGIT",
    "MAX_POSITION",
    "PROMPT_KEYS",
    "REPORT_DIGIT",
    "RIGHTS_DIGIT",
    "STATIC_DIR",
    "STATIC_ROUTE",
    "VOICEMAIL_LEAVE_DIGIT",
    "VOICEMAIL_WAIT_DIGIT",
    "WHISPER_ACCEPT_DIGIT",
    "CatalogueError",
    "Entry",
    "LanguagePrompts",
    "PromptError",
    "PromptKey",
    "WhisperChannel",
    "audio_url",
    "catalogue",
    "check_catalogue",
    "language_for_digit",
    "load_catalogue",
    "menu_prompts",
    "resolve",
]

PromptKey = Literal[
    "greeting",
    "language_menu",
    "emergency_option",
    "hold_position",
    "hold_waiting",
    "still_waiting",
    "whisper",
    "voicemail_offer",
    "voicemail_prompt",
    "rights_offer",
    "report_option",
    "report_menu",
    "report_record",
    "report_callback",
    "report_code",
    "report_saved",
    "report_code_ask",
    "report_added",
    "report_refused",
    "overflow_connecting",
    "unavailable",
    "goodbye",
]
PROMPT_KEYS: Final[tuple[PromptKey, ...]] = get_args(PromptKey)

# The languages of the language menu (issue 7): Mandarin and Cantonese are separate languages.
CATALOGUE_LANGUAGES: Final[tuple[str, ...]] = ("en", "es", "cmn", "yue", "ht", "ru", "bn")

WhisperChannel = Literal["call", "callback"]
_CHANNEL_TERMS: Final[dict[str, str]] = {"call": "channel_call", "callback": "channel_callback"}
_TERMS: Final = frozenset({"channel_call", "channel_callback", "emergency"})

# Keys the TwiML flow listens for; every text that offers a key must name it (checked).
EMERGENCY_DIGIT: Final = 9
VOICEMAIL_LEAVE_DIGIT: Final = 1
VOICEMAIL_WAIT_DIGIT: Final = 2
RIGHTS_DIGIT: Final = 3
REPORT_DIGIT: Final = 8
WHISPER_ACCEPT_DIGIT: Final = 1
MAX_POSITION: Final = 999

DATA_DIR: Final = Path(__file__).with_name("prompts")
STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static" / "prompts"
STATIC_ROUTE: Final = "/static/prompts/"
_PLACEHOLDER_PREFIX: Final = "placeholder-"

_PLACEHOLDERS: Final[dict[str, frozenset[str]]] = {key: frozenset() for key in PROMPT_KEYS} | {
    "hold_position": frozenset({"position"}),
    "whisper": frozenset({"channel", "language", "emergency"}),
}
_PLACEHOLDER_RE: Final = re.compile(r"\{([A-Za-z_]*)\}")
_AUDIO_FILE_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,120}\.(?:wav|mp3)\Z")
_SAMPLE_URL: Final = "https://hotline.example.org"


class CatalogueError(ValueError):
    """A catalogue file is malformed (wrong JSON shape or types)."""


class PromptError(ValueError):
    """A prompt cannot be resolved: unknown key or language, or a bad parameter value."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One prompt in one language: ``text`` (spoken by ``<Say>``, or the script of the
    recording) and, for a recorded prompt, ``audio`` (a file in ``static/prompts`` or a URL)."""

    key: str
    language: str
    text: str
    audio: str | None
    placeholder: bool
    reviewed: bool


@dataclass(frozen=True, slots=True)
class LanguagePrompts:
    language: str
    endonym: str
    menu_digit: int
    voice: str | None
    say_language: str | None
    reviewed: bool  # the terms and language names
    terms: Mapping[str, str]
    language_names: Mapping[str, str]
    entries: Mapping[str, Entry]


def _get(raw: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise CatalogueError(f"{where}: {key!r} has the wrong type")
    return value


def _str_map(raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, str]:
    value = _get(raw, key, dict, where)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise CatalogueError(f"{where}: {key!r} must map strings to strings")
    return MappingProxyType(dict(value))


def _parse_language(path: Path) -> LanguagePrompts:
    where = path.name
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogueError(f"{where}: {exc}") from None
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: expected a JSON object")
    code = _get(raw, "language", str, where)
    if path.stem != code:
        raise CatalogueError(f"{where}: file name does not match language {code!r}")
    say = raw.get("say")
    if say is not None:
        if not isinstance(say, dict):
            raise CatalogueError(f"{where}: 'say' must be an object or null")
        voice: str | None = _get(say, "voice", str, f"{where} say")
        say_language: str | None = _get(say, "language", str, f"{where} say")
    else:
        voice = say_language = None
    prompts = _get(raw, "prompts", dict, where)
    entries: dict[str, Entry] = {}
    for key, item in prompts.items():
        item_where = f"{where} prompts.{key}"
        if not isinstance(item, dict):
            raise CatalogueError(f"{item_where}: expected an object")
        audio = item.get("audio")
        if audio is not None and not isinstance(audio, str):
            raise CatalogueError(f"{item_where}: 'audio' must be a string or absent")
        placeholder = item.get("placeholder", False)
        if not isinstance(placeholder, bool):
            raise CatalogueError(f"{item_where}: 'placeholder' must be true or false")
        entries[key] = Entry(
            key=key,
            language=code,
            text=_get(item, "text", str, item_where),
            audio=audio,
            placeholder=placeholder,
            reviewed=_get(item, "reviewed", bool, item_where),
        )
    return LanguagePrompts(
        language=code,
        endonym=_get(raw, "endonym", str, where),
        menu_digit=_get(raw, "menu_digit", int, where),
        voice=voice,
        say_language=say_language,
        reviewed=_get(raw, "reviewed", bool, where),
        terms=_str_map(raw, "terms", where),
        language_names=_str_map(raw, "language_names", where),
        entries=MappingProxyType(entries),
    )


def load_catalogue(directory: Path = DATA_DIR) -> Mapping[str, LanguagePrompts]:
    """Parse every ``<language>.json`` in ``directory``; :class:`CatalogueError` if malformed.

    Completeness (every key in every language, known voices, digits named) is
    :func:`check_catalogue`'s job, not this parser's.
    """
    languages = {}
    for path in sorted(directory.glob("*.json")):
        parsed = _parse_language(path)
        languages[parsed.language] = parsed
    return MappingProxyType(languages)


@cache
def catalogue() -> Mapping[str, LanguagePrompts]:
    """The shipped catalogue (parsed once)."""
    return load_catalogue()


def _is_absolute_url(audio: str) -> bool:
    return audio.startswith(("https://", "http://"))


def audio_url(audio: str, *, public_url: str) -> str:
    """The URL Twilio fetches for a recording: a catalogue file under ``/static/prompts/``, or an
    absolute URL kept as is."""
    if _is_absolute_url(audio):
        return audio
    if not _AUDIO_FILE_RE.match(audio):
        raise PromptError(f"recording {audio!r} is not a plain .wav/.mp3 file name")
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise PromptError("public_url must be an absolute http(s) base URL")
    return public_url.rstrip("/") + STATIC_ROUTE + audio


def _position_digits(position: object) -> str:
    if isinstance(position, bool) or not isinstance(position, int):
        raise TypeError("position must be an int")
    if not 1 <= position <= MAX_POSITION:
        raise PromptError(f"position must be from 1 to {MAX_POSITION}")
    return str(position)


def _values(
    key: str, prompts: LanguagePrompts, params: Mapping[str, object], cat: Mapping[str, LanguagePrompts]
) -> dict[str, str]:
    expected = {"hold_position": {"position"}, "whisper": {"channel", "caller_language", "emergency"}}
    wanted = expected.get(key, set())
    if set(params) != wanted:
        raise PromptError(f"prompt {key!r} takes parameters {sorted(wanted)}, got {sorted(params)}")
    if key == "hold_position":
        return {"position": _position_digits(params["position"])}
    if key == "whisper":
        channel, caller_language, emergency = (
            params["channel"],
            params["caller_language"],
            params["emergency"],
        )
        if not isinstance(channel, str) or channel not in _CHANNEL_TERMS:
            raise PromptError(f"channel must be one of {sorted(_CHANNEL_TERMS)}")
        if not isinstance(caller_language, str) or caller_language not in cat:
            raise PromptError("caller_language must be a language of the prompt catalogue")
        if not isinstance(emergency, bool):
            raise TypeError("emergency must be a bool")
        name = prompts.language_names.get(caller_language)
        channel_term = prompts.terms.get(_CHANNEL_TERMS[channel])
        emergency_term = prompts.terms.get("emergency")
        if name is None or channel_term is None or emergency_term is None:
            raise PromptError(f"{prompts.language}: the whisper's terms or language names are incomplete")
        return {"channel": channel_term, "language": name, "emergency": emergency_term if emergency else ""}
    return {}


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER_RE.sub(lambda match: values[match.group(1)], text)


def _resolve(
    cat: Mapping[str, LanguagePrompts], key: str, language: str, public_url: str, params: Mapping[str, object]
) -> Prompt:
    if key not in PROMPT_KEYS:
        raise PromptError(f"unknown prompt key {key!r}")
    prompts = cat.get(language)
    if prompts is None:
        raise PromptError(f"no prompts for language {language!r}")
    entry = prompts.entries.get(key)
    if entry is None:
        raise PromptError(f"{language}: no {key!r} prompt")
    # Parameters are checked even for a recording, so a bad value never passes silently.
    values = _values(key, prompts, params, cat)
    if entry.audio is not None:
        return Prompt.play(audio_url(entry.audio, public_url=public_url))
    if prompts.voice is None or prompts.say_language is None:
        raise PromptError(f"{language}: {key!r} has neither a voice nor a recording")
    return Prompt.say(_substitute(entry.text, values), voice=prompts.voice, language=prompts.say_language)


def resolve(key: PromptKey, language: str, *, public_url: str, **params: object) -> Prompt:
    """The prompt ``key`` in ``language`` as a :class:`Prompt` for the TwiML builders.

    Parameters by key (any other is refused):

    * ``hold_position``: ``position`` — an ``int`` from 1 to :data:`MAX_POSITION`, spoken as its
      digits.
    * ``whisper``: ``channel`` (``"call"`` or ``"callback"``), ``caller_language`` (a catalogue
      language, named in the whisper's language) and ``emergency`` (``bool``) — e.g. "Hotline
      call, Spanish, emergency. Press 1 to accept."

    ``public_url`` is the service's public base URL (``Settings.public_url``), used for recordings.
    Raises :class:`PromptError` (or :class:`TypeError` for a wrongly typed parameter).
    """
    return _resolve(catalogue(), key, language, public_url, params)


def menu_prompts(languages: Sequence[str], *, public_url: str) -> list[Prompt]:
    """The language menu, one "For English, press 1" per language, each in its own language."""
    return [resolve("language_menu", language, public_url=public_url) for language in languages]


def language_for_digit(digits: str, languages: Iterable[str] | None = None) -> str | None:
    """The language whose menu key is ``digits`` (Twilio's ``Digits``), among ``languages``
    (default: every catalogue language), or ``None``."""
    offered = set(CATALOGUE_LANGUAGES if languages is None else languages)
    for code, prompts in catalogue().items():
        if code in offered and digits == str(prompts.menu_digit):
            return code
    return None


def _sample_params(key: str, language: str) -> dict[str, object]:
    if key == "hold_position":
        return {"position": MAX_POSITION}
    if key == "whisper":
        return {"channel": "callback", "caller_language": language, "emergency": True}
    return {}


def _required_digits(key: str, prompts: LanguagePrompts) -> list[int]:
    return {
        "language_menu": [prompts.menu_digit],
        "emergency_option": [EMERGENCY_DIGIT],
        "voicemail_offer": [VOICEMAIL_LEAVE_DIGIT, VOICEMAIL_WAIT_DIGIT],
        "rights_offer": [RIGHTS_DIGIT],
        "report_option": [REPORT_DIGIT],
        "report_menu": [1, 2, 3],
        "whisper": [WHISPER_ACCEPT_DIGIT],
    }.get(key, [])


def _check_audio(code: str, entry: Entry, production: bool) -> list[str]:
    assert entry.audio is not None
    problems: list[str] = []
    where = f"{code}.{entry.key}"
    name = entry.audio.rsplit("/", 1)[-1]
    named_placeholder = name.startswith(_PLACEHOLDER_PREFIX)
    if named_placeholder and not entry.placeholder:
        problems.append(f"{where}: recording {name!r} is named as a placeholder but not flagged as one")
    if _is_absolute_url(entry.audio):
        if not entry.audio.startswith("https://"):
            problems.append(f"{where}: recording URL must be https")
    elif not _AUDIO_FILE_RE.match(entry.audio):
        problems.append(f"{where}: recording {entry.audio!r} is not a plain .wav/.mp3 file name")
    elif not (STATIC_DIR / entry.audio).is_file():
        problems.append(f"{where}: recording {entry.audio!r} is missing from app/static/prompts")
    if production and (entry.placeholder or named_placeholder):
        problems.append(
            f"{where}: relies on placeholder recording {name!r}; "
            f"{LANGUAGES.get(code, code)} needs a real recording (Twilio has no voice for it) in production"
        )
    return problems


def _check_language(
    code: str, prompts: LanguagePrompts, cat: Mapping[str, LanguagePrompts], production: bool
) -> list[str]:
    problems: list[str] = []
    if code not in LANGUAGES:
        problems.append(f"{code}: not a language of app.languages")
    if not 1 <= prompts.menu_digit <= 8:
        problems.append(f"{code}: menu_digit must be 1-8 (9 is the emergency key)")
    if prompts.voice is not None and prompts.say_language is not None:
        problems += [f"{code}: {problem}" for problem in check_voice(prompts.voice, prompts.say_language)]
        if prompts.say_language.split("-", 1)[0] != code:
            problems.append(f"{code}: voice locale {prompts.say_language!r} is not {code!r} speech")
    if set(prompts.terms) != _TERMS or not all(value.strip() for value in prompts.terms.values()):
        problems.append(f"{code}: terms must be exactly {sorted(_TERMS)}, none blank")
    missing_names = sorted(set(cat) - set(prompts.language_names))
    if missing_names:
        problems.append(f"{code}: language_names lacks {missing_names}")
    for key in sorted(set(prompts.entries) - set(PROMPT_KEYS)):
        problems.append(f"{code}: unknown prompt key {key!r}")
    for key in PROMPT_KEYS:
        entry = prompts.entries.get(key)
        if entry is None:
            problems.append(f"{code}: missing prompt {key!r}")
            continue
        where = f"{code}.{key}"
        found = _PLACEHOLDER_RE.findall(entry.text)
        braces = entry.text.count("{") + entry.text.count("}")
        if set(found) != _PLACEHOLDERS[key] or braces != 2 * len(found):
            problems.append(
                f"{where}: placeholders must be exactly {sorted(_PLACEHOLDERS[key])}, no other braces"
            )
            continue
        for digit in _required_digits(key, prompts):
            if str(digit) not in entry.text:
                problems.append(f"{where}: text does not name key {digit}")
        if entry.audio is not None:
            problems += _check_audio(code, entry, production)
        elif prompts.voice is None:
            problems.append(f"{where}: neither a voice nor a recording")
            continue
        try:
            prompt = _resolve(cat, key, code, _SAMPLE_URL, _sample_params(key, code))
        except (PromptError, TypeError, ValueError) as exc:
            problems.append(f"{where}: does not resolve: {exc}")
            continue
        if prompt.text is not None and len(prompt.text) > MAX_SAY_CHARS:
            problems.append(f"{where}: longer than {MAX_SAY_CHARS} characters")
    return problems


def check_catalogue(
    production: bool, *, languages: Iterable[str] | None = None, directory: Path | None = None
) -> list[str]:
    """Every problem with the prompt catalogue, one line each (empty when it is usable).

    Checks ``languages`` (default: every catalogue language) for: a file per language, every
    prompt key present and no unknown ones, a known Twilio voice spoken in its own locale (and in
    the language's own speech: a Mandarin voice cannot serve Cantonese), the exact placeholders per
    key, the keys each text offers, unique menu digits, recordings that exist, and that every
    entry resolves. With ``production`` it also reports each prompt relying on a placeholder
    recording. ``directory`` replaces the shipped catalogue (tests).
    """
    try:
        cat = catalogue() if directory is None else load_catalogue(directory)
    except CatalogueError as exc:
        return [f"prompt catalogue: {exc}"]
    wanted = list(dict.fromkeys(CATALOGUE_LANGUAGES if languages is None else languages))
    problems: list[str] = []
    digits: dict[int, str] = {}
    for code in wanted:
        prompts = cat.get(code)
        if prompts is None:
            problems.append(f"{code}: no prompts for this language")
            continue
        if prompts.menu_digit in digits:
            problems.append(
                f"{code}: menu digit {prompts.menu_digit} already used by {digits[prompts.menu_digit]}"
            )
        digits.setdefault(prompts.menu_digit, code)
        problems += _check_language(code, prompts, cat, production)
    return problems
