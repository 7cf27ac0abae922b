"""WeaselDB client: version, commit with safe retries, status, subscribe.

A :class:`Client` keeps one keep-alive HTTP connection per thread, so it may
be shared between threads.

Safe retries: every commit carries a ``request_id`` (a random 32-hex one
when the caller gives none). When a commit's answer is lost (connection
error, timeout, 5xx) the client asks ``/v1/status`` — polling while the
server says ``in_flight`` — before sending it again, and sends it again only
when the server says ``not_committed``; a commit found committed is returned
with ``resolved=True``. When the outcome cannot be learned,
:class:`~weaseldb.errors.OutcomeUnknownError` is raised.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import secrets
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from . import encoding
from .encoding import BytesLike
from .errors import (GapError, OutcomeUnknownError, TooManyRequestsError, WeaselDBConnectionError,
                     WeaselDBError, error_from_answer, NotFoundError)
from .sse import SSEParser

_TRANSIENT = (OSError, http.client.HTTPException)

ENV_AUTH_TOKEN = "WEASELDB_AUTH_TOKEN"


@dataclass(frozen=True)
class VersionInfo:
    """Answer of GET /v1/version."""

    version: int
    leader_id: str


@dataclass(frozen=True)
class CommitResult:
    """A commit that happened. ``duplicate``: an earlier commit with this
    request_id answered; ``resolved``: learned from /v1/status after a lost
    answer (then ``leader_id`` is None)."""

    request_id: str
    version: int
    leader_id: str | None = None
    duplicate: bool = False
    resolved: bool = False


@dataclass(frozen=True)
class StatusInfo:
    """Answer of GET /v1/status: status is committed, in_flight or not_committed."""

    request_id: str
    status: str
    version: int | None = None


@dataclass(frozen=True)
class Operation:
    """A decoded operation of a streamed transaction. For range_delete,
    ``key`` is the begin and ``end`` the end of the range."""

    type: str
    key: bytes
    value: bytes | None = None
    end: bytes | None = None


@dataclass(frozen=True)
class Transaction:
    """A transaction event."""

    version: int
    prev_version: int
    request_id: str | None
    timestamp: str | None
    leader_id: str | None
    operations: list[Operation] = field(default_factory=list)


@dataclass(frozen=True)
class Checkpoint:
    """Everything up to committed_version is durable and has been sent."""

    committed_version: int
    leader_id: str | None = None


@dataclass(frozen=True)
class Reset:
    """durable=False only: discard transactions after ``version``; the stream
    resumes from there (sent after a reconnect, possibly to a new leader)."""

    version: int


Event = Transaction | Checkpoint | Reset


def new_request_id() -> str:
    """A random 32-hex request id."""
    return secrets.token_hex(16)


def decode_operation(o: dict[str, Any]) -> Operation:
    """Decode a wire operation (base64 fields) into an :class:`Operation`."""
    t = o.get("type")
    if t == "range_delete":
        return Operation(t, encoding.unb64(o["begin"]), end=encoding.unb64(o["end"]))
    if t == "write":
        return Operation(t, encoding.unb64(o["key"]), value=encoding.unb64(o.get("value", "")))
    return Operation(str(t), encoding.unb64(o["key"]))


class Client:
    """Client of one WeaselDB server, e.g. ``Client("http://127.0.0.1:8080")``.

    ``timeout`` bounds each request attempt (seconds); ``max_attempts``
    bounds retries of transient failures; backoff between attempts is
    exponential with full jitter between ``backoff_min`` and ``backoff_max``.
    ``token`` is sent as ``Authorization: Bearer <token>`` on every request;
    None (the default) reads ``$WEASELDB_AUTH_TOKEN``, "" sends none.
    """

    def __init__(self, url: str, timeout: float = 10.0, max_attempts: int = 5,
                 backoff_min: float = 0.05, backoff_max: float = 2.0, token: str | None = None) -> None:
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"url {url!r}: scheme must be http or https")
        if not u.hostname:
            raise ValueError(f"url {url!r}: no host")
        self.url = url
        self._scheme, self._host = u.scheme, u.hostname
        self._port = u.port or (443 if u.scheme == "https" else 80)
        self._prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_min, self.backoff_max = backoff_min, max(backoff_min, backoff_max)
        self._local = threading.local()
        if token is None:
            token = os.environ.get(ENV_AUTH_TOKEN, "")
        self._auth = {"Authorization": "Bearer " + token.strip()} if token.strip() else {}

    # -- plumbing -------------------------------------------------------------

    def _new_conn(self, timeout: float | None) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self._new_conn(self.timeout)
        return c

    def _drop_conn(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        self._drop_conn()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def backoff(self, attempt: int, floor: float = 0.0) -> float:
        """Seconds to wait before attempt ``attempt`` (≥ 1): uniform in [d/2, d]."""
        d = min(self.backoff_max, self.backoff_min * (2 ** min(attempt - 1, 30)))
        d = max(d, floor)
        return d / 2 + random.random() * d / 2

    def raw_request(self, method: str, path: str, body: bytes | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send one request as is and return (status, headers, body); no
        retries, no error mapping. For tests and tools."""
        hdrs = {**self._auth, **(headers or {})}
        conn = self._conn()
        try:
            conn.request(method, self._prefix + path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        except _TRANSIENT as e:
            self._drop_conn()
            raise WeaselDBConnectionError(f"{method} {path}: {e.__class__.__name__}: {e}") from None
        if resp.will_close:
            self._drop_conn()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def _once(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One attempt: JSON in, JSON out; non-2xx raises the mapped error."""
        payload = None
        headers = {"Accept": "application/json"}
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        status, _, data = self.raw_request(method, path, payload, headers)
        parsed: Any = None
        if data:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        if status // 100 != 2:
            raise error_from_answer(status, parsed, data)
        if data and parsed is None:
            raise WeaselDBConnectionError(f"{method} {path}: answer is not JSON: {data[:200]!r}")
        return status, parsed

    @staticmethod
    def _transient(e: WeaselDBError) -> bool:
        return isinstance(e, WeaselDBConnectionError) or isinstance(e, TooManyRequestsError) or (
            e.status is not None and e.status >= 500)

    def _idempotent(self, method: str, path: str, body: Any = None) -> Any:
        last: WeaselDBError | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                time.sleep(self.backoff(attempt))
            try:
                return self._once(method, path, body)[1]
            except NotFoundError:
                if method == "DELETE" and attempt and last is not None:
                    return None  # the lost first attempt deleted it
                raise
            except WeaselDBError as e:
                if not self._transient(e):
                    raise
                last = e
        assert last is not None
        raise last

    # -- API ------------------------------------------------------------------

    def version(self) -> VersionInfo:
        """Latest committed version and current leader id."""
        a = self._idempotent("GET", "/v1/version")
        return VersionInfo(int(a["version"]), str(a.get("leader_id", "")))

    def ready(self) -> bool:
        """True when GET /readyz answers 2xx."""
        try:
            status, _, _ = self.raw_request("GET", "/readyz")
        except WeaselDBConnectionError:
            return False
        return status // 100 == 2

    def status(self, request_id: str, min_version: int | None = None) -> StatusInfo:
        """Did the commit with request_id commit (after min_version)?"""
        q = {"request_id": request_id}
        if min_version is not None:
            q["min_version"] = str(int(min_version))
        a = self._idempotent("GET", "/v1/status?" + urllib.parse.urlencode(q))
        v = a.get("version")
        return StatusInfo(str(a.get("request_id", request_id)), str(a["status"]), int(v) if v is not None else None)

    def commit(self, preconditions: Iterable[dict[str, Any]] = (), operations: Iterable[dict[str, Any]] = (),
               read_version: int | None = None, request_id: str | None = None,
               leader_id: str | None = None) -> CommitResult:
        """Commit a transaction; see the module doc for retries.

        preconditions/operations are wire objects, e.g. built with
        :func:`weaseldb.point_read` and :func:`weaseldb.write`. Raises
        :class:`ConflictError` (``.conflicts``), :class:`TooOldError`,
        :class:`LeaderChangedError`, :class:`BadRequestError`, ... when not
        committed, :class:`OutcomeUnknownError` when the outcome is unknown.
        """
        body: dict[str, Any] = {"request_id": request_id or new_request_id()}
        if leader_id is not None:
            body["leader_id"] = leader_id
        if read_version is not None:
            body["read_version"] = int(read_version)
        pre, ops = list(preconditions), list(operations)
        if pre:
            body["preconditions"] = pre
        if ops:
            body["operations"] = ops
        return self.commit_body(body)

    def commit_body(self, body: dict[str, Any]) -> CommitResult:
        """Commit a raw API body (a request_id is added when missing)."""
        body = dict(body)
        rid = body.setdefault("request_id", new_request_id())
        last: WeaselDBError | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                time.sleep(self.backoff(attempt))
            try:
                _, a = self._once("POST", "/v1/commit", body)
                if not isinstance(a, dict) or a.get("status") != "committed":
                    raise WeaselDBConnectionError(f"commit: unexpected answer {a!r}")
                return CommitResult(str(a.get("request_id", rid)), int(a["version"]), a.get("leader_id"),
                                    bool(a.get("duplicate", False)))
            except TooManyRequestsError as e:
                last = e  # shed before processing: certainly not committed
                continue
            except WeaselDBError as e:
                if not self._transient(e):
                    raise
                last = e
            st = self._resolve(rid, last)
            if st.status == "committed":
                return CommitResult(rid, int(st.version or 0), None, False, True)
        assert last is not None
        raise last

    def _resolve(self, rid: str, cause: WeaselDBError) -> StatusInfo:
        """Ask /v1/status until committed or not_committed."""
        failures = polls = 0
        while True:
            try:
                st = self.status(rid)
            except WeaselDBError as e:
                failures += 1
                if failures >= 2:
                    raise OutcomeUnknownError(f"commit {rid}: answer lost ({cause}); status failed: {e}", rid) from None
            else:
                if st.status in ("committed", "not_committed"):
                    return st
                if st.status != "in_flight":
                    raise OutcomeUnknownError(f"commit {rid}: unknown status {st.status!r}", rid)
                failures, polls = 0, polls + 1
                if polls >= 100:
                    raise OutcomeUnknownError(f"commit {rid}: still in flight after {polls} polls", rid)
            time.sleep(self.backoff(min(polls + failures, 6)))

    # -- subscribe ------------------------------------------------------------

    def subscribe(self, after: int | None = None, durable: bool = True, begin: BytesLike | None = None,
                  end: BytesLike | None = None, idle_timeout: float = 45.0,
                  max_reconnects: int | None = None) -> Iterator[Event]:
        """Generator of :class:`Transaction` and :class:`Checkpoint` events.

        Reconnects with Last-Event-ID after drops (backoff with jitter, at
        least the server's retry hint), checks that each transaction's
        prev_version chains (else :class:`GapError`). ``after=None`` pins the
        start with /v1/version. With ``durable=False`` it resumes from the
        last checkpoint after a reconnect, yielding :class:`Reset` first if
        it had yielded transactions beyond it. Permanent answers (410 gone,
        400) are raised. ``max_reconnects`` bounds consecutive failed
        connections (None: unbounded).
        """
        position = self.version().version if after is None else int(after)
        delivered = position
        failures = 0
        retry_hint = 0.0
        q: dict[str, str] = {}
        if not durable:
            q["durable"] = "false"
        if begin is not None:
            q["begin"] = encoding.b64(begin)
        if end is not None:
            q["end"] = encoding.b64(end)
        while True:
            if failures:
                if max_reconnects is not None and failures > max_reconnects:
                    raise WeaselDBConnectionError(f"subscribe: {failures} consecutive failed connections")
                time.sleep(self.backoff(failures, retry_hint))
            q["after"] = str(position)
            conn = self._new_conn(idle_timeout)
            try:
                try:
                    conn.request("GET", self._prefix + "/v1/subscribe?" + urllib.parse.urlencode(q),
                                 headers={**self._auth, "Accept": "text/event-stream",
                                          "Last-Event-ID": str(position)})
                    resp = conn.getresponse()
                except _TRANSIENT:
                    failures += 1
                    continue
                if resp.status != 200:
                    data = resp.read()
                    try:
                        parsed = json.loads(data)
                    except ValueError:
                        parsed = None
                    err = error_from_answer(resp.status, parsed, data)
                    if not self._transient(err):
                        raise err
                    failures += 1
                    continue
                if not durable and delivered > position:
                    delivered = position
                    yield Reset(position)
                parser = SSEParser()
                prev = position
                while True:
                    try:
                        chunk = resp.read1(65536)
                    except (_TRANSIENT + (socket.timeout,)):
                        chunk = b""
                    if not chunk:
                        failures += 1
                        break
                    for ev in parser.feed(chunk):
                        if ev.event == "transaction":
                            t = json.loads(ev.data)
                            v, pv = int(t["version"]), int(t["prev_version"])
                            if pv != prev or v <= pv:
                                raise GapError(prev, pv, v)
                            prev = v
                            failures = 0
                            if durable:
                                position = v
                            delivered = v
                            yield Transaction(v, pv, t.get("request_id"), t.get("timestamp"), t.get("leader_id"),
                                              [decode_operation(o) for o in t.get("operations") or []])
                        elif ev.event == "checkpoint":
                            c = json.loads(ev.data)
                            cv = int(c["committed_version"])
                            failures = 0
                            if cv > position:
                                position = cv
                            yield Checkpoint(cv, c.get("leader_id"))
                    if parser.retry_ms is not None:
                        retry_hint = parser.retry_ms / 1000.0
            finally:
                conn.close()
