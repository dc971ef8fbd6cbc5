"""Twilio webhook signature verification, independent of any web framework.

Twilio signs every webhook with ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL +
sorted form parameters)). The URL is the one *Twilio* requested, which behind a TLS-terminating
proxy is not the one the app sees, so it is rebuilt from the configured public base URL plus the
raw path and query exactly as received (:func:`rebuild_url`). The HMAC itself, the port
variants and the constant-time comparison are delegated to
``twilio.request_validator.RequestValidator`` so that this module, the in-repo fake (which signs
with the same library) and Twilio's published vectors agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Final
from urllib.parse import parse_qs, urlsplit

from twilio.request_validator import RequestValidator

__all__ = [
    "SIGNATURE_HEADER",
    "FormParams",
    "InvalidSignature",
    "form_values",
    "rebuild_url",
    "require_valid_signature",
    "sign",
    "verify",
]

SIGNATURE_HEADER: Final = "X-Twilio-Signature"

# Form parameters as any common container holds them: a plain dict, a dict of lists, a
# Starlette FormData / Django QueryDict (``getlist``) or a multidict / Werkzeug MultiDict
# (``getall``). Twilio may repeat a key; every value takes part in the signature.
# Typed loosely (``object`` values) so a FormData, whose values may be uploads, type-checks;
# non-``str`` values are rejected at run time.
FormParams = Mapping[str, object]


class InvalidSignature(Exception):
    """The request does not carry a valid Twilio signature.

    Deliberately opaque: the caller answers 403 and must not tell the sender which check failed.
    """

    def __init__(self) -> None:
        super().__init__("invalid Twilio request signature")


class _MultiParams:
    """A read-only multi-valued view that ``RequestValidator`` understands via ``getall``.

    Normalising here means a dict of lists, a FormData and a multidict are all signed the same
    way (RequestValidator alone would treat a list value as one unhashable value and crash).
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def getall(self, name: str) -> list[str]:
        return self._values[name]


def form_values(params: FormParams | None) -> dict[str, list[str]]:
    """Every value of every form key, in order, from any supported container.

    Raises ``TypeError`` if a name or value is not ``str`` (an upload in a FormData, say):
    Twilio never sends one, so such a request is not a Twilio webhook.
    """
    collected: dict[str, list[str]] = {}
    if params is None:
        return collected
    getall = getattr(params, "getall", None)
    getlist = getattr(params, "getlist", None)
    for name in params:
        if not isinstance(name, str):
            raise TypeError("form parameter names must be str")
        if name in collected:
            continue  # multidicts iterate a repeated key once per value
        raw: object
        if callable(getall):
            raw = getall(name)
        elif callable(getlist):
            raw = getlist(name)
        else:
            raw = params[name]
        values = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, Sequence) else [raw]
        checked: list[str] = []
        for value in values:
            if not isinstance(value, str):
                raise TypeError("form parameter values must be str")
            checked.append(value)
        collected[name] = checked
    return collected


