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
from typing import Any, Callable, Iterable, Iterator

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
    role: str | None = None  # "leader" or "replica" (None from servers that predate it)
    leader_url: str | None = None  # on a replica: the leader it knows of


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


@dataclass(frozen=True)
class _Endpoint:
    url: str  # scheme://host:port[/prefix], no trailing slash
    scheme: str
    host: str
    port: int
    prefix: str


def _endpoint(url: str) -> _Endpoint:
    u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    if u.scheme not in ("http", "https"):
        raise ValueError(f"url {url!r}: scheme must be http or https")
    if not u.hostname:
        raise ValueError(f"url {url!r}: no host")
    port = u.port or (443 if u.scheme == "https" else 80)
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    prefix = u.path.rstrip("/")
    return _Endpoint(f"{u.scheme}://{host}:{port}{prefix}", u.scheme, u.hostname, port, prefix)


def split_urls(urls: str | Iterable[str]) -> list[str]:
    """``"http://a:8080,http://b:8080"`` or a list -> the list of URLs."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    return [u.strip() for u in items if u and u.strip()]


_REDIRECTS_MAX = 5


class Client:
    """Client of a WeaselDB server, e.g. ``Client("http://127.0.0.1:8080")``.

    ``url`` may name several endpoints, a leader and its replicas
    (``"http://a:8080,http://b:8080"`` or a list): requests go to the
    current one and move to the next on a connection error; a 307 from a
    replica is followed to its Location with the same method, body and
    token, and that leader is used until a connection to it fails.

    ``timeout`` bounds each request attempt (seconds); ``max_attempts``
    bounds retries of transient failures; backoff between attempts is
    exponential with full jitter between ``backoff_min`` and ``backoff_max``.
    ``token`` is sent as ``Authorization: Bearer <token>`` on every request;
    None (the default) reads ``$WEASELDB_AUTH_TOKEN``, "" sends none.
    ``outcome_wait`` bounds how long a commit whose answer was lost keeps
    asking /v1/status while no server answers (seconds; longer than a
    leader takeover).
    """

    def __init__(self, url: str | Iterable[str], timeout: float = 10.0, max_attempts: int = 5,
                 backoff_min: float = 0.05, backoff_max: float = 2.0, token: str | None = None,
                 outcome_wait: float = 15.0) -> None:
        urls = split_urls(url)
        if not urls:
            raise ValueError("url: no server URL given")
        self._endpoints = [_endpoint(u) for u in urls]
        self.url = ",".join(e.url for e in self._endpoints)
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_min, self.backoff_max = backoff_min, max(backoff_min, backoff_max)
        self.outcome_wait = outcome_wait
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cur = 0  # guarded by _lock
        self._leader: _Endpoint | None = None  # guarded by _lock: learned from a 307
        if token is None:
            token = os.environ.get(ENV_AUTH_TOKEN, "")
        self._auth = {"Authorization": "Bearer " + token.strip()} if token.strip() else {}

    # -- plumbing -------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """The endpoint URLs, as given."""
        return [e.url for e in self._endpoints]

    def _target(self) -> _Endpoint:
        with self._lock:
            return self._leader or self._endpoints[self._cur % len(self._endpoints)]

    def _failed(self, ep: _Endpoint) -> None:
        """A connection to ep failed: forget it as leader, or move to the
        next endpoint (unless another thread already did)."""
        with self._lock:
            if self._leader is not None:
                if self._leader == ep:
                    self._leader = None
                return
            if self._endpoints[self._cur % len(self._endpoints)] == ep:
                self._cur = (self._cur + 1) % len(self._endpoints)

    def _new_conn(self, ep: _Endpoint, timeout: float | None) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if ep.scheme == "https" else http.client.HTTPConnection
        return cls(ep.host, ep.port, timeout=timeout)

    def _conns(self) -> dict[str, http.client.HTTPConnection]:
        c = getattr(self._local, "conns", None)
        if c is None:
            c = self._local.conns = {}
        return c

    def _drop_conn(self, ep: _Endpoint) -> None:
        c = self._conns().pop(ep.url, None)
        if c is not None:
            c.close()

    def close(self) -> None:
        """Close this thread's connections (others close when their threads end)."""
        for c in self._conns().values():
            c.close()
        self._conns().clear()

    def __del__(self) -> None:
        try:
            self.close()  # this thread's connections; the others close with their threads
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def backoff(self, attempt: int, floor: float = 0.0) -> float:
        """Seconds to wait before attempt ``attempt`` (≥ 1): uniform in [d/2, d]."""
        d = min(self.backoff_max, self.backoff_min * (2 ** min(attempt - 1, 30)))
        d = max(d, floor)
        return d / 2 + random.random() * d / 2

    def _connect(self, conn: http.client.HTTPConnection, ep: _Endpoint) -> None:
        """Open conn's socket now, so that a failure to connect (the request
        never left) is told apart from a failure after sending."""
        if conn.sock is not None:
            return
        try:
            conn.connect()
        except _TRANSIENT as e:
            handshake = ep.scheme == "https" and conn.sock is not None  # TCP up, TLS failed
            conn.close()
            if handshake:
                raise WeaselDBConnectionError(
                    f"{ep.url}: TLS handshake failed ({e.__class__.__name__}: {e}); does the server speak "
                    f"HTTPS? (use http:// for a plain server)", sent=False, retryable=False) from None
            raise WeaselDBConnectionError(f"{ep.url}: cannot connect: {e.__class__.__name__}: {e}",
                                          sent=False) from None

    def _exchange(self, conn: http.client.HTTPConnection, ep: _Endpoint, method: str, path: str,
                  body: bytes | None, headers: dict[str, str]) -> http.client.HTTPResponse:
        """Send one request on conn (connected first) and return the response
        with its body unread; transport errors become WeaselDBConnectionError
        naming the URL, and move the client off ep."""
        try:
            self._connect(conn, ep)
            conn.request(method, ep.prefix + path, body=body, headers=headers)
            return conn.getresponse()
        except WeaselDBConnectionError as e:
            if e.retryable:
                self._failed(ep)
            raise
        except _TRANSIENT as e:
            conn.close()
            self._failed(ep)
            raise WeaselDBConnectionError(f"{method} {ep.url}{path}: {e.__class__.__name__}: {e}") from None

    def _redirect(self, ep: _Endpoint, status: int, hdrs: dict[str, str]) -> tuple[_Endpoint, str] | None:
        """The endpoint and path a 307/308 answer sends us to, remembered as
        the leader; None when it is not a usable redirect."""
        loc = hdrs.get("location")
        if status not in (307, 308) or not loc:
            return None
        u = urllib.parse.urlsplit(urllib.parse.urljoin(ep.url + "/", loc))
        if u.scheme not in ("http", "https") or not u.netloc:
            return None
        leader = _endpoint(f"{u.scheme}://{u.netloc}")
        with self._lock:
            self._leader = leader
        return leader, u.path + ("?" + u.query if u.query else "")

    def raw_request(self, method: str, path: str, body: bytes | None = None,
                    headers: dict[str, str] | None = None,
                    follow_redirects: bool = True) -> tuple[int, dict[str, str], bytes]:
        """Send one request and return (status, headers, body); 307s are
        followed unless ``follow_redirects`` is False, nothing is retried, no
        error mapping. For tests and tools."""
        hdrs = {**self._auth, **(headers or {})}
        with self._lock:
            learned = self._leader is not None
        ep = self._target()
        for _ in range(_REDIRECTS_MAX + 1):
            conns = self._conns()
            conn = conns.get(ep.url)
            if conn is None:
                conn = conns[ep.url] = self._new_conn(ep, self.timeout)
            try:
                resp = self._exchange(conn, ep, method, path, body, hdrs)
                data = resp.read()
            except WeaselDBConnectionError as e:
                self._drop_conn(ep)
                e.redirected = learned
                raise
            except _TRANSIENT as e:
                self._drop_conn(ep)
                self._failed(ep)
                raise WeaselDBConnectionError(f"{method} {ep.url}{path}: {e.__class__.__name__}: {e}") from None
            if resp.will_close:
                self._drop_conn(ep)
            rh = {k.lower(): v for k, v in resp.getheaders()}
            rh["x-weaseldb-url"] = ep.url
            nxt = self._redirect(ep, resp.status, rh) if follow_redirects else None
            if nxt is None:
                return resp.status, rh, data
            ep, path = nxt
            learned = True
        return resp.status, rh, data

    def _once(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One attempt: JSON in, JSON out; non-2xx raises the mapped error."""
        payload = None
        headers = {"Accept": "application/json"}
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        status, hdrs, data = self.raw_request(method, path, payload, headers)
        parsed: Any = None
        if data:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        if status // 100 != 2:
            err = error_from_answer(status, parsed, data)
            err.url = hdrs.get("x-weaseldb-url")
            raise err
        if data and parsed is None:
            raise WeaselDBConnectionError(f"{method} {hdrs.get('x-weaseldb-url')}{path}: answer is not JSON: "
                                          f"{data[:200]!r}")
        return status, parsed

    @staticmethod
    def _transient(e: WeaselDBError) -> bool:
        if isinstance(e, WeaselDBConnectionError):
            return e.retryable
        return isinstance(e, TooManyRequestsError) or (e.status is not None and e.status >= 500)

    def _idempotent(self, method: str, path: str, body: Any = None) -> Any:
        last: WeaselDBError | None = None
        for attempt in range(max(self.max_attempts, len(self._endpoints) + 1)):
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
        return VersionInfo(int(a["version"]), str(a.get("leader_id", "")), a.get("role"), a.get("leader_url"))

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
        # Attempts count commits that reached a server. A refused connection
        # to a leader that a replica named does not count while that has gone
        # on for less than outcome_wait: it is a takeover (the old leader is
        # gone, the replica names it until its lease expires).
        attempts, tries = max(self.max_attempts, len(self._endpoints) + 1), 0
        unreachable_since: float | None = None
        while attempts > 0:
            attempts -= 1
            if tries:
                time.sleep(self.backoff(min(tries, 8)))
            tries += 1
            try:
                _, a = self._once("POST", "/v1/commit", body)
                if not isinstance(a, dict) or a.get("status") != "committed":
                    raise WeaselDBConnectionError(f"commit: unexpected answer {a!r}")
                return CommitResult(str(a.get("request_id", rid)), int(a["version"]), a.get("leader_id"),
                                    bool(a.get("duplicate", False)))
            except TooManyRequestsError as e:
                last = e  # shed before processing: certainly not committed
                continue
            except WeaselDBConnectionError as e:
                if not e.retryable:
                    raise
                last = e
                if not e.sent:  # never left: send again (to the next endpoint) without asking
                    if e.redirected:
                        now = time.monotonic()
                        unreachable_since = unreachable_since or now
                        if now - unreachable_since < self.outcome_wait:
                            attempts += 1
                    continue
            except WeaselDBError as e:
                if not self._transient(e):
                    raise
                last = e
            st = self._resolve(rid, last)
            if st.status == "committed":
                return CommitResult(rid, int(st.version or 0), None, False, True)
        assert last is not None
        if isinstance(last, WeaselDBConnectionError) and not last.sent:
            raise WeaselDBConnectionError(f"commit {rid} not sent: {last}", sent=False)
        raise last

    def _resolve(self, rid: str, cause: WeaselDBError) -> StatusInfo:
        """Ask /v1/status (on whichever server leads now: 307s are followed)
        until committed or not_committed; give up when no server has
        answered for ``outcome_wait`` seconds (and at least twice)."""
        failures = polls = 0
        failing_since: float | None = None
        while True:
            try:
                st = self.status(rid)
            except WeaselDBError as e:
                failures += 1
                if failing_since is None:
                    failing_since = time.monotonic()
                if failures >= 2 and time.monotonic() - failing_since >= self.outcome_wait:
                    raise OutcomeUnknownError(f"commit {rid}: answer lost ({cause}); status failed: {e}", rid) from None
            else:
                if st.status in ("committed", "not_committed"):
                    return st
                if st.status != "in_flight":
                    raise OutcomeUnknownError(f"commit {rid}: unknown status {st.status!r}", rid)
                failures, polls, failing_since = 0, polls + 1, None
                if polls >= 100:
                    raise OutcomeUnknownError(f"commit {rid}: still in flight after {polls} polls", rid)
            time.sleep(self.backoff(min(polls + failures, 6)))

    # -- subscribe ------------------------------------------------------------

    def subscribe(self, after: int | None = None, durable: bool = True, begin: BytesLike | None = None,
                  end: BytesLike | None = None, idle_timeout: float = 45.0,
                  max_reconnects: int | None = None, retry_for: float | None = None,
                  on_retry: Callable[[int, float, str], None] | None = None) -> Iterator[Event]:
        """Generator of :class:`Transaction` and :class:`Checkpoint` events.

        Reconnects with Last-Event-ID after drops (backoff with jitter, at
        least the server's retry hint), to the next endpoint when a server is
        gone, so it goes on across a leader takeover; checks that each
        transaction's prev_version chains (else :class:`GapError`).
        ``after=None`` pins the start with /v1/version. With
        ``durable=False`` it resumes from the last checkpoint after a
        reconnect, yielding :class:`Reset` first if it had yielded
        transactions beyond it. Permanent answers (410 gone, 400) are
        raised. ``max_reconnects`` bounds consecutive failed connections and
        ``retry_for`` the seconds without a connection (None: unbounded);
        ``on_retry(failures, delay, reason)`` is called before each wait.
        """
        position = self.version().version if after is None else int(after)
        delivered = position
        failures = 0
        retry_hint = 0.0
        last_ok = time.monotonic()
        last_err = ""
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
                    raise WeaselDBConnectionError(f"subscribe: {failures} consecutive failed connections "
                                                  f"(last: {last_err})")
                if retry_for is not None and time.monotonic() - last_ok >= retry_for:
                    raise WeaselDBConnectionError(f"subscribe: no stream for {retry_for:g}s (last: {last_err})")
                delay = self.backoff(failures, retry_hint)
                if on_retry is not None:
                    on_retry(failures, delay, last_err)
                time.sleep(delay)
            q["after"] = str(position)
            conns: list[http.client.HTTPConnection] = []
            try:
                resp, ep, err = self._open_stream("/v1/subscribe?" + urllib.parse.urlencode(q), {
                    **self._auth, "Accept": "text/event-stream", "Last-Event-ID": str(position)}, idle_timeout, conns)
                if err is not None:
                    if not self._transient(err):
                        raise err
                    last_err, failures = str(err), failures + 1
                    continue
                assert resp is not None and ep is not None
                if not durable and delivered > position:
                    delivered = position
                    yield Reset(position)
                parser = SSEParser()
                prev = position
                while True:
                    try:
                        chunk = resp.read1(65536)
                    except (_TRANSIENT + (socket.timeout,)) as e:
                        chunk, last_err = b"", f"{ep.url}: stream broke: {e.__class__.__name__}: {e}"
                    else:
                        last_err = f"{ep.url}: stream ended"
                    if not chunk:
                        failures += 1
                        last_ok = time.monotonic()  # connected until now
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
                for conn in conns:
                    conn.close()

    def _open_stream(self, path: str, headers: dict[str, str], timeout: float,
                     conns: list[http.client.HTTPConnection]
                     ) -> tuple[http.client.HTTPResponse | None, _Endpoint | None, WeaselDBError | None]:
        """GET path on a fresh connection (appended to conns), following
        307s: (response, endpoint) on 200, else (None, None, error)."""
        ep = self._target()
        for _ in range(_REDIRECTS_MAX + 1):
            conn = self._new_conn(ep, timeout)
            conns.append(conn)
            try:
                resp = self._exchange(conn, ep, "GET", path, None, headers)
                if resp.status == 200:
                    return resp, ep, None
                data = resp.read()
            except WeaselDBConnectionError as e:
                return None, None, e
            except _TRANSIENT as e:
                return None, None, WeaselDBConnectionError(f"GET {ep.url}{path}: {e.__class__.__name__}: {e}")
            nxt = self._redirect(ep, resp.status, {k.lower(): v for k, v in resp.getheaders()})
            if nxt is None:
                try:
                    parsed = json.loads(data)
                except ValueError:
                    parsed = None
                err = error_from_answer(resp.status, parsed, data)
                err.url = ep.url
                return None, None, err
            ep, path = nxt
        return None, None, WeaselDBConnectionError(f"GET {path}: more than {_REDIRECTS_MAX} redirects")
