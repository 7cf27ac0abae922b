"""Client features end to end against the real ``weaseldb`` binary: the
bearer token (library, Admin, CLI), several endpoints, 307 redirects and
lost answers (see also test_api_e2e for the contract itself).

Skipped when the binary is absent (see test_api_e2e for where it is looked
for).
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import unittest
import urllib.parse
from unittest import mock

import weaseldb
from weaseldb.admin import Admin
from tests.test_api_e2e import BIN, Server

PYDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "python-client-test-token-0001"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("WEASELDB_AUTH_TOKEN", "WEASELDB_URL")}
    full_env.update(PYTHONPATH=PYDIR, **(env or {}))
    p = subprocess.run([sys.executable, "-m", "weaseldb", *args], capture_output=True, text=True, env=full_env,
                       cwd=PYDIR, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


@unittest.skipUnless(os.path.exists(BIN), f"weaseldb binary not found at {BIN}")
class AuthTokenTest(unittest.TestCase):
    """13.6: a server started with a token; every client can send it."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server()
        cls.server.start(env={"WEASELDB_AUTH_TOKEN": TOKEN})

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.close()

    def test_client_token_option_and_environment(self):
        with mock.patch.dict(os.environ, {}, clear=False):
            os.environ.pop("WEASELDB_AUTH_TOKEN", None)
            with self.assertRaises(weaseldb.UnauthorizedError) as cm:
                weaseldb.Client(self.server.url, max_attempts=1).commit(operations=[weaseldb.write("a", "1")])
            self.assertEqual(cm.exception.status, 401)
            with self.assertRaises(weaseldb.UnauthorizedError):
                weaseldb.Client(self.server.url, token="wrong").commit()
            r = weaseldb.Client(self.server.url, token=TOKEN).commit(operations=[weaseldb.write("a", "1")])
            os.environ["WEASELDB_AUTH_TOKEN"] = TOKEN
            c = weaseldb.Client(self.server.url)
            r2 = c.commit(operations=[weaseldb.write("a", "2")])
            self.assertEqual(r2.version, r.version + 1)
            self.assertEqual(c.status(r2.request_id).status, "committed")
            events = c.subscribe(after=r.version - 1)
            seen = [next(events) for _ in range(2)]
            events.close()
            self.assertEqual([e.version for e in seen], [r.version, r2.version])
            # An explicit empty token wins over the environment.
            with self.assertRaises(weaseldb.UnauthorizedError):
                weaseldb.Client(self.server.url, token="", max_attempts=1).commit()

    def test_admin_token(self):
        a = Admin(self.server.url, token=TOKEN)
        self.assertEqual(a.put_policy("tok", 0).version, 0)
        self.assertIn("weaseldb_", a.metrics_text())
        with self.assertRaises(weaseldb.UnauthorizedError):
            Admin(self.server.url, token="wrong").put_policy("tok", 0)

    def test_figures_and_top_from_the_real_metrics(self):
        # 13.8 / 20.4: the real server's metric names are found, and the
        # figures are those of the interval.
        from weaseldb.admin import figures
        a = Admin(self.server.url, token=TOKEN)
        s1 = a.scrape()
        c = weaseldb.Client(self.server.url, token=TOKEN)
        for i in range(5):
            c.commit(operations=[weaseldb.write(f"top/{i}", "v")])
        s2 = a.scrape()
        f = figures(s1, s2)
        self.assertIsNone(s2.error)
        self.assertAlmostEqual(f.commit_rate * f.seconds, 5)
        for name in ("commit_p50", "commit_p99", "persist_p50", "persist_p99", "batch_size", "subscribers", "lag"):
            self.assertIsNotNone(getattr(f, name), name)
        idle = figures(s2, a.scrape())
        self.assertEqual((idle.commit_rate, idle.commit_p50, idle.persist_p99), (0.0, None, None))
        code, out, err = run_cli("--url", self.server.url, "--token", TOKEN, "top", "--interval", "0.1",
                                 "--iterations", "1")
        self.assertEqual(code, 0, err)
        header, row = out.splitlines()[1:3]
        cols = dict(zip(header.split(), row.split()))
        self.assertEqual(cols["ENDPOINT"], self.server.url)
        self.assertNotEqual(cols["VERSION"], "-")

    def test_cli_token_flag_and_environment(self):
        url = self.server.url
        code, _, err = run_cli("--url", url, "commit", "--set", "cli=1")
        self.assertEqual(code, 4, err)
        self.assertIn("401", err)
        code, out, err = run_cli("--url", url, "--token", TOKEN, "commit", "--set", "cli=1")
        self.assertEqual((code, json.loads(out)["status"]), (0, "committed"), err)
        code, out, err = run_cli("--url", url, "commit", "--set", "cli=2", env={"WEASELDB_AUTH_TOKEN": TOKEN})
        self.assertEqual(code, 0, err)
        code, out, err = run_cli("--url", url, "--token", TOKEN, "retention", "set", "cli", "0")
        self.assertEqual(code, 0, err)


