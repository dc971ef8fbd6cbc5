"""app.accounts.passwords: argon2id parameters, verify semantics, and the enrolment policy (test plan T09)."""

from __future__ import annotations

import logging
import statistics
import time
import unicodedata

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from app.accounts import passwords as pw_mod
from app.accounts.passwords import (
    COMMON_PASSWORD_LISTS,
    MAX_LENGTH,
    MIN_LENGTH,
    PasswordPolicyError,
    Passwords,
    check_policy,
    common_passwords,
    enforce_policy,
    meets_owasp_floor,
)

# A password no list contains and no test identity overlaps: used where only one rule is under test.
GOOD = "vKq7-tundra-Wobble-91"


@pytest.fixture(scope="module")
def cheap() -> Passwords:
    """Argon2id with minimal cost so property tests run fast; production parameters are tested apart."""
    return Passwords(time_cost=1, memory_cost=8, parallelism=1, allow_below_floor=True)


@pytest.fixture(scope="module")
def production() -> Passwords:
    return Passwords()


# --- hashing: parameters --------------------------------------------------------------------------


def test_production_hash_is_argon2id_at_or_above_owasp_floor(production: Passwords) -> None:
    stored = production.hash(GOOD)
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (Type.ID, 65536, 3, 1)
    assert params.salt_len >= 16 and params.hash_len == 32
    assert meets_owasp_floor(stored)
    assert (production.memory_cost, production.time_cost, production.parallelism) == (65536, 3, 1)


def test_production_verify_time_is_inside_the_t09_band(production: Passwords) -> None:
    stored = production.hash(GOOD)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        assert production.verify(stored, GOOD)
        timings.append(time.perf_counter() - started)
    p50 = statistics.median(timings)
    print(f"argon2id m=64MiB t=3 p=1 verify p50: {p50 * 1000:.0f} ms")
    assert 0.05 <= p50 <= 1.0


def test_parameters_below_the_floor_are_refused_unless_explicitly_allowed() -> None:
    with pytest.raises(ValueError, match="OWASP floor"):
        Passwords(time_cost=2, memory_cost=19455)
    with pytest.raises(ValueError, match="OWASP floor"):
        Passwords(time_cost=1, memory_cost=8)
    assert Passwords(time_cost=1, memory_cost=8, allow_below_floor=True).time_cost == 1


@pytest.mark.parametrize(
    ("time_cost", "memory_cost", "expected"),
    [
        (1, 47104, True),
        (1, 47103, False),
        (2, 19456, True),
        (2, 19455, False),
        (3, 12288, True),
        (3, 12287, False),
        (4, 9216, True),
        (5, 7168, True),
        (6, 7167, False),
    ],
)
def test_meets_owasp_floor_follows_the_asvs_appendix_c_table(
    time_cost: int, memory_cost: int, expected: bool
) -> None:
    stored = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=1).hash("x")
    assert meets_owasp_floor(stored) is expected


def test_meets_owasp_floor_refuses_other_types_short_salts_and_garbage() -> None:
    assert not meets_owasp_floor(PasswordHasher(memory_cost=65536, type=Type.I).hash("x"))
    assert not meets_owasp_floor(PasswordHasher(memory_cost=65536, salt_len=8).hash("x"))
    assert not meets_owasp_floor("$2b$12$notargon")
    assert not meets_owasp_floor("")


# --- hashing: verify ------------------------------------------------------------------------------


def test_hash_round_trips_and_salts_every_hash(cheap: Passwords) -> None:
    first, second = cheap.hash(GOOD), cheap.hash(GOOD)
    assert first != second
    assert cheap.verify(first, GOOD) and cheap.verify(second, GOOD)
    assert not cheap.verify(first, GOOD + "x")
    assert not cheap.verify(first, GOOD.lower())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(min_size=1, max_size=200))
def test_any_text_up_to_200_chars_verifies_exactly_as_typed(cheap: Passwords, password: str) -> None:
    stored = cheap.hash(password)
    assert cheap.verify(stored, password)
    assert not cheap.verify(stored, password + "x")  # no truncation at any length
    assert not cheap.verify(stored, password[:-1])


def test_no_trimming_truncation_or_normalisation(cheap: Passwords) -> None:
    long = "q" * 63 + "Z" * 65  # 128 code points: beyond bcrypt's 72-byte cliff
    stored = cheap.hash(long)
    assert cheap.verify(stored, long)
    assert not cheap.verify(stored, long[:72])
    assert not cheap.verify(stored, long + "x")

    spaced = "  leading and trailing  "
    stored = cheap.hash(spaced)
    assert not cheap.verify(stored, spaced.strip())

    composed = unicodedata.normalize("NFC", "café crème brûlée")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    stored = cheap.hash(composed)
    assert cheap.verify(stored, composed)
    assert not cheap.verify(stored, decomposed)  # documented: what is typed is what is hashed


def test_lone_surrogate_never_crashes_verify(cheap: Passwords) -> None:
    stored = cheap.hash(GOOD)
    assert not cheap.verify(stored, "\ud800abcdefgh")
    assert not cheap.verify(None, "\ud800abcdefgh")


