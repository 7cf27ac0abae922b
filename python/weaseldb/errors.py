"""Exceptions raised by the WeaselDB client, one class per documented error.

Every server answer that is not 2xx becomes a :class:`WeaselDBError`
subclass carrying ``.status`` (HTTP status), ``.code`` (the body's
``error``), ``.message`` and ``.body`` (the parsed JSON body, or ``{}``).
Transport failures are :class:`WeaselDBConnectionError` (``status`` None).
"""

from __future__ import annotations

from typing import Any


class WeaselDBError(Exception):
    """Base class of every error this package raises."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.body: dict[str, Any] = body or {}
        self.url: str | None = None  # the server that answered, when known

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        head = f"{self.status} {self.code}"
        reason = self.body.get("reason")
        if reason and reason != self.code:
            head += f" ({reason})"
        return f"{head}: {self.message}" if self.message else head


class WeaselDBConnectionError(WeaselDBError):
    """The server could not be reached or the connection broke.

    ``sent`` is False when the request provably never left (the connection
    was refused or could not be made): a commit is then not "answer lost".
    ``retryable`` is False for failures that a retry cannot fix (a TLS
    handshake with a server that speaks plain HTTP). ``redirected`` is True
    when the server was a leader that a replica's 307 named.
    """

    def __init__(self, message: str, sent: bool = True, retryable: bool = True) -> None:
        super().__init__(message)
        self.sent = sent
        self.retryable = retryable
        self.redirected = False  # the server was a leader that a 307 named


class NotCommittedError(WeaselDBError):
    """A 409 commit answer: the transaction was not committed.

    ``.version`` is the latest committed version (a good next read version)
    and ``.leader_id`` the current leader.
    """

    @property
    def version(self) -> int | None:
        return self.body.get("version")

    @property
    def leader_id(self) -> str | None:
        return self.body.get("leader_id")

    @property
    def reason(self) -> str | None:
        return self.body.get("reason")


class ConflictError(NotCommittedError):
    """A precondition failed; ``.conflicts`` lists the failing indexes.

    Also raised for a retention policy version below the oldest retained
    version (409 with no reason).
    """

    @property
    def conflicts(self) -> list[int]:
        return list(self.body.get("conflicts") or [])


class TooOldError(NotCommittedError):
    """A precondition version is older than the server's conflict window."""


class LeaderChangedError(NotCommittedError):
    """The commit named a leader_id that is not the current leader's."""


class BadRequestError(WeaselDBError):
    """400: malformed request (the message names the field)."""


class FutureVersionError(BadRequestError):
    """400 with reason future_version: a version no server has assigned."""


class UnauthorizedError(WeaselDBError):
    """401: the server wants a bearer token (``token=`` or $WEASELDB_AUTH_TOKEN)."""


class NotFoundError(WeaselDBError):
    """404."""


class MethodNotAllowedError(WeaselDBError):
    """405."""


class GoneError(WeaselDBError):
    """410: the position asked for is older than what the server keeps."""


class PayloadTooLargeError(WeaselDBError):
    """413: a key, value, body or count over the server's limits."""


class UnsupportedMediaTypeError(WeaselDBError):
    """415: a JSON body sent with another Content-Type."""


class TooManyRequestsError(WeaselDBError):
    """429: the server shed the request; it was not processed."""


class ServerError(WeaselDBError):
    """500 or another 5xx."""


class UnavailableError(ServerError):
    """503: the server cannot serve or persist right now."""


class OutcomeUnknownError(WeaselDBError):
    """A commit's answer was lost and /v1/status could not resolve it.

    The commit may or may not have happened; ask ``status(.request_id)``.
    """

    def __init__(self, message: str, request_id: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class GapError(WeaselDBError):
    """A subscription saw a transaction whose prev_version does not chain."""

    def __init__(self, expected: int, got: int, version: int) -> None:
        super().__init__(f"gap in subscription: transaction {version} has prev_version {got}, expected {expected}")
        self.expected, self.got, self.version = expected, got, version


_BY_STATUS: dict[int, type[WeaselDBError]] = {
    400: BadRequestError, 401: UnauthorizedError, 404: NotFoundError, 405: MethodNotAllowedError, 409: ConflictError,
    410: GoneError, 413: PayloadTooLargeError, 415: UnsupportedMediaTypeError,
    429: TooManyRequestsError, 503: UnavailableError,
}

_BY_REASON: dict[str, type[WeaselDBError]] = {
    "conflict": ConflictError, "too_old": TooOldError, "leader_changed": LeaderChangedError,
    "future_version": FutureVersionError,
}


def error_from_answer(status: int, body: dict[str, Any] | None, raw: bytes = b"") -> WeaselDBError:
    """Build the exception for a non-2xx answer (body: parsed JSON or None)."""
    if not isinstance(body, dict):
        body = {}
    cls = _BY_REASON.get(str(body.get("reason") or "")) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else WeaselDBError
    message = body.get("message")
    if not isinstance(message, str):
        message = raw.decode("utf-8", "replace").strip()[:500]
    code = body.get("error") if isinstance(body.get("error"), str) else None
    return cls(message, status=status, code=code or f"http_{status}", body=body)