def rebuild_url(public_base_url: str, raw_path: str, raw_query: str) -> str:
    """Rebuild the URL Twilio requested (and signed).

    ``public_base_url`` is the configured external base (``https://hotline.example.org`` or, when
    a proxy serves the app under a prefix, ``https://example.org/hotline/``); a trailing slash
    is ignored. ``raw_path`` is the request path exactly as the server received it relative to
    that base, still percent-encoded (ASGI ``scope["raw_path"]``), and ``raw_query`` the raw
    query string without the ``?`` (ASGI ``scope["query_string"]`` decoded as latin-1). Neither is
    re-encoded or re-ordered: Twilio signs the bytes it sent, so ``It%27s`` and ``It's`` differ.

    A port in the base URL is kept as configured; the validator itself also tries the URL
    without a port and with the scheme's default port, as Twilio's own helper does.

    Raises ``ValueError`` for a base URL that is not absolute ``http(s)`` or that carries
    credentials, a query or a fragment, and for a path or query that could not have come from a
    request line.
    """
    base = urlsplit(public_base_url)
    if base.scheme not in ("http", "https") or not base.hostname:
        raise ValueError("public_base_url must be an absolute http(s) URL")
    if base.username is not None or base.password is not None:
        # twilio's remove_port() splits the netloc on ":" and would mangle user:pass@host:port;
        # credentials also do not belong in a URL that TwiML callback URLs are built from.
        raise ValueError("public_base_url must not contain credentials")
    if base.query or base.fragment or "?" in public_base_url or "#" in public_base_url:
        raise ValueError("public_base_url must not contain a query or fragment")
    if "?" in raw_path or "#" in raw_path:
        raise ValueError("raw_path must not contain a query or fragment")
    if raw_query.startswith("?") or "#" in raw_query:
        raise ValueError("raw_query is the query string without '?' and without a fragment")

    path = raw_path if raw_path.startswith("/") else "/" + raw_path
    url = public_base_url.rstrip("/") + path
    return f"{url}?{raw_query}" if raw_query else url


def _has_body_hash(url: str) -> bool:
    return "bodySHA256" in parse_qs(urlsplit(url).query, keep_blank_values=True)


def verify(
    url: str,
    params: FormParams | str | None,
    signature: str | None,
    auth_tokens: Sequence[str],
) -> bool:
    """Return ``True`` only if ``signature`` is Twilio's signature of ``url`` + ``params``.

    ``auth_tokens`` lists the current auth token and any previous ones still accepted during a
    rotation; a signature made with any of them is accepted. Empty tokens are ignored (an empty
    HMAC key would let anyone forge a signature), so an empty list always fails closed.

    ``params`` are the POST form fields (repeated keys allowed, see :data:`FormParams`). For a
    JSON webhook pass the raw body as ``str``; Twilio then signs the URL only and puts the
    body's SHA-256 in the ``bodySHA256`` query parameter, which is checked too. A ``str`` body
    without ``bodySHA256`` in the URL, or form fields with it, fail (the twilio helper would
    otherwise skip the body check).

    A missing or empty signature, or malformed params, return ``False``; this never raises for
    bad input from the request.
    """
    if not signature or not isinstance(signature, str):
        return False
    tokens = [token for token in auth_tokens if isinstance(token, str) and token]
    if not tokens:
        return False

    body_hashed = _has_body_hash(url)
    signed_params: _MultiParams | str
    if isinstance(params, str):
        if not body_hashed:
            return False
        signed_params = params
    else:
        if body_hashed:
            return False
        try:
            signed_params = _MultiParams(form_values(params))
        except TypeError:
            return False

    # Check every token (no early exit) so the timing does not reveal which one matched.
    try:
        results = [RequestValidator(token).validate(url, signed_params, signature) for token in tokens]
    except ValueError:
        # urlparse().port raises on a malformed port; such a URL was never signed by Twilio.
        return False
    return any(results)


def require_valid_signature(
    url: str,
    params: FormParams | str | None,
    signature: str | None,
    auth_tokens: Sequence[str],
) -> None:
    """Like :func:`verify` but raise :class:`InvalidSignature` instead of returning ``False``.

    Prefer this in request handling: a ``bool`` result is easy to forget to check.
    """
    if not verify(url, params, signature, auth_tokens):
        raise InvalidSignature()


def sign(url: str, params: FormParams | None, auth_token: str) -> str:
    """Compute the ``X-Twilio-Signature`` Twilio would send for ``url`` + form ``params``.

    For tests and the in-repo fake, so both sign exactly as :func:`verify` checks. ``url`` is
    signed as given (no port added or removed).
    """
    if not auth_token:
        raise ValueError("auth_token must not be empty")
    signature: str = RequestValidator(auth_token).compute_signature(url, _MultiParams(form_values(params)))
    return signature