class _RecordingHasher:
    """Stands in for the (slotted) argon2 PasswordHasher and records which stored hash each verify used."""

    def __init__(self, real: PasswordHasher) -> None:
        self.real = real
        self.seen: list[str] = []

    def verify(self, stored: str, secret: bytes) -> bool:
        self.seen.append(stored)
        return self.real.verify(stored, secret)


def _spy_on_hasher(passwords: Passwords, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    spy = _RecordingHasher(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", spy)
    return spy.seen


def test_unknown_user_costs_one_verify_with_the_same_parameters(
    cheap: Passwords, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_hash = cheap.hash(GOOD)
    seen = _spy_on_hasher(cheap, monkeypatch)

    assert cheap.verify(None, GOOD) is False
    assert len(seen) == 1
    dummy = extract_parameters(seen[0])
    assert dummy == extract_parameters(real_hash)

    seen.clear()
    assert cheap.verify(real_hash, "wrong password") is False
    assert seen == [real_hash]


def test_corrupt_stored_hash_fails_closed_with_a_dummy_verify_and_no_secret_in_logs(
    cheap: Passwords, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen = _spy_on_hasher(cheap, monkeypatch)
    corrupt = "$argon2id$v=19$m=8,t=1,p=1$bm90LWEtc2FsdA$"
    with caplog.at_level(logging.WARNING, logger=pw_mod.__name__):
        assert cheap.verify(corrupt, GOOD) is False
        assert cheap.verify("not a hash at all", GOOD) is False
    # Each attempt ended with exactly one dummy verify, so it costs what a wrong password costs.
    dummies = [h for h in seen if h not in (corrupt, "not a hash at all")]
    assert len(dummies) == 2
    assert "not a valid argon2 hash" in caplog.text
    assert GOOD not in caplog.text and corrupt not in caplog.text


def test_unknown_user_and_wrong_password_take_about_the_same_time(production: Passwords) -> None:
    """An unknown account costs one argon2 verify with the same parameters as a real one — checked
    structurally, since wall-clock equality is noise on a loaded 2-core machine (it failed CI at
    25 %); the timing check that remains only catches a path that skips the hash altogether."""
    from app.accounts.passwords import extract_parameters

    stored = production.hash(GOOD)
    verified: list[str] = []
    real = production._hasher

    class Spy:
        def verify(self, hash_: str, secret: bytes) -> bool:
            verified.append(hash_)
            return real.verify(hash_, secret)

    production._hasher = Spy()  # type: ignore[assignment]
    try:
        assert production.verify(None, "wrong-Password-123") is False
        assert production.verify(stored, "wrong-Password-123") is False
    finally:
        production._hasher = real
    dummy, checked = verified
    assert checked == stored and dummy != stored
    assert extract_parameters(dummy) == extract_parameters(stored)  # same memory, time, lanes

    def interleaved() -> tuple[float, float]:
        unknown, wrong = [], []
        for _ in range(5):
            for target, samples in ((None, unknown), (stored, wrong)):
                started = time.perf_counter()
                production.verify(target, "wrong-Password-123")
                samples.append(time.perf_counter() - started)
        return statistics.median(unknown), statistics.median(wrong)

    unknown, wrong = interleaved()
    assert unknown > wrong / 3, "the unknown-account path is far faster: it skips the hash"


def test_non_str_password_is_a_type_error(cheap: Passwords) -> None:
    with pytest.raises(TypeError):
        cheap.hash(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cheap.verify(None, None)  # type: ignore[arg-type]


# --- hashing: rehash ------------------------------------------------------------------------------


def test_needs_rehash_only_when_the_stored_hash_is_weaker(cheap: Passwords) -> None:
    stronger = Passwords(time_cost=2, memory_cost=16, parallelism=1, allow_below_floor=True)
    old = cheap.hash(GOOD)
    new = stronger.hash(GOOD)

    assert stronger.needs_rehash(old)  # parameters rose since `old` was stored
    assert not stronger.needs_rehash(new)
    assert not cheap.needs_rehash(old)
    assert not cheap.needs_rehash(new)  # never downgrade after a parameter rollback

    more_lanes = Passwords(time_cost=1, memory_cost=16, parallelism=2, allow_below_floor=True).hash(GOOD)
    same_cost_one_lane = Passwords(time_cost=1, memory_cost=16, parallelism=1, allow_below_floor=True)
    assert not same_cost_one_lane.needs_rehash(more_lanes)  # lanes are tuning, not strength


def test_needs_rehash_for_other_argon2_types_smaller_salts_and_garbage(cheap: Passwords) -> None:
    argon2i = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I).hash(GOOD)
    short_salt = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, salt_len=8).hash(GOOD)
    assert cheap.verify(argon2i, GOOD)  # still accepted at login, so it can be upgraded
    assert cheap.needs_rehash(argon2i)
    assert cheap.needs_rehash(short_salt)
    assert cheap.needs_rehash("$2b$12$legacy")


# --- policy ---------------------------------------------------------------------------------------


def test_common_password_set_size_and_sources() -> None:
    assert set(COMMON_PASSWORD_LISTS) <= set(FREQUENCY_LISTS)
    assert set(COMMON_PASSWORD_LISTS) == set(FREQUENCY_LISTS)  # every list zxcvbn ships is used
    per_list = {name: len(FREQUENCY_LISTS[name]) for name in COMMON_PASSWORD_LISTS}
    entries = common_passwords()
    refusable = sum(1 for word in entries if len(word) >= MIN_LENGTH)
    print(f"common-password set: {len(entries)} entries ({refusable} of 8+ chars); per list: {per_list}")
    # zxcvbn's lists are deduplicated against each other and hold 93,855 words in total: below the
    # 100,000 the issue hoped for, so the assertion pins what the data really offers.
    assert len(entries) >= 93_000
    assert common_passwords() is entries  # built once


def test_top_3000_common_passwords_are_all_refused() -> None:
    top = FREQUENCY_LISTS["passwords"][:3000]
    assert all(check_policy(word) for word in top)
    long_ones = [word for word in top if len(word) >= MIN_LENGTH]
    assert long_ones  # the length rule alone must not be what refuses them
    for word in long_ones:
        assert any("too common" in problem for problem in check_policy(word))


@pytest.mark.parametrize(
    "password",
    ["password", "Password", "PASSWORD", "iloveyou", "sunshine", "Princess", "basketball", "pass word"],
)
def test_common_passwords_refused_case_insensitively(password: str) -> None:
    assert any("too common" in problem for problem in check_policy(password))


def test_common_words_from_the_other_lists_are_refused() -> None:
    # One 8+ letter entry per non-password list, taken from the data rather than hard-coded.
    for name in COMMON_PASSWORD_LISTS:
        word = next(w for w in FREQUENCY_LISTS[name] if len(w) >= MIN_LENGTH)
        assert any("too common" in p for p in check_policy(word.upper())), name


def test_length_limits_count_code_points_as_typed() -> None:
    assert check_policy(GOOD[:MIN_LENGTH]) == []
    assert check_policy(GOOD[: MIN_LENGTH - 1]) == [
        f"Password must be at least {MIN_LENGTH} characters long."
    ]
    at_max = (GOOD * 10)[:MAX_LENGTH]
    assert check_policy(at_max) == []
    assert check_policy(at_max + "y") == [f"Password must be at most {MAX_LENGTH} characters long."]
    assert check_policy("🙂🌊🔥🦉🌵🍋🎲🚲") == []  # 8 code points
    assert check_policy("ñ" * 7)[0].startswith("Password must be at least")
    # NFD "é" is two code points: counted as received, not after normalisation.
    assert check_policy(unicodedata.normalize("NFD", "ééééqz")) == []
    assert check_policy(" " * 3 + "Zq8!" + " ") == []  # spaces count, nothing is trimmed


def test_no_composition_rules() -> None:
    for password in ["zqxwvjkmbrtp", "ZQXWVJKMBRTP", "83610527493826", "Ωμέγα-λύκος-ψάρι"]:
        assert check_policy(password) == [], password


def test_email_local_part_and_name_are_refused() -> None:
    email, name = "maria.lopez@example.org", "María López"
    refused = [
        "maria.lopez",
        "MARIA.LOPEZ",
        "mariaLopez2024!",
        "Xx-lopez-rocks",
        "the-María-password",
        "marialopezmarialopez",
    ]
    for password in refused:
        problems = check_policy(password, email=email, name=name)
        assert "Password must not contain your e-mail address or your name." in problems, password
    assert check_policy(GOOD, email=email, name=name) == []


def test_short_name_pieces_do_not_refuse_unrelated_passwords() -> None:
    assert check_policy("salient-mango-44", email="al@example.org", name="Al Ng") == []
    assert check_policy("ab", email="ab@example.org")[0].startswith("Password must be at least")
    # ...but the whole short identity is still refused when it is the password (padded to length).
    assert check_policy("al.ng.al", email="al.ng.al@example.org")


def test_lone_surrogates_are_refused_by_policy() -> None:
    assert check_policy("abc\udc80defghij") == ["Password contains characters that are not valid text."]


@pytest.mark.parametrize(
    ("password", "email", "name"),
    [
        ("short", None, None),
        ("password1", None, None),
        ("maria.lopez.secret", "maria.lopez@example.org", None),
        ("x" * 200, None, None),
        ("abc\ud800defghij", None, None),
    ],
)
def test_problems_never_repeat_the_password(password: str, email: str | None, name: str | None) -> None:
    problems = check_policy(password, email=email, name=name)
    assert problems
    with pytest.raises(PasswordPolicyError) as caught:
        enforce_policy(password, email=email, name=name)
    assert caught.value.problems == problems
    for text in [*problems, str(caught.value), repr(caught.value)]:
        assert password not in text


def test_enforce_policy_accepts_a_good_password() -> None:
    enforce_policy(GOOD, email="maria.lopez@example.org", name="María López")
    assert issubclass(PasswordPolicyError, ValueError)


def test_non_str_is_a_policy_problem_not_a_crash() -> None:
    assert check_policy(None) == ["Password must be text."]  # type: ignore[arg-type]
