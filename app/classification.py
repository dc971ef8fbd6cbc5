"""The reviewed classification of every text-like column that is NOT sealed, with its reason.

`tests/test_classification.py` walks `Base.metadata`: every String, Text, JSON or LargeBinary
column must be sealed (with a retention class) or listed here. A new unlisted column fails the
test, so adding a place where plaintext could land is always a reviewed decision.
"""

from __future__ import annotations

_ID = "an identifier or code from a fixed vocabulary; no personal data"
_HASH = "a keyed hash or digest; reveals nothing without the key"
_STAFF = "staff directory data, visible to colleagues by design; never caller data"
_PUBLIC = "public information about an organisation"

ALLOWED_PLAINTEXT: dict[tuple[str, str], str] = {
    ("audit_checkpoints", "head_hash"): _HASH,
    ("audit_checkpoints", "key_id"): _ID,
    ("audit_checkpoints", "signature"): "an Ed25519 signature over a chain head",
    ("audit_entries", "actor_id"): "a staff public id or a system component name (validated pattern)",
    ("audit_entries", "actor_roles"): _ID,
    ("audit_entries", "action"): _ID,
    ("audit_entries", "object_type"): _ID,
    ("audit_entries", "object_id"): "a public id (validated pattern), never free text",
    ("audit_entries", "fields"): "column names",
    ("audit_entries", "purpose"): _ID,
    ("audit_entries", "outcome"): _ID,
    ("audit_entries", "request_id"): "a random request id",
    ("audit_entries", "value_hash"): _HASH,
    ("audit_entries", "details"): "counts, flags and ids only (validated by audit.record)",
    ("audit_entries", "prev_hash"): _HASH,
    ("audit_entries", "entry_hash"): _HASH,
    ("callers", "phone_index"): "truncated HMAC blind index of the E.164 number (separate key)",
    ("callers", "phone_last2"): "last two digits: the only display-safe part of a number (policy allow-list)",
    ("case_categories", "id"): _ID,
    ("case_categories", "label"): "seeded vocabulary",
    ("data_keys", "retention_class"): _ID,
    ("data_keys", "wrapped"): "a data key encrypted under a key-encryption key outside the database",
    ("data_keys", "kek_id"): _ID,
    ("jobs", "kind"): _ID,
    ("jobs", "payload"): "ids and flags only (enqueue contract); never personal data",
    ("jobs", "state"): _ID,
    ("jobs", "locked_by"): "host name and process id of a runner",
    ("jobs", "last_error"): "exception class name and a short code, never a message",
    ("jobs", "dedup_key"): "ids composed by the service",
    ("users", "public_id"): _ID,
    ("users", "email"): _STAFF + "; the sign-in identifier",
    ("users", "display_name"): _STAFF,
    ("users", "roles"): _ID,
    ("users", "languages"): _ID,
    ("users", "timezone"): _ID,
    ("users", "status"): _ID,
    ("users", "password_hash"): "an argon2id hash",
    ("cases", "public_id"): _ID,
    ("cases", "status"): _ID,
    ("cases", "category_id"): _ID,
    ("cases", "urgency"): _ID,
    ("cases", "language"): _ID,
    ("enrolment_tokens", "token_hash"): _HASH,
    ("staff_sessions", "token_hash"): _HASH,
    ("staff_devices", "token_hash"): _HASH,
    ("organisations", "public_id"): _ID,
    ("organisations", "name"): _PUBLIC,
    ("organisations", "services"): _PUBLIC,
    ("organisations", "languages"): _PUBLIC,
    ("organisations", "hours"): _PUBLIC,
    ("organisations", "service_area"): _PUBLIC,
    ("organisations", "intake_phone"): _PUBLIC + " (a public intake line)",
    ("organisations", "intake_url"): _PUBLIC,
    ("break_glass_grants", "review_outcome"): _ID,
    ("break_glass_grants", "public_id"): _ID,
    ("audit_verifications", "public_id"): _ID,
    ("audit_verifications", "state"): _ID,
    ("audit_verifications", "problems"): "seq numbers and fixed reason texts from the verifier",
    ("contacts", "public_id"): _ID,
    ("contacts", "channel"): _ID,
    ("contacts", "language"): _ID,
    ("contacts", "outcome"): _ID,
    ("contacts", "twilio_sid_hash"): _HASH,
    ("referrals", "services"): _ID,
    ("referrals", "public_id"): _ID,
    ("case_notes", "public_id"): _ID,
}
