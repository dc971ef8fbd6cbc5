"""Languages the hotline serves. Codes are ISO 639-1 where one exists, ISO 639-3 otherwise;
Mandarin (`cmn`) and Cantonese (`yue`) are separate languages, as callers experience them."""

from __future__ import annotations

LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "ht": "Haitian Creole",
    "pt": "Portuguese",
    "ar": "Arabic",
    "ru": "Russian",
    "uk": "Ukrainian",
    "bn": "Bengali",
    "ur": "Urdu",
    "pl": "Polish",
    "ko": "Korean",
    "cmn": "Mandarin",
    "yue": "Cantonese",
    "wo": "Wolof",
    "ff": "Fula",
    "qu": "Quechua",
    "kjb": "Q'anjob'al",
}


class UnknownLanguage(ValueError):
    pass


def parse_languages(raw: str | list[str]) -> list[str]:
    """Comma-separated or listed codes → a de-duplicated list of known codes (order kept)."""
    items = raw.split(",") if isinstance(raw, str) else raw
    codes: list[str] = []
    for item in items:
        code = item.strip().lower()
        if not code:
            continue
        if code not in LANGUAGES:
            raise UnknownLanguage(f"unknown language code {code!r} (known: {', '.join(sorted(LANGUAGES))})")
        if code not in codes:
            codes.append(code)
    return codes