def down_url() -> str:
    """A loopback URL nobody listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class Front:
    """A loopback HTTP server in a thread standing in for a replica until
    replicas exist. ``mode``: "redirect" answers everything 307 to the
    leader (as a replica does for commits, status and retention changes);
    "lossy" forwards commits to the leader and closes without answering,
    redirecting the rest; "proxy" forwards everything, streaming (an SSE
    subscription through it dies when the front is closed)."""

    def __init__(self, leader_url: str, mode: str) -> None:
        self.leader = urllib.parse.urlsplit(leader_url)
        self.leader_url = leader_url
        self.mode = mode
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self.open: list[socket.socket] = []
        # "proxy" only: redirect the first N requests to leader_url_override
        # (a replica naming the dead old leader), then serve (take over).
        self.redirect_first = 0
        self.leader_url_override = ""
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                front.open.append(self.connection)

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                front.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                leader = front.leader_url
                if front.redirect_first > 0:
                    front.redirect_first -= 1
                    leader = front.leader_url_override
                elif front.mode == "proxy" or (front.mode == "lossy" and self.path == "/v1/commit"):
                    self._forward(body)
                    return
                data = json.dumps({"error": "not_leader", "message": "replica", "leader_url": leader}).encode()
                self.send_response(307)
                self.send_header("Location", leader + self.path)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes | None) -> None:
                conn = http.client.HTTPConnection(front.leader.hostname, front.leader.port, timeout=60)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=hdrs)
                resp = conn.getresponse()
                if front.mode == "lossy":
                    resp.read()
                    conn.close()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # the answer is lost
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    while True:
                        chunk = resp.read1(65536)
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except OSError:
                    pass
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop accepting and break every open connection (a dead server)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        for conn in self.open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@unittest.skipUnless(os.path.exists(BIN), f"weaseldb binary not found at {BIN}")
class EndpointsTest(unittest.TestCase):
    """14.6: several endpoints, 307s, lost answers and subscriptions across a
    takeover, against the real server behind loopback fronts."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server()
        cls.server.start(env={"WEASELDB_AUTH_TOKEN": TOKEN})

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.close()

    def front(self, mode: str) -> Front:
        f = Front(self.server.url, mode)
        self.addCleanup(f.close)
        return f

    def test_down_then_redirecting_replica(self):
        replica = self.front("redirect")
        c = weaseldb.Client([down_url(), replica.url], token=TOKEN, backoff_min=0.001, backoff_max=0.01)
        r = c.commit(operations=[weaseldb.write("ep/a", "1")])
        self.assertFalse(r.resolved, "a refused connection is not an answer lost")
        self.assertEqual([m for m, _, _ in replica.requests], ["POST"])
        self.assertEqual(replica.requests[0][2].get("authorization"), "Bearer " + TOKEN)
        # The leader is remembered: nothing more through the replica.
        self.assertEqual(c.status(r.request_id).status, "committed")
        Admin(c.url, token=TOKEN)  # a list string is accepted too
        self.assertEqual(len(replica.requests), 1)
        # raw_request can show the 307 itself.
        status, hdrs, data = weaseldb.Client(replica.url, token=TOKEN).raw_request(
            "GET", "/v1/status?request_id=x", follow_redirects=False)
        self.assertEqual((status, json.loads(data)["leader_url"]), (307, self.server.url))
        self.assertEqual(hdrs["location"], self.server.url + "/v1/status?request_id=x")
        # A fresh client on the replica follows 307 for every method, body kept.
        self.assertEqual(weaseldb.Client(replica.url, token=TOKEN).status(r.request_id).version, r.version)
        self.assertEqual(Admin(replica.url, token=TOKEN).put_policy("ep", r.version).version, r.version)
        r2 = weaseldb.Client(replica.url, token=TOKEN).commit(
            read_version=r.version, preconditions=[weaseldb.point_read("ep/a")], operations=[weaseldb.write("ep/a", "2")])
        self.assertFalse(r2.resolved)
        self.assertGreater(r2.version, r.version)

    def test_commit_waits_out_a_takeover(self):
        # The replica names the dead old leader for 12 requests (its lease
        # has not expired), then takes over: the commit keeps trying past
        # max_attempts, bounded by outcome_wait, and commits once.
        dead = down_url()
        replica = self.front("proxy")
        replica.redirect_first, replica.leader_url_override = 12, dead
        c = weaseldb.Client(replica.url, token=TOKEN, max_attempts=3, backoff_min=0.001, backoff_max=0.02)
        r = c.commit(operations=[weaseldb.write("ep/takeover", "1")])
        self.assertFalse(r.resolved)
        self.assertEqual([m for m, p, _ in replica.requests if p == "/v1/commit"].count("POST"), 13)

    def test_lost_answer_resolved_on_leader_not_resent(self):
        lossy = self.front("lossy")
        c = weaseldb.Client(lossy.url, token=TOKEN, backoff_min=0.001, backoff_max=0.01)
        r = c.commit(operations=[weaseldb.write("ep/lost", "1")], request_id="python-lost-answer-0001")
        self.assertTrue(r.resolved)
        self.assertEqual([m for m, p, _ in lossy.requests if p == "/v1/commit"], ["POST"], "resent blindly")
        with weaseldb.Client(self.server.url, token=TOKEN) as direct:
            st = direct.status("python-lost-answer-0001")
        self.assertEqual((st.status, st.version), ("committed", r.version))

    def test_subscription_follows_takeover(self):
        a, b = self.front("proxy"), self.front("proxy")
        w = weaseldb.Client(self.server.url, token=TOKEN)
        start = w.version().version
        events = weaseldb.Client([a.url, b.url], token=TOKEN, backoff_min=0.001, backoff_max=0.05).subscribe(
            after=start)

        def take(n: int) -> list[weaseldb.Transaction]:
            got: list[weaseldb.Transaction] = []
            while len(got) < n:
                ev = next(events)
                if isinstance(ev, weaseldb.Transaction):
                    got.append(ev)
            return got
        first = [w.commit(operations=[weaseldb.write(f"ep/s{i}", "v")]).version for i in range(3)]
        self.assertEqual([t.version for t in take(3)], first)
        a.close()  # the server it followed dies
        second = [w.commit(operations=[weaseldb.write(f"ep/t{i}", "v")]).version for i in range(3)]
        got = take(3)
        events.close()
        self.assertEqual([t.version for t in got], second)
        self.assertEqual(got[0].prev_version, first[-1])
        subs = [h for m, p, h in b.requests if p.startswith("/v1/subscribe")]
        self.assertEqual(subs[-1].get("last-event-id"), str(first[-1]))


if __name__ == "__main__":
    unittest.main()
