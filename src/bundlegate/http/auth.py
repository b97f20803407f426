"""API keys at the HTTP edge: which key a request presents, who it belongs to, which models it may see.

Framework-light on purpose: everything works on the raw ASGI ``scope["headers"]`` list, so the
middleware, the endpoints and the tests all call the same three functions::

    auth = ApiKeyAuth(KeyStore(path), RateLimiter(settings.rate_limit_rps))  # or ApiKeyAuth(None): insecure
    record = auth.authenticate(scope["headers"])   # Unauthenticated (401) / RateLimited (429)
    check_model_access(record, name)               # NotFound (404), the same error as an unknown model
    require_admin(record)                          # NotFound (404) for a non-admin key

Keys are read from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, never from the query string
(URLs end up in proxy logs and browser histories). A key that is not allowed to see a model gets exactly
the 404 an unknown model gets, so a key cannot be used to discover which models exist.
"""

from __future__ import annotations

from collections.abc import Iterable

from bundlegate.errors import NotFound, Unauthenticated
from bundlegate.keys import KeyRecord, KeyStore
from bundlegate.ratelimit import RateLimiter

Headers = Iterable[tuple[bytes, bytes]]

# The record every request gets when the gateway runs with --insecure-no-auth (loopback only).
INSECURE_RECORD = KeyRecord(id="insecure-no-auth", admin=True, models=("*",))

NOT_FOUND_MESSAGE = "model not found"


def presented_key(headers: Headers) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>`` first, else ``X-API-Key``; None when
    neither is there. ASGI header names are lower case; the scheme is matched case-insensitively.

    Either header given twice is ``Unauthenticated``: proxies and servers disagree on which of two
    copies counts, so a request that carries two is ambiguous, whichever copy would win here."""
    authorization: bytes | None = None
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            if authorization is not None:
                raise Unauthenticated("the request has more than one Authorization header")
            authorization = value
        elif name == b"x-api-key":
            if api_key is not None:
                raise Unauthenticated("the request has more than one X-API-Key header")
            api_key = value
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer" and credentials.strip():
            return credentials.strip().decode("latin-1")
    if api_key is not None and api_key.strip():
        return api_key.strip().decode("latin-1")
    return None


class ApiKeyAuth:
    """Authenticates requests against a ``KeyStore`` and applies the per-key rate limit.

    With ``store=None`` (``--insecure-no-auth``) every request is ``INSECURE_RECORD``: all models,
    admin. The rate limiter, if any, counts per key id (the insecure record shares one bucket).
    """

    def __init__(self, store: KeyStore | None, rate_limiter: RateLimiter | None = None) -> None:
        self.store = store
        self._limiter = rate_limiter if rate_limiter is not None and rate_limiter.enabled else None

    @property
    def insecure(self) -> bool:
        return self.store is None

    def authenticate(self, headers: Headers, *, rate_limited: bool = True) -> KeyRecord:
        """The ``KeyRecord`` of the request's key; raises ``Unauthenticated`` (missing, unknown or revoked
        key) or, when ``rate_limited``, ``RateLimited``. Never puts the key in an error message."""
        record = INSECURE_RECORD if self.store is None else self.store.authenticate(presented_key(headers))
        if rate_limited and self._limiter is not None:
            self._limiter.check(record.id)
        return record


def check_model_access(record: KeyRecord, model_name: str) -> None:
    """Raise ``NotFound`` unless ``record`` may see ``model_name``; the error is the one an unknown model
    gets (code ``not_found``, message ``NOT_FOUND_MESSAGE``)."""
    if not record.allows(model_name):
        raise NotFound(NOT_FOUND_MESSAGE)


def require_admin(record: KeyRecord) -> None:
    """Raise ``NotFound`` unless ``record`` is an admin key (the repository endpoints do not exist for
    other keys)."""
    if not record.admin:
        raise NotFound("not found")
