from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.settings import Settings


def build(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


PRODUCTION_OK: dict[str, Any] = {
    "env": "production",
    "public_url": "https://hotline.example.org",
    "twilio_account_sid": "AC" + "1" * 32,
    "twilio_auth_token": "a-real-looking-token-value",
    "twilio_number": "+12125550100",
    "overflow_number": "+12125550199",
}


def test_development_defaults_match_the_contract() -> None:
    settings = build()
    assert settings.database_url == "sqlite:///./hotline.db"
    assert settings.keyring_file == "./hotline-keys.json"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.twilio_api_url == "https://api.twilio.com"
    assert settings.docs_open and settings.production_problems() == []


def test_a_complete_production_configuration_is_accepted_with_docs_closed() -> None:
    settings = build(**PRODUCTION_OK)
    assert settings.production_problems() == []
    assert settings.docs_open is False


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"public_url": "http://hotline.example.org"}, "HOTLINE_PUBLIC_URL must be https"),
        ({"twilio_account_sid": None}, "TWILIO_ACCOUNT_SID is required"),
        ({"twilio_auth_token": "changeme"}, "TWILIO_AUTH_TOKEN is missing or a placeholder"),
        ({"twilio_number": None}, "HOTLINE_TWILIO_NUMBER is required"),
        ({"overflow_number": None}, "HOTLINE_OVERFLOW_NUMBER is required"),
        ({"debug": True}, "HOTLINE_DEBUG must be off"),
        ({"docs_enabled": True}, "HOTLINE_DOCS_ENABLED must be false"),
        ({"twilio_api_url": "http://127.0.0.1:9999"}, "HOTLINE_TWILIO_API_URL must be Twilio's own API"),
        ({"twilio_api_key": "SK" + "2" * 32, "twilio_api_secret": ""}, "TWILIO_API_SECRET is missing"),
    ],
)
def test_production_refuses_each_unsafe_setting_with_one_line(change: dict[str, Any], problem: str) -> None:
    problems = build(**{**PRODUCTION_OK, **change}).production_problems()
    assert len(problems) == 1 and problems[0].startswith(problem)
    assert "\n" not in problems[0]


def test_environment_variables_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "current")
    monkeypatch.setenv("HOTLINE_TWILIO_PREVIOUS_AUTH_TOKENS", "old1, old2")
    monkeypatch.setenv("HOTLINE_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")
    settings = build()
    assert settings.twilio_auth_tokens() == ["current", "old1", "old2"]
    assert settings.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    assert "current" not in repr(settings) and "old1" not in repr(settings)


@pytest.mark.parametrize(
    "values",
    [
        {"env": "staging"},
        {"database_url": "mysql://root@localhost/x"},
        {"public_url": "hotline.example.org"},
        {"trusted_proxies": "not-an-ip"},
        {"db_service_role": "svc; DROP TABLE jobs"},
        {"jobs_poll_seconds": 0},
    ],
)
def test_bad_values_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        build(**values)
