"""Out-of-process API suite: the real ``weaseldb`` binary over real TCP.

Skipped when the binary is absent. It is found at $WEASELDB_BIN, else
``../bin/weaseldb`` relative to python/ (built by ``make build``). Each test
class starts the server on a free port with a fresh temporary data
directory: ``weaseldb --listen 127.0.0.1:PORT --data-dir DIR --persist disk``,
waits for /readyz, and talks to it only through the Python client.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import weaseldb
from weaseldb.admin import Admin

PYDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("WEASELDB_BIN") or os.path.join(os.path.dirname(PYDIR), "bin", "weaseldb")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One weaseldb process; restartable on the same port and data dir."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="weaseldb-e2e-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(self.dir, "server.log"), "ab")

    def start(self, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{self.port}", "--data-dir",
                                      os.path.join(self.dir, "data"), "--persist", "disk"],
                                     stdout=self.log, stderr=self.log, env={**os.environ, **(env or {})})
        c = weaseldb.Client(self.url, timeout=2, max_attempts=1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weaseldb exited with {self.proc.returncode}; see {self.log.name}")
            if c.ready():
                c.close()
                return
            time.sleep(0.05)
        raise RuntimeError(f"weaseldb not ready after 60s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@unittest.skipUnless(os.path.exists(BIN), f"weaseldb binary not found at {BIN} (set WEASELDB_BIN or run make build)")
class E2ETest(unittest.TestCase):
    server: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server()
        cls.server.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.close()

    def setUp(self) -> None:
        self.c = weaseldb.Client(self.server.url, timeout=10)
        self.addCleanup(self.c.close)

    def raw(self, method: str, path: str, body: bytes | None = None, ctype: str | None = "application/json"):
        headers = {"Content-Type": ctype} if ctype and body is not None else {}
        status, hdrs, data = self.c.raw_request(method, path, body, headers)
        return status, hdrs, data

    def assert_error(self, status: int, data: bytes, want_status: int, want_code: str, reason: str | None = None):
        self.assertEqual(status, want_status, data)
        b = json.loads(data)
        self.assertEqual(b["error"], want_code, b)
        self.assertIsInstance(b["message"], str)
        self.assertTrue(b["message"], "message must say what is wrong")
        if reason:
            self.assertEqual(b.get("reason"), reason, b)

    # -- version, commit, status ----------------------------------------------

    def test_version_commit_status(self):
        v0 = self.c.version()
        self.assertTrue(v0.leader_id)
        r = self.c.commit(operations=[weaseldb.write("e2e/a", "1")])
        self.assertGreater(r.version, v0.version)
        self.assertEqual(r.leader_id, v0.leader_id)
        self.assertGreaterEqual(self.c.version().version, r.version)
        self.assertEqual(self.c.status(r.request_id), weaseldb.StatusInfo(r.request_id, "committed", r.version))
        self.assertEqual(self.c.status(r.request_id, min_version=r.version).status, "not_committed")
        self.assertEqual(self.c.status("never-sent-request-id-0001").status, "not_committed")
        barrier = self.c.commit()
        self.assertGreater(barrier.version, r.version)

    def test_server_generates_request_id(self):
        status, _, data = self.raw("POST", "/v1/commit", b'{"operations":[]}')
        self.assertEqual(status, 200, data)
        self.assertTrue(json.loads(data)["request_id"])

    def test_duplicate_request_id(self):
        rid = weaseldb.new_request_id()
        r1 = self.c.commit(operations=[weaseldb.write("e2e/dup", "1")], request_id=rid)
        r2 = self.c.commit(operations=[weaseldb.write("e2e/dup", "2")], request_id=rid)
        self.assertTrue(r2.duplicate)
        self.assertEqual((r2.version, r2.request_id), (r1.version, rid))

    def test_conflict_and_leader_changed(self):
        v = self.c.version().version
        self.c.commit(operations=[weaseldb.write("e2e/c1", "x")])
        with self.assertRaises(weaseldb.ConflictError) as cm:
            self.c.commit(read_version=v, preconditions=[weaseldb.point_read("e2e/untouched"),
                                                         weaseldb.point_read("e2e/c1"),
                                                         weaseldb.range_read("e2e/c", "e2e/d")],
                          operations=[weaseldb.write("e2e/c2", "y")])
        e = cm.exception
        self.assertEqual(e.conflicts, [1, 2])
        self.assertGreater(e.version, v)
        self.assertTrue(e.leader_id)
        # Blind writes never conflict.
        self.c.commit(operations=[weaseldb.write("e2e/c1", "z")])
        with self.assertRaises(weaseldb.LeaderChangedError) as cm2:
            self.c.commit(leader_id="not-the-leader", operations=[weaseldb.write("e2e/c1", "z")])
        self.assertEqual(cm2.exception.status, 409)
        self.assertIsNotNone(cm2.exception.version)
        lid = self.c.version().leader_id
        self.c.commit(leader_id=lid, operations=[weaseldb.write("e2e/c1", "w")])

    def test_future_version_and_missing_version(self):
        v = self.c.version().version
        with self.assertRaises(weaseldb.FutureVersionError):
            self.c.commit(preconditions=[weaseldb.point_read("k", version=v + 1000)])
        with self.assertRaises(weaseldb.BadRequestError):
            self.c.commit(preconditions=[weaseldb.point_read("k")])

    def test_bad_requests(self):
        before = self.c.version().version
        good_key = base64.b64encode(b"k").decode()
        for body in [b"{", b"[]", b'{"operations":[{"type":"write","key":"!!!","value":""}]}',
                     b'{"operations":[{"type":"write","key":"' + good_key.encode() + b'"}]}',
                     b'{"operations":[{"type":"explode","key":"aw=="}]}',
                     b'{"read_version":"7"}', b'{"read_version":-1}', b'{"operations":{}}',
                     b'{"operatoins":[]}',
                     b'{"operations":[{"type":"range_delete","begin":"Yg==","end":"YQ=="}]}',
                     b'{"operations":[{"type":"range_delete","begin":"YQ==","end":"YQ=="}]}',
                     b'{"request_id":"short"}', b'{"request_id":"' + b"x" * 257 + b'"}']:
            status, _, data = self.raw("POST", "/v1/commit", body)
            self.assert_error(status, data, 400, "bad_request")
        status, _, data = self.raw("POST", "/v1/commit", b"{}", ctype="text/plain")
        self.assert_error(status, data, 415, "unsupported_media_type")
        self.assertEqual(self.c.version().version, before, "a bad request never changes state")

    def test_limits(self):
        big_value = weaseldb.write("k", b"v" * (128 * 1024 + 1))
        with self.assertRaises(weaseldb.PayloadTooLargeError):
            self.c.commit(operations=[big_value])
        with self.assertRaises(weaseldb.PayloadTooLargeError):
            self.c.commit(operations=[weaseldb.write(b"k" * (8 * 1024 + 1), "v")])
        with self.assertRaises(weaseldb.PayloadTooLargeError):
            self.c.commit(operations=[weaseldb.delete(b"k%d" % i) for i in range(10_001)])
        body = b'{"operations":[' + b",".join([b'{"type":"write","key":"aw==","value":"' +
                                                b"A" * 100_000 + b'"}'] * 170) + b"]}"
        self.assertGreater(len(body), 16 << 20)
        status, _, data = self.raw("POST", "/v1/commit", body)
        self.assert_error(status, data, 413, "payload_too_large")
        self.c.close()  # the server may close after an oversized body
        self.c.commit(operations=[weaseldb.write("k", b"v" * (128 * 1024))])  # at the limit: fine

    def test_routes(self):
        status, _, data = self.raw("GET", "/v1/nope")
        self.assert_error(status, data, 404, "not_found")
        status, _, data = self.raw("DELETE", "/v1/version")
        self.assert_error(status, data, 405, "method_not_allowed")
        self.assertEqual(self.raw("GET", "/healthz")[0], 200)
        self.assertEqual(self.raw("GET", "/readyz")[0], 200)

    # -- metrics and retention ------------------------------------------------

    def test_metrics(self):
        self.c.commit(operations=[weaseldb.write("e2e/m", "1")])
        m = Admin(self.server.url).metrics()
        self.assertTrue(any(n.startswith("weaseldb_") for n in m.names()), m.names()[:20])
        self.assertTrue(any(n.startswith("go_") for n in m.names()))

    def test_retention(self):
        a = Admin(self.server.url)
        v = self.c.commit(operations=[weaseldb.write("e2e/r", "1")]).version
        self.assertEqual(a.put_policy("e2e.keep-1", v), weaseldb.admin.Policy("e2e.keep-1", v))
        self.assertEqual(a.get_policy("e2e.keep-1").version, v)
        self.assertIn("e2e.keep-1", [p.policy_id for p in a.list_policies().policies])
        with self.assertRaises(weaseldb.NotFoundError):
            a.get_policy("e2e.none")
        for bad in ("..", "a b", "x" * 129):
            with self.assertRaises(weaseldb.WeaselDBError, msg=bad) as cm:
                a.put_policy(bad, v)
            self.assertIn(cm.exception.status, (400, 404))
        status, _, data = self.raw("PUT", "/v1/retention/e2e.bad", b'{"version":"x"}')
        self.assert_error(status, data, 400, "bad_request")
        a.delete_policy("e2e.keep-1")
        with self.assertRaises(weaseldb.NotFoundError):
            a.delete_policy("e2e.keep-1")

    def test_truncation(self):
        """A policy lets the server truncate; after below the oldest retained is 410."""
        a = Admin(self.server.url)
        for i in range(50):
            self.c.commit(operations=[weaseldb.write(f"e2e/t{i}", "x" * 1000)])
        v = self.c.version().version
        a.put_policy("e2e.trunc", v)
        try:
            deadline = time.monotonic() + 20
            oldest = 0
            while time.monotonic() < deadline and oldest == 0:
                self.c.commit(operations=[weaseldb.write("e2e/t", "x")])
                oldest = a.list_policies().oldest_retained_version
                time.sleep(0.2)
            if oldest == 0:
                self.skipTest("server did not truncate within 20s (segment granularity or schedule)")
            self.assertLessEqual(oldest, v)
            with self.assertRaises(weaseldb.GoneError):
                next(self.c.subscribe(after=oldest - 1))
            with self.assertRaises(weaseldb.ConflictError):
                a.put_policy("e2e.too-low", oldest - 1)
            ev = next(e for e in self.c.subscribe(after=oldest) if isinstance(e, weaseldb.Transaction))
            self.assertEqual(ev.prev_version, oldest)
        finally:
            a.delete_policy("e2e.trunc")

    # -- subscribe ------------------------------------------------------------

    def test_subscribe_basic(self):
        v = self.c.version().version
        rs = [self.c.commit(operations=[weaseldb.write(f"e2e/s{i}", str(i)), weaseldb.range_delete("e2e/x", "e2e/y")])
              for i in range(3)]
        got = []
        for ev in self.c.subscribe(after=v):
            if isinstance(ev, weaseldb.Transaction):
                got.append(ev)
                if ev.version >= rs[-1].version:
                    break
        mine = [t for t in got if t.request_id in {r.request_id for r in rs}]
        self.assertEqual([t.version for t in mine], [r.version for r in rs])
        self.assertEqual(mine[0].operations[0], weaseldb.Operation("write", b"e2e/s0", value=b"0"))
        self.assertEqual(mine[0].operations[1], weaseldb.Operation("range_delete", b"e2e/x", end=b"e2e/y"))
        self.assertEqual(got[0].prev_version, v)
        with self.assertRaises(weaseldb.FutureVersionError):
            next(self.c.subscribe(after=self.c.version().version + 1000))

    def test_subscribe_key_range_and_checkpoints(self):
        v = self.c.version().version
        self.c.commit(operations=[weaseldb.write("e2e/kr/a", "1"), weaseldb.write("e2e/zz", "1")])
        self.c.commit(operations=[weaseldb.write("e2e/zz", "2")])
        last = self.c.commit(operations=[weaseldb.range_delete("e2e/kr/", "e2e/kr0"), weaseldb.write("e2e/kq", "")])
        txns, checkpoint = [], None
        for ev in self.c.subscribe(after=v, begin="e2e/kr/", end="e2e/kr0"):
            if isinstance(ev, weaseldb.Transaction):
                txns.append(ev)
            elif isinstance(ev, weaseldb.Checkpoint) and ev.committed_version >= last.version:
                checkpoint = ev
                break
        self.assertEqual([len(t.operations) for t in txns], [1, 1])
        self.assertEqual(txns[0].operations[0].key, b"e2e/kr/a")
        self.assertEqual(txns[1].operations[0].type, "range_delete")
        self.assertIsNotNone(checkpoint)

    def test_zz_concurrent_counters(self):
        """Serial processing: read-modify-write increments from many clients,
        then the counters rebuilt from the stream equal the acknowledged count."""
        start = self.c.version().version
        keys = [f"e2e/counter/{i}" for i in range(3)]
        state: dict[bytes, int] = {}
        at = [start]
        cond = threading.Condition()
        stop = threading.Event()

        def replica():
            for ev in weaseldb.Client(self.server.url).subscribe(after=start):
                if isinstance(ev, weaseldb.Transaction):
                    with cond:
                        for op in ev.operations:
                            if op.type == "write":
                                state[op.key] = int(op.value)
                        at[0] = ev.version
                        cond.notify_all()
                if stop.is_set():
                    return

        acked = {k: 0 for k in keys}
        lock = threading.Lock()
        workers, each = 8, 15

        def worker(n: int):
            c = weaseldb.Client(self.server.url)
            for i in range(each):
                key = keys[(n + i) % len(keys)]
                while True:
                    with cond:
                        v, val = at[0], state.get(key.encode(), 0)
                    try:
                        c.commit(read_version=v, preconditions=[weaseldb.point_read(key)],
                                 operations=[weaseldb.write(key, str(val + 1))])
                    except (weaseldb.ConflictError, weaseldb.TooOldError):
                        with cond:
                            cond.wait_for(lambda: at[0] > v, timeout=5)
                        continue
                    with lock:
                        acked[key] += 1
                    break
            c.close()

        rt = threading.Thread(target=replica, daemon=True)
        rt.start()
        ts = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        stop.set()
        self.c.commit()  # wake the replica so it can stop
        end = self.c.version().version
        rebuilt: dict[bytes, int] = {}
        for ev in self.c.subscribe(after=start):
            if isinstance(ev, weaseldb.Transaction):
                for op in ev.operations:
                    if op.type == "write":
                        rebuilt[op.key] = int(op.value) if op.value else 0
                if ev.version >= end:
                    break
        self.assertEqual(sum(acked.values()), workers * each)
        self.assertEqual({k: rebuilt.get(k.encode(), 0) for k in keys}, acked)


@unittest.skipUnless(os.path.exists(BIN), f"weaseldb binary not found at {BIN}")
class E2ERestartTest(unittest.TestCase):
    """Subscriptions survive a server restart without gaps; state is durable."""

    def test_subscribe_across_restart(self):
        s = Server()
        self.addCleanup(s.close)
        s.start()
        c = weaseldb.Client(s.url, max_attempts=10, backoff_max=0.5)
        before = [c.commit(operations=[weaseldb.write(f"r{i}", "1")]) for i in range(5)]
        leader1 = c.version().leader_id
        got: list[weaseldb.Transaction] = []
        errors: list[BaseException] = []
        after_restart: list[weaseldb.CommitResult] = []
        done = threading.Event()

        def follow():
            try:
                for ev in weaseldb.Client(s.url, backoff_max=0.5).subscribe(after=0, idle_timeout=20):
                    if isinstance(ev, weaseldb.Transaction):
                        got.append(ev)
                    # Checked on checkpoints too (they come every second), so
                    # the follower stops even if it saw the last commit before
                    # after_restart was filled in.
                    if after_restart and got and got[-1].version >= after_restart[-1].version:
                        break
            except BaseException as e:  # reported below
                errors.append(e)
            finally:
                done.set()

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not got or got[-1].version < before[-1].version):
            time.sleep(0.05)
        s.stop()
        s.start()
        v = c.version()
        self.assertGreaterEqual(v.version, before[-1].version, "committed versions survive a restart")
        self.assertNotEqual(v.leader_id, leader1, "a new leader term gets a new id")
        self.assertEqual(c.status(before[0].request_id).status, "committed")
        # Build the list first: the follower stops at after_restart[-1], which
        # must be the last commit, not whichever was appended so far.
        commits = [c.commit(operations=[weaseldb.write(f"s{i}", "2")]) for i in range(3)]
        after_restart.extend(commits)
        self.assertGreater(after_restart[0].version, before[-1].version)
        done.wait(60)
        self.assertEqual(errors, [])
        versions = [e.version for e in got]
        self.assertEqual(versions, sorted(set(versions)), "each exactly once, in order")
        for a, b in zip(got, got[1:]):
            self.assertEqual(b.prev_version, a.version)
        ids = {e.request_id for e in got}
        self.assertTrue({r.request_id for r in before + after_restart} <= ids)
        with self.assertRaises(weaseldb.LeaderChangedError):
            c.commit(leader_id=leader1, operations=[weaseldb.write("x", "y")])


if __name__ == "__main__":
    unittest.main()
