"""Staff passwords: argon2id hashing and the enrolment policy.

Hashing
    :class:`Passwords` wraps argon2-cffi's ``PasswordHasher`` with **argon2id, m = 64 MiB, t = 3, p = 1**,
    a 16-byte salt and a 32-byte tag.  The OWASP Password Storage Cheat Sheet and ASVS v5 Appendix C put
    the floor at m = 19 MiB / t = 2 / p = 1 (or m = 12 MiB at t = 3); we sit about five times above it in
    memory, which is what makes GPU cracking of a stolen dump expensive.  p = 1 (argon2-cffi's default is
    4) keeps one hash on one core: on the 2-core target a verify takes roughly 150 ms, inside the 50 ms-1 s
    band of test T09, and the caller's concurrency cap (a semaphore of about 2) then bounds CPU and
    memory (2 x 64 MiB) during a login flood.  Hashing is synchronous and CPU-bound: call it in a worker
    thread, never on the event loop.

    ``verify(None, password)`` checks against a dummy hash made with the same parameters, so an unknown
    account costs the same time as a wrong password (ASVS v5 6.3.8).

Policy (ASVS v5 6.2.x, NIST SP 800-63B 5.1.1)
    * 8 to 128 characters, counted as Unicode code points of the string exactly as received.  Nothing is
      trimmed, truncated or normalised before hashing: the hash is over the UTF-8 of what was typed.  We
      deliberately do not NFC/NFKC-normalise, because doing it silently would change what is hashed and
      could never be undone without a rehash of every account; the cost is that a password typed once in
      decomposed form (rare; some macOS input paths) must be typed the same way again.
    * No composition rules.
    * Refused when it is one of the ~94,000 entries of zxcvbn's frequency lists (common passwords,
      English words, names, surnames, TV and film vocabulary), compared case-insensitively.
    * Refused when it equals or contains the user's e-mail local part or name (or a 4+ letter piece
      of them).
    The comparisons for the last two rules use a case-folded, NFKC-normalised, whitespace-stripped form;
    that form is only ever compared, never hashed, so it does not contradict "as typed".

Nothing in this module logs or raises with a password or hash in the message.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import unicodedata
from collections.abc import Iterable

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "COMMON_PASSWORD_LISTS",
    "MAX_LENGTH",
    "MIN_LENGTH",
    "PasswordPolicyError",
    "Passwords",
    "check_policy",
    "common_passwords",
    "enforce_policy",
    "meets_owasp_floor",
]

log = logging.getLogger(__name__)

MIN_LENGTH = 8
#: Upper bound in code points; ASVS asks that at least 64 be accepted.  The HTTP layer should cap the
#: raw field well above this (e.g. 1024) so verify never sees megabytes.
MAX_LENGTH = 128

#: Production argon2id parameters (see the module docstring for why).
TIME_COST = 3
MEMORY_COST_KIB = 64 * 1024
PARALLELISM = 1
HASH_LEN = 32
SALT_LEN = 16

#: zxcvbn frequency lists folded into the common-password set (all six it ships).
COMMON_PASSWORD_LISTS = (
    "passwords",
    "english_wikipedia",
    "female_names",
    "surnames",
    "male_names",
    "us_tv_and_film",
)

# Pieces of an e-mail local part or name shorter than this are not searched for inside a password:
# "li" or "ana" would refuse "salient" or "banana" for no security gain.
_MIN_CONTEXT_PIECE = 4
_SPLIT_CONTEXT = re.compile(r"[\s._+\-@,'’]+")

# OWASP / ASVS v5 Appendix C argon2id floor: minimum memory (KiB) for a given iteration count.
_OWASP_FLOOR_KIB = {1: 47104, 2: 19456, 3: 12288, 4: 9216}
_OWASP_FLOOR_KIB_T5_PLUS = 7168
_MIN_SALT_LEN = 16


class PasswordPolicyError(ValueError):
    """A password was refused by the policy; ``problems`` holds the human-readable reasons."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


def _encode(password: str) -> bytes:
    # "surrogatepass" so a lone surrogate (valid in JSON "\ud800", invalid as UTF-8) can never crash a
    # login with a 500; the policy refuses such passwords at enrolment, so no stored hash can match one.
    # For every well-formed string this is byte-identical to plain UTF-8.
    return password.encode("utf-8", "surrogatepass")


def meets_owasp_floor(stored_hash: str) -> bool:
    """Whether a stored hash is argon2id with a salt of 16+ bytes and (m, t) at or above the OWASP floor.

    Used by checks over stored hashes (test T09) and by a startup guard on configured parameters.
    """
    try:
        params = extract_parameters(stored_hash)
    except (InvalidHashError, ValueError):
        return False
    if params.type is not Type.ID or params.salt_len < _MIN_SALT_LEN or params.time_cost < 1:
        return False
    floor = _OWASP_FLOOR_KIB.get(params.time_cost, _OWASP_FLOOR_KIB_T5_PLUS)
    return params.memory_cost >= floor


