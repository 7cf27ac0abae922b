"""An in-memory fake of the WeaselDB API for the library's unit tests.

Implements just enough of API.md — commits with preconditions and
request_id deduplication, status, subscribe (SSE), retention, /metrics —
over a real socket (http.server in a thread), with fault injection.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Commit latency: 100 observations from before the test (p50 about 5.5 ms),
# then one of 50 ms per commit, so a quantile over an interval with commits
# (55 ms) differs from one since start.
METRICS = """# HELP weaseldb_commits_total Commits by outcome.
# TYPE weaseldb_commits_total counter
weaseldb_commits_total{outcome="committed"} %(committed)d
weaseldb_commits_total{outcome="conflict"} %(conflicts)d
# HELP weaseldb_commit_latency_seconds Commit latency.
# TYPE weaseldb_commit_latency_seconds histogram
weaseldb_commit_latency_seconds_bucket{outcome="committed",le="0.001"} 10
weaseldb_commit_latency_seconds_bucket{outcome="committed",le="0.01"} 90
weaseldb_commit_latency_seconds_bucket{outcome="committed",le="0.1"} %(observed)d
weaseldb_commit_latency_seconds_bucket{outcome="committed",le="+Inf"} %(observed)d
weaseldb_commit_latency_seconds_sum{outcome="committed"} %(latency_sum)g
weaseldb_commit_latency_seconds_count{outcome="committed"} %(observed)d
# TYPE weaseldb_persist_latency_seconds histogram
weaseldb_persist_latency_seconds_bucket{le="0.002"} 0
weaseldb_persist_latency_seconds_bucket{le="0.004"} %(committed)d
weaseldb_persist_latency_seconds_bucket{le="+Inf"} %(committed)d
weaseldb_persist_latency_seconds_sum %(persist_sum)g
weaseldb_persist_latency_seconds_count %(committed)d
# TYPE weaseldb_persist_batch_transactions histogram
weaseldb_persist_batch_transactions_bucket{le="1"} %(committed)d
weaseldb_persist_batch_transactions_bucket{le="+Inf"} %(committed)d
weaseldb_persist_batch_transactions_sum %(committed)d
weaseldb_persist_batch_transactions_count %(committed)d
# HELP weaseldb_subscribers Open subscriptions.
# TYPE weaseldb_subscribers gauge
weaseldb_subscribers %(subscribers)d
# TYPE weaseldb_subscriber_lag_versions_max gauge
weaseldb_subscriber_lag_versions_max 7
# HELP weaseldb_request_errors_total Errors by code, with "quoted" \\\\ help.
# TYPE weaseldb_request_errors_total counter
weaseldb_request_errors_total{code="bad_request",path="/v1/commit \\"x\\"\\n"} 2
go_gc_duration_seconds{quantile="0.5"} NaN
process_start_time_seconds 1.7e+09
"""



def _unb64(s: Any) -> bytes:
    if not isinstance(s, str):
        raise ValueError("not a string")
    return base64.b64decode(s.encode("ascii"), validate=True)


def _touches(op: dict[str, Any], b: bytes, e: bytes | None) -> bool:
    if op["type"] == "range_delete":
        lo, hi = _unb64(op["begin"]), _unb64(op["end"])
        if e is None:
            return lo <= b < hi
        return lo < e and b < hi
    k = _unb64(op["key"])
    return k == b if e is None else b <= k < e


class FakeWeaselDB:
    """Start with ``FakeWeaselDB()``; ``.url``; ``.close()``."""

    def __init__(self, port: int = 0) -> None:
        self.lock = threading.Condition()
        self.leader = "leader-1"
        self.txns: list[dict[str, Any]] = []  # txns[i]["version"] == i + 1
        self.requests: dict[str, int] = {}
        self.policies: dict[str, int] = {}
        self.oldest = 0
        self.conflicts = 0
        self.subscribers = 0
        # fault injection
        self.drop_commit_answers = 0
        self.refuse_503 = 0
        self.in_flight_polls = 0
        self.stream_drop_after = 0
        self.gap_at = 0
        self.split_writes = False
        self.repeat_checkpoints = False  # an idle stream repeats its checkpoint, as the real server does
        # observations
        self.commit_calls = self.status_calls = self.subscribe_calls = 0
        self.last_event_ids: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

            def do_PUT(self) -> None:
                fake.handle(self, "PUT")

            def do_DELETE(self) -> None:
                fake.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        with self.lock:
            self.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # -- helpers --------------------------------------------------------------

    @staticmethod
    def reply(h: BaseHTTPRequestHandler, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        h.send_response(status)
        if body is not None:
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def err(self, h: BaseHTTPRequestHandler, status: int, code: str, msg: str, **extra: Any) -> None:
        self.reply(h, status, {"error": code, "message": msg, **extra})

    @staticmethod
    def drop(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        h.connection.shutdown(2)

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        u = urllib.parse.urlsplit(h.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(u.query).items()}
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else b""
        path = u.path
        if path == "/v1/version" and method == "GET":
            with self.lock:
                self.reply(h, 200, {"version": len(self.txns), "leader_id": self.leader})
        elif path == "/v1/commit" and method == "POST":
            self.commit(h, body)
        elif path == "/v1/status" and method == "GET":
            self.status(h, q)
        elif path == "/v1/subscribe" and method == "GET":
            self.subscribe(h, q)
        elif path.startswith("/v1/retention/"):
            self.retention(h, method, urllib.parse.unquote(path[len("/v1/retention/"):]), body)
        elif path == "/metrics" and method == "GET":
            with self.lock:
                n = len(self.txns)
                text = METRICS % {"committed": n, "conflicts": self.conflicts, "subscribers": self.subscribers,
                                  "observed": 100 + n, "latency_sum": 0.5 + 0.05 * n, "persist_sum": 0.003 * n}
            data = text.encode()
            h.send_response(200)
            h.send_header("Content-Type", "text/plain; version=0.0.4")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        elif path in ("/readyz", "/healthz"):
            self.reply(h, 200, {"status": "ok"})
        else:
            self.err(h, 404, "not_found", f"path {path}")

    def commit(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        if h.headers.get("Content-Type", "application/json").split(";")[0] != "application/json":
            return self.err(h, 415, "unsupported_media_type", "Content-Type")
        try:
            c = json.loads(raw)
            if not isinstance(c, dict):
                raise ValueError("body: not an object")
            unknown = set(c) - {"request_id", "leader_id", "read_version", "preconditions", "operations"}
            if unknown:
                raise ValueError(f"unknown field {sorted(unknown)[0]}")
            for o in c.get("operations", []):
                for f in ("key", "value", "begin", "end"):
                    if f in o:
                        _unb64(o[f])
        except ValueError as e:
            return self.err(h, 400, "bad_request", str(e))
        with self.lock:
            self.commit_calls += 1
            if self.refuse_503:
                self.refuse_503 -= 1
                return self.err(h, 503, "unavailable", "cannot persist")
            status, answer = self.resolve(c)
            drop = False
            if self.drop_commit_answers:
                self.drop_commit_answers -= 1
                drop = True
        if drop:
            return self.drop(h)
        self.reply(h, status, answer)

    def resolve(self, c: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        rid = c.get("request_id") or secrets.token_hex(16)
        if rid in self.requests:
            return 200, {"request_id": rid, "status": "committed", "version": self.requests[rid],
                         "leader_id": self.leader, "duplicate": True}
        last = len(self.txns)

        def nc(reason: str, conflicts: list[int] | None = None) -> tuple[int, dict[str, Any]]:
            a: dict[str, Any] = {"request_id": rid, "status": "not_committed", "reason": reason, "error": "conflict",
                                 "message": reason, "version": last, "leader_id": self.leader}
            if conflicts is not None:
                a["conflicts"] = conflicts
            return 409, a

        if c.get("leader_id") not in (None, self.leader):
            return nc("leader_changed")
        conflicts = []
        for i, p in enumerate(c.get("preconditions", [])):
            v = p.get("version", c.get("read_version"))
            if v is None:
                return 400, {"error": "bad_request", "message": f"preconditions[{i}].version: missing"}
            if v > last:
                return 400, {"error": "bad_request", "reason": "future_version", "message": "future version"}
            b, e = (_unb64(p["begin"]), _unb64(p["end"])) if p["type"] == "range_read" else (_unb64(p["key"]), None)
            if any(_touches(op, b, e) for t in self.txns[v:] for op in t["operations"]):
                conflicts.append(i)
        if conflicts:
            self.conflicts += 1
            return nc("conflict", conflicts)
        v = last + 1
        self.txns.append({"version": v, "request_id": rid, "operations": c.get("operations", [])})
        self.requests[rid] = v
        self.lock.notify_all()
        return 200, {"request_id": rid, "status": "committed", "version": v, "leader_id": self.leader}

    def status(self, h: BaseHTTPRequestHandler, q: dict[str, str]) -> None:
        rid = q.get("request_id", "")
        with self.lock:
            self.status_calls += 1
            if self.in_flight_polls:
                self.in_flight_polls -= 1
                return self.reply(h, 200, {"request_id": rid, "status": "in_flight"})
            v = self.requests.get(rid)
        if v is not None:
            return self.reply(h, 200, {"request_id": rid, "status": "committed", "version": v})
        self.reply(h, 200, {"request_id": rid, "status": "not_committed"})

    def subscribe(self, h: BaseHTTPRequestHandler, q: dict[str, str]) -> None:
        with self.lock:
            self.subscribe_calls += 1
            self.last_event_ids.append(h.headers.get("Last-Event-ID"))
            pos = h.headers.get("Last-Event-ID") or q.get("after")
            after = len(self.txns) if pos is None else int(pos)
            if after > len(self.txns):
                return self.err(h, 400, "bad_request", "after: future version", reason="future_version")
            if after < self.oldest:
                return self.err(h, 410, "gone", "after: below oldest_retained_version")
            drop_after, gap_at, split = self.stream_drop_after, self.gap_at, self.split_writes
            self.subscribers += 1
        h.close_connection = True
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()

        def send(s: str) -> None:
            data = s.encode()
            step = 3 if split else len(data) or 1
            for i in range(0, len(data), step):
                h.wfile.write(data[i:i + step])
                h.wfile.flush()

        prev, sent = after, 0
        try:
            send("retry: 10\n: hello\n\n")
            while not self.closed:
                with self.lock:
                    pending = list(self.txns[after:])
                    if not pending:
                        self.lock.wait(0.5)
                        pending = list(self.txns[after:])
                for t in pending:
                    after = t["version"]
                    if t["version"] == gap_at:
                        prev = t["version"]
                        continue
                    if drop_after and sent == drop_after:
                        send(f"id: {t['version']}\nevent: transaction\ndata: {{\"version\":")  # half an event
                        return
                    ev = {"version": t["version"], "prev_version": prev, "request_id": t["request_id"],
                          "timestamp": "2026-11-25T18:00:00.123Z", "leader_id": self.leader,
                          "operations": t["operations"]}
                    send(f"id: {t['version']}\r\nevent: transaction\r\ndata: {json.dumps(ev)}\r\n\r\n")
                    prev, sent = t["version"], sent + 1
                if pending or self.repeat_checkpoints:
                    send(f"event: checkpoint\ndata: {json.dumps({'committed_version': after, 'leader_id': self.leader})}\n\n")
                else:
                    send(": keep-alive\n\n")
        except OSError:
            return
        finally:
            with self.lock:
                self.subscribers -= 1

    def retention(self, h: BaseHTTPRequestHandler, method: str, pid: str, raw: bytes) -> None:
        with self.lock:
            if pid == "" and method == "GET":
                return self.reply(h, 200, {"policies": [{"policy_id": k, "version": v} for k, v in
                                                        sorted(self.policies.items())],
                                           "oldest_retained_version": self.oldest})
            if method == "GET":
                if pid not in self.policies:
                    return self.err(h, 404, "not_found", f"policy {pid}")
                return self.reply(h, 200, {"policy_id": pid, "version": self.policies[pid]})
            if method == "PUT":
                try:
                    v = json.loads(raw)["version"]
                    if not isinstance(v, int):
                        raise ValueError
                except (ValueError, KeyError, TypeError):
                    return self.err(h, 400, "bad_request", "version: missing or not an integer")
                if v < self.oldest:
                    return self.err(h, 409, "conflict", "version: below oldest_retained_version")
                self.policies[pid] = v
                return self.reply(h, 200, {"policy_id": pid, "version": v})
            if method == "DELETE":
                if pid not in self.policies:
                    return self.err(h, 404, "not_found", f"policy {pid}")
                del self.policies[pid]
                return self.reply(h, 204)
        self.err(h, 405, "method_not_allowed", method)


if __name__ == "__main__":  # a fake to play with: python3 -m tests.fake_server [--listen HOST:PORT ...]
    import sys
    port = 0
    if "--listen" in sys.argv:
        port = int(sys.argv[sys.argv.index("--listen") + 1].rsplit(":", 1)[1])
    f = FakeWeaselDB(port)
    print(f.url, flush=True)
    while True:
        time.sleep(3600)
