"""Service settings, read once from the environment or a `.env` file.

Every name is `HOTLINE_`-prefixed except Twilio's two conventional ones. Secrets are `SecretStr`
and have no working default. `Settings.production_problems()` lists everything production refuses,
one clear line each; `hotline serve` prints them and exits without a traceback.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TWILIO_DEFAULT_API_URL = "https://api.twilio.com"

# Values that look like a secret but are documentation or copy-paste leftovers.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "changethis", "secret", "password", "xxx", "todo", "your-auth-token"}
)


class Environment(StrEnum):
    development = "development"
    production = "production"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    env: Environment = Environment.development
    database_url: str = "sqlite:///./hotline.db"
    keyring_file: str = "./hotline-keys.json"
    public_url: str = "http://127.0.0.1:8000"

    twilio_account_sid: str | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_ACCOUNT_SID", "HOTLINE_TWILIO_ACCOUNT_SID")
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_AUTH_TOKEN", "HOTLINE_TWILIO_AUTH_TOKEN")
    )
    twilio_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_API_KEY", "HOTLINE_TWILIO_API_KEY")
    )
    twilio_api_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_API_SECRET", "HOTLINE_TWILIO_API_SECRET")
    )
    twilio_previous_auth_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    twilio_number: str | None = None
    twilio_api_url: str = TWILIO_DEFAULT_API_URL
    overflow_number: str | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    db_service_role: str | None = None
    # Bearer token Prometheus sends for `GET /metrics`. Unset: open in development, 404 in production.
    metrics_token: SecretStr | None = None

    debug: bool = False
    # OpenAPI and /docs: open by default in development, closed in production (and refused there if set).
    docs_enabled: bool | None = None
    log_level: str = "INFO"
    # SQLite only: how long a writer waits for the write lock before giving up.
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=100, le=60000)
    # Jobs runner: polling period, lease length and retry ceiling for durable background jobs.
    jobs_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    jobs_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    # Jobs each worker claims and runs at once (REST calls to Twilio overlap under a surge).
    jobs_concurrency: int = Field(default=10, ge=1, le=64)
    jobs_max_attempts: int = Field(default=8, ge=1, le=100)
    jobs_enabled: bool = True
    # Staff sessions: idle and absolute lifetimes, TOTP step-up validity, break-glass grants.
    session_idle_minutes: float = Field(default=15, ge=1, le=240)
    session_absolute_hours: float = Field(default=12, ge=1, le=72)
    step_up_minutes: float = Field(default=5, ge=1, le=60)
    break_glass_minutes: float = Field(default=30, ge=5, le=240)
    # Live console events (`GET /api/v1/events`): keep-alive comment (and session re-check)
    # interval, and how long one stream lasts before the browser reconnects.
    events_keepalive_seconds: float = Field(default=15, gt=0, le=120)
    events_max_seconds: float = Field(default=600, gt=0, le=3600)
    # Sign-in attempts allowed per client address per minute (429 beyond), per process.
    login_ip_budget_per_minute: int = Field(default=30, ge=1, le=10000)
    # Routing: offer lengths (a voice offer rings, then the whisper asks to press 1), the away
    # period after a missed offer, and the escalation steps measured from when a contact queued.
    voice_ring_seconds: float = Field(default=20, ge=5, le=60)
    voice_whisper_seconds: float = Field(default=8, ge=3, le=30)
    chat_offer_seconds: float = Field(default=30, ge=5, le=300)
    missed_offer_away_minutes: float = Field(default=5, ge=0, le=120)
    language_match_seconds: float = Field(default=60, ge=0, le=3600)
    max_queue_seconds: float = Field(default=600, ge=30, le=7200)
    # Voicemail: the hold content offers a message and a callback after this long queued (callers
    # with a withheld number are never offered one: nobody could call them back); longest message.
    voicemail_offer_seconds: float = Field(default=120, ge=0, le=7200)
    voicemail_max_seconds: int = Field(default=180, ge=10, le=600)
    # Know-your-rights texts whose review is older than this are flagged to supervisors.
    rights_review_max_days: float = Field(default=180, ge=1, le=3650)
    # Retention (days), per retention class; the jobs runner and `hotline retention purge`
    # crypto-shred what is due (a legal hold overrides). Content of closed cases (intake fields,
    # notes), their chat messages and voicemail audio count from the case's closing; abandoned
    # contacts (their Twilio SIDs) from the contact's end; a caller with no open case (number and
    # blind index) and the calls' numbers from the last contact.
    retention_case_content_days: float = Field(default=730, ge=1, le=36500)
    retention_chat_messages_days: float = Field(default=180, ge=1, le=36500)
    retention_voicemail_days: float = Field(default=30, ge=1, le=36500)
    retention_abandoned_contact_days: float = Field(default=30, ge=1, le=36500)
    retention_caller_days: float = Field(default=730, ge=1, le=36500)
    # SMS/WhatsApp keywords asking for them, per language (JSON); replaces the shipped words
    # (RIGHTS, DERECHOS, DWA, ПРАВА, 权利, 權利, অধিকার) for the languages it names.
    rights_keywords: dict[str, list[str]] | None = None
    # Keywords that start an anonymous report by SMS/WhatsApp, per language (JSON); replaces the
    # shipped words (REPORT, REPORTAR, DENUNCIA, RAPÒ, СООБЩИТЬ, 举报, 舉報, রিপোর্ট) for those named.
    report_keywords: dict[str, list[str]] | None = None
    # Chat: conversations close after this long without a message either way; WhatsApp replies
    # outside the 24-hour window are held and this approved template (a Content SID, HX…) asks the
    # caller to write back; optionally delete each message at Twilio once stored here.
    # Where SMS/WhatsApp messages are spooled (sealed) while the database is down.
    spool_dir: str = "./hotline-spool"
    chat_inactivity_minutes: float = Field(default=120, ge=5, le=10080)
    whatsapp_template_sid: str | None = Field(default=None, pattern=r"^HX[0-9a-fA-F]{32}$")
    delete_messages_at_twilio: bool = False
    # Delete each call's record at Twilio (the caller's and the volunteers' legs) once it has
    # ended (a job: Twilio refuses a call still in progress, 20009, and is asked again later).
    delete_calls_at_twilio: bool = False
    # An API request that has not started answering by then gets 503 (database down or very slow).
    api_deadline_seconds: float = Field(default=8.0, ge=1, le=60)
    # Unwrapped data keys stay in memory this long (seconds); 0 disables the cache.
    data_key_cache_seconds: float = Field(default=300.0, ge=0, le=3600)
    # Access log: sign a checkpoint after this many entries or this many seconds, whichever first.
    audit_checkpoint_entries: int = Field(default=1000, ge=1, le=1_000_000)
    audit_checkpoint_seconds: float = Field(default=300.0, ge=1, le=86400)
    # Backup erasure horizon: the jobs runner rotates the active key-encryption key this often
    # (0 turns scheduled rotation off) and destroys a retired one this long after its retirement,
    # once every database backup that may hold data keys wrapped under it has expired.
    # Access-log entries older than this may be archived (`hotline audit archive`) into signed
    # segment files in this directory and pruned from the database.
    audit_retention_days: int = Field(default=2190, ge=1, le=36500)
    audit_archive_dir: str = "./hotline-audit-archive"
    kek_rotate_days: float = Field(default=90, ge=0, le=3650)
    backup_retention_days: float = Field(default=35, ge=1, le=3650)

    @field_validator("twilio_previous_auth_tokens", "trusted_proxies", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("db_service_role")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "").isalnum():
            raise ValueError("must be a plain identifier (letters, digits, _)")
        return value

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def docs_open(self) -> bool:
        return (not self.is_production) if self.docs_enabled is None else self.docs_enabled

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def twilio_auth_tokens(self) -> list[str]:
        """Tokens accepted for webhook signatures: the current one first, then rotation leftovers."""
        tokens = [self.twilio_auth_token] if self.twilio_auth_token else []
        tokens += self.twilio_previous_auth_tokens
        return [t.get_secret_value() for t in tokens if t.get_secret_value()]

    def production_problems(self) -> list[str]:
        """Every reason production must not start with these settings (empty when fine)."""
        if not self.is_production:
            return []
        problems: list[str] = []

        def placeholder(secret: SecretStr | None) -> bool:
            return secret is None or secret.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS

        if not self.public_url.startswith("https://"):
            problems.append("HOTLINE_PUBLIC_URL must be https in production")
        if not self.twilio_account_sid:
            problems.append("TWILIO_ACCOUNT_SID is required in production")
        if placeholder(self.twilio_auth_token):
            problems.append("TWILIO_AUTH_TOKEN is missing or a placeholder")
        if self.twilio_api_key and placeholder(self.twilio_api_secret):
            problems.append("TWILIO_API_SECRET is missing or a placeholder while TWILIO_API_KEY is set")
        if not self.twilio_number:
            problems.append("HOTLINE_TWILIO_NUMBER is required in production")
        if not self.overflow_number:
            problems.append("HOTLINE_OVERFLOW_NUMBER is required in production")
        if self.debug:
            problems.append("HOTLINE_DEBUG must be off in production")
        if self.docs_enabled is True:
            problems.append("HOTLINE_DOCS_ENABLED must be false in production (no open API docs)")
        if self.twilio_api_url != TWILIO_DEFAULT_API_URL:
            problems.append("HOTLINE_TWILIO_API_URL must be Twilio's own API in production")
        if self.metrics_token is not None and self.metrics_token.get_secret_value():
            if placeholder(self.metrics_token) or len(self.metrics_token.get_secret_value()) < 32:
                problems.append("HOTLINE_METRICS_TOKEN is a placeholder or shorter than 32 characters")
        return problems


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (and `.env`), with explicit overrides for tests and the CLI."""
    return Settings(**overrides)