class Passwords:
    """argon2id hashing with production parameters by default.

    Tests inject cheap parameters with ``allow_below_floor=True``; without it, parameters under the
    OWASP floor are refused so a misconfiguration cannot ship weak hashes.
    """

    def __init__(
        self,
        *,
        time_cost: int = TIME_COST,
        memory_cost: int = MEMORY_COST_KIB,
        parallelism: int = PARALLELISM,
        hash_len: int = HASH_LEN,
        salt_len: int = SALT_LEN,
        allow_below_floor: bool = False,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=hash_len,
            salt_len=salt_len,
            type=Type.ID,
        )
        # Computed eagerly (once per instance, at startup) so even the first unknown-user login costs
        # exactly one verify; a random secret nobody knows, hashed with *these* parameters.
        self._dummy_hash = self._hasher.hash(_encode(secrets.token_urlsafe(32)))
        if not allow_below_floor and not meets_owasp_floor(self._dummy_hash):
            raise ValueError("argon2id parameters are below the OWASP floor")
        self._current = extract_parameters(self._dummy_hash)

    @property
    def time_cost(self) -> int:
        """Iterations (t) of new hashes."""
        return self._hasher.time_cost

    @property
    def memory_cost(self) -> int:
        """Memory in KiB (m) of new hashes."""
        return self._hasher.memory_cost

    @property
    def parallelism(self) -> int:
        """Lanes (p) of new hashes."""
        return self._hasher.parallelism

    def hash(self, password: str) -> str:
        """Return the PHC string (``$argon2id$v=19$m=...,t=...,p=...$salt$tag``) of ``password``.

        The policy is not applied here (it needs the user's e-mail and name): call
        :func:`enforce_policy` first when the password is being chosen.
        """
        if not isinstance(password, str):
            raise TypeError("password must be a str")
        return self._hasher.hash(_encode(password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Return whether ``password`` matches ``stored_hash``; never raises for a wrong password.

        ``stored_hash=None`` (unknown account, or an account without a password yet) and an unparsable
        stored hash both run one verify against the dummy hash and return False, so neither answers
        faster than a wrong password.
        """
        if not isinstance(password, str):
            raise TypeError("password must be a str")
        secret = _encode(password)
        if stored_hash is not None:
            try:
                return self._hasher.verify(stored_hash, secret)
            except VerifyMismatchError:
                return False
            except (InvalidHashError, VerificationError):
                # Corrupt row: fail closed and spend the same time as a normal verify.  The hash
                # itself is not logged; the caller knows which account it was.
                log.warning("stored password hash is not a valid argon2 hash")
        try:
            self._hasher.verify(self._dummy_hash, secret)
        except VerificationError:
            pass
        return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` is weaker than what this instance produces; call after a good verify.

        True for a non-argon2id hash, an older argon2 version, or a lower memory, iteration, tag or
        salt size.  A hash that is *stronger* (say, after parameters were rolled back) is kept, so a
        rollback never downgrades accounts.  Parallelism is not compared: it is a tuning choice for
        the server's cores, not a strength parameter.  An unparsable hash needs replacing: True.
        """
        try:
            stored = extract_parameters(stored_hash)
        except (InvalidHashError, ValueError):
            return True
        current = self._current
        return (
            stored.type is not Type.ID
            or stored.version < current.version
            or stored.memory_cost < current.memory_cost
            or stored.time_cost < current.time_cost
            or stored.hash_len < current.hash_len
            or stored.salt_len < current.salt_len
        )


def _fold(text: str) -> str:
    """Comparison form: NFKC, case-folded, no whitespace at all."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


@functools.cache
def common_passwords() -> frozenset[str]:
    """The refused-password set: every entry of :data:`COMMON_PASSWORD_LISTS`, case-folded.

    Built once, on first use (about 94,000 entries, a few MB), from zxcvbn's bundled frequency
    lists; zxcvbn's scorer itself is never run.
    """
    # Imported here so importing this module (and the CLI) does not pay for the word lists.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    entries: set[str] = set()
    for name in COMMON_PASSWORD_LISTS:
        entries.update(_fold(word) for word in FREQUENCY_LISTS[name])
    entries.discard("")
    return frozenset(entries)


def _context_pieces(email: str | None, name: str | None) -> set[str]:
    pieces: set[str] = set()
    sources: list[str] = []
    if email:
        local = email.rpartition("@")[0] if "@" in email else email
        sources.append(local)
    if name:
        sources.append(name)
    for source in sources:
        whole = _fold(source)
        if whole:
            pieces.add(whole)
        pieces.update(_fold(part) for part in _SPLIT_CONTEXT.split(source))
        # "maria.lopez" and "Maria Lopez" also as one run of letters.
        pieces.add(_fold(_SPLIT_CONTEXT.sub("", source)))
    return {p for p in pieces if p}


def _contains_context(folded: str, pieces: Iterable[str]) -> bool:
    for piece in pieces:
        if folded == piece:
            return True
        if len(piece) >= _MIN_CONTEXT_PIECE and piece in folded:
            return True
    return False


def check_policy(password: str, *, email: str | None = None, name: str | None = None) -> list[str]:
    """Return the reasons ``password`` is refused (an empty list means it is acceptable).

    ``email`` and ``name`` are the account's, when known; the messages never repeat the password.
    """
    if not isinstance(password, str):
        return ["Password must be text."]
    problems: list[str] = []
    length = len(password)  # code points, exactly as typed
    if length < MIN_LENGTH:
        problems.append(f"Password must be at least {MIN_LENGTH} characters long.")
    elif length > MAX_LENGTH:
        problems.append(f"Password must be at most {MAX_LENGTH} characters long.")
    if any("\ud800" <= ch <= "\udfff" for ch in password):
        problems.append("Password contains characters that are not valid text.")
        return problems  # the folding below would be meaningless on broken text
    folded = _fold(password)
    if folded in common_passwords():
        problems.append("Password is too common: it appears on lists of frequently used passwords and words.")
    if _contains_context(folded, _context_pieces(email, name)):
        problems.append("Password must not contain your e-mail address or your name.")
    return problems


def enforce_policy(password: str, *, email: str | None = None, name: str | None = None) -> None:
    """Raise :class:`PasswordPolicyError` when :func:`check_policy` finds any problem."""
    problems = check_policy(password, email=email, name=name)
    if problems:
        raise PasswordPolicyError(problems)
