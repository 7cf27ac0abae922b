"""The CLI as a subprocess against the in-memory fake server."""

import json
import os
import pty
import socket
import subprocess
import sys
import threading
import time
import unittest

from tests.fake_server import FakeWeaselDB

PYDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(url, *args, stdin="", env_url=False, timeout=60):
    env = dict(os.environ, PYTHONPATH=PYDIR)
    argv = [sys.executable, "-m", "weaseldb"]
    if env_url:
        env["WEASELDB_URL"] = url
    else:
        argv += ["--url", url]
    p = subprocess.run(argv + list(args), input=stdin, capture_output=True, text=True, env=env, cwd=PYDIR,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class CLITest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeWeaselDB()
        self.addCleanup(self.fake.close)
        self.url = self.fake.url

    def test_help_everywhere(self):
        for cmd in ([], ["version"], ["commit"], ["status"], ["tail"], ["retention"], ["retention", "set"],
                    ["metrics"], ["top"]):
            code, out, err = run_cli(self.url, *cmd, "--help")
            self.assertEqual(code, 0, (cmd, err))
            self.assertIn("usage:", out)

    def test_version_with_env_url(self):
        code, out, err = run_cli(self.url, "version", env_url=True)
        self.assertEqual((code, json.loads(out)), (0, {"version": 0, "leader_id": "leader-1"}), err)

    def test_commit_flags_conflict_and_status(self):
        code, out, err = run_cli(self.url, "commit", "--set", "a=1", "--set", "b=x=y", "--delete", "c",
                                 "--delete-range", "x..y", "--request-id", "cli-request-id-0000001")
        self.assertEqual(code, 0, err)
        a = json.loads(out)
        self.assertEqual((a["status"], a["version"], a["request_id"]), ("committed", 1, "cli-request-id-0000001"))
        ops = self.fake.txns[0]["operations"]
        self.assertEqual([o["type"] for o in ops], ["write", "write", "delete", "range_delete"])
        self.assertEqual(ops[1]["value"], "eD15")  # "x=y": split on the first '='
        code, out, err = run_cli(self.url, "commit", "--read", "a@0", "--set", "a=2")
        self.assertEqual(code, 1, "a conflict exits 1")
        self.assertEqual(json.loads(out)["conflicts"], [0])
        self.assertIn("not committed", err)
        self.assertNotIn("Traceback", err)
        code, out, _ = run_cli(self.url, "status", "cli-request-id-0000001")
        self.assertEqual((code, json.loads(out)["version"]), (0, 1))
        code, out, _ = run_cli(self.url, "status", "never-sent-request-id-01")
        self.assertEqual((code, json.loads(out)["status"]), (1, "not_committed"))

    def test_commit_from_stdin(self):
        body = {"operations": [{"type": "write", "key": "a2V5MQ==", "value": "dmFsdWU="}]}
        code, out, err = run_cli(self.url, "commit", stdin=json.dumps(body))
        self.assertEqual((code, json.loads(out)["version"]), (0, 1), err)
        code, out, err = run_cli(self.url, "commit", stdin="{not json")
        self.assertEqual(code, 2)
        self.assertIn("stdin", err)
        code, out, err = run_cli(self.url, "commit", stdin='{"bogus": 1}')
        self.assertEqual(code, 4, "a 400 from the server exits 4")
        self.assertIn("bad_request", err)

    def test_usage_errors(self):
        self.assertEqual(run_cli(self.url, "commit", "--set", "novalue")[0], 2)
        self.assertEqual(run_cli(self.url, "commit", "--read", "k")[0], 2)
        self.assertEqual(run_cli(self.url, "nosuchcommand")[0], 2)

    def test_connection_error(self):
        code, _, err = run_cli("http://127.0.0.1:1", "--timeout", "1", "version")
        self.assertEqual(code, 3)
        self.assertTrue(err.startswith("weaseldb: "), err)
        self.assertNotIn("Traceback", err)

    def test_tail(self):
        for kv in ("a=1", "b=2", "c=3"):
            run_cli(self.url, "commit", "--set", kv)
        code, out, err = run_cli(self.url, "tail", "--after", "1", "--count", "2")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[0].startswith("2 ") and 'write "b"="2"' in lines[0], lines)
        code, out, err = run_cli(self.url, "tail", "--after", "0", "--count", "1", "--json")
        ev = json.loads(out)
        self.assertEqual((ev["version"], ev["prev_version"], ev["operations"][0]["key"]), (1, 0, "YQ=="))
        code, out, err = run_cli(self.url, "tail", "--after", "99", "--count", "1")
        self.assertEqual(code, 4)

    def test_retention(self):
        code, out, _ = run_cli(self.url, "retention", "set", "backup", "5")
        self.assertEqual((code, json.loads(out)), (0, {"policy_id": "backup", "version": 5}))
        code, out, _ = run_cli(self.url, "retention", "list")
        self.assertEqual(json.loads(out)["policies"], [{"policy_id": "backup", "version": 5}])
        self.assertEqual(json.loads(run_cli(self.url, "retention", "get", "backup")[1])["version"], 5)
        self.assertEqual(run_cli(self.url, "retention", "delete", "backup")[0], 0)
        code, _, err = run_cli(self.url, "retention", "get", "backup")
        self.assertEqual(code, 4)
        self.assertIn("404", err)

    def test_metrics_and_top(self):
        code, out, _ = run_cli(self.url, "metrics", "--grep", "subscriber")
        self.assertEqual(code, 0)
        self.assertIn("weaseldb_subscribers 0", out)
        self.assertNotIn("commits_total", out)
        # Nothing happened during the interval: rates 0, no latency (not the
        # quantiles since start, 5.50 ms here).
        code, out, err = run_cli(self.url, "top", "--interval", "0.05", "--iterations", "2")
        self.assertEqual(code, 0, err)
        header, row = out.splitlines()[1:3]
        cols = dict(zip(header.split(), row.split()))
        self.assertEqual((cols["COMMITS/S"], cols["CONFLICTS/S"], cols["COMMIT_P50"], cols["COMMIT_P99"]),
                         ("0.0", "0.0", "-", "-"), out)
        self.assertEqual((cols["SUBS"], cols["LAG"], cols["VERSION"], cols["LEADER"]), ("0", "7", "0", "leader-1"))
        self.assertNotIn("5.50", out)

    def test_top_several_endpoints(self):
        other = FakeWeaselDB()
        self.addCleanup(other.close)
        other.leader = "leader-2"
        down = "http://127.0.0.1:1"
        code, out, err = run_cli(",".join([self.url, other.url, down]), "top", "--interval", "0.05",
                                 "--iterations", "1")
        self.assertEqual(code, 0, err)
        rows = out.splitlines()[2:5]
        self.assertEqual([r.split()[0] for r in rows], [self.url, other.url, down])
        self.assertIn("leader-2", rows[1])
        self.assertEqual(rows[2].split()[1], "down")
        self.assertIn("connect", out.splitlines()[5])  # why it is down, below the table

    # -- 13.8 ------------------------------------------------------------------

    def test_usage_names_python_m_weaseldb(self):
        code, out, _ = run_cli(self.url, "--help")
        self.assertTrue(out.startswith("usage: python3 -m weaseldb "), out)
        code, out, _ = run_cli(self.url, "commit", "--help")
        self.assertTrue(out.startswith("usage: python3 -m weaseldb commit"), out)

    def test_set_base64_pair_split_at_the_right_equals(self):
        for arg in ("base64:AP8=base64:AAE=", "base64:AP8==base64:AAE="):
            code, out, err = run_cli(self.url, "commit", "--set", arg)
            self.assertEqual(code, 0, (arg, err))
            op = self.fake.txns[-1]["operations"][0]
            self.assertEqual((op["key"], op["value"]), ("AP8=", "AAE="), arg)
        code, out, err = run_cli(self.url, "commit", "--set", "base64:AAAA=x=y")
        op = self.fake.txns[-1]["operations"][0]
        self.assertEqual((code, op["key"], op["value"]), (0, "AAAA", "eD15"), err)  # value "x=y"
        code, _, err = run_cli(self.url, "commit", "--set", "base64:AP8")
        self.assertEqual(code, 2, err)

    def test_tail_quotes_keys_and_values(self):
        run_cli(self.url, "commit", "--set", "sp ace=va=lue", "--set", 'q"uote=x; y', "--delete", "d",
                "--delete-range", "a..b")
        code, out, err = run_cli(self.url, "tail", "--after", "0", "--count", "1")
        self.assertEqual(code, 0, err)
        self.assertIn('write "sp ace"="va=lue"; write "q\\"uote"="x; y"; delete "d"; range_delete ["a", "b")',
                      out)

    def test_tail_says_retries_on_stderr_and_stops_after_timeout(self):
        down = "http://127.0.0.1:1"
        code, out, err = run_cli(down, "tail", "--after", "0", "--timeout", "1")
        self.assertEqual(code, 3, err)
        retries = [l for l in err.splitlines() if "retrying in" in l]
        self.assertTrue(retries, err)
        self.assertIn(down, retries[0])
        self.assertIn("no stream for 1s", err.splitlines()[-1])
        # The global --timeout works too.
        code, out, err = run_cli(down, "--timeout", "1", "tail", "--after", "0")
        self.assertEqual(code, 3, err)
        self.assertIn("no stream for 1s", err.splitlines()[-1])

    def test_commit_without_flags_needs_empty(self):
        code, out, err = run_cli(self.url, "commit", stdin="")
        self.assertEqual(code, 2, err)
        self.assertIn("--empty", err)
        self.assertEqual(len(self.fake.txns), 0, "an empty stdin committed")
        # On a terminal it does not wait for input.
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        env = dict(os.environ, PYTHONPATH=PYDIR)
        p = subprocess.run([sys.executable, "-m", "weaseldb", "--url", self.url, "commit"], stdin=slave,
                           capture_output=True, text=True, env=env, cwd=PYDIR, timeout=60)
        os.close(slave)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--empty", p.stderr)
        code, out, err = run_cli(self.url, "commit", "--empty")
        self.assertEqual((code, json.loads(out)["version"]), (0, 1), err)
        self.assertEqual(self.fake.txns[0]["operations"], [])
        self.assertEqual(run_cli(self.url, "commit", "--empty", "--set", "a=1")[0], 2)

    def test_refused_connection_is_not_answer_lost_and_names_url(self):
        down = "http://127.0.0.1:1"
        code, out, err = run_cli(down, "--timeout", "1", "commit", "--set", "a=1")
        self.assertEqual(code, 3, err)
        self.assertIn(down, err)
        self.assertIn("not sent", err)
        self.assertNotIn("answer lost", err)

    def test_error_names_server_url(self):
        code, _, err = run_cli(self.url, "retention", "get", "missing")
        self.assertEqual(code, 4)
        self.assertTrue(err.startswith(f"weaseldb: {self.url}: 404"), err)

    def test_tls_handshake_failure_is_not_retried(self):
        # A plain-HTTP server answering the TLS ClientHello with an HTTP 400.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        self.addCleanup(ls.close)
        accepted = []

        def serve():
            while True:
                try:
                    conn, _ = ls.accept()
                except OSError:
                    return
                accepted.append(conn)
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        threading.Thread(target=serve, daemon=True).start()
        url = f"https://127.0.0.1:{ls.getsockname()[1]}"
        code, out, err = run_cli(url, "--timeout", "5", "version")
        self.assertEqual(code, 3, err)
        self.assertIn("TLS handshake failed", err)
        self.assertIn(url, err)
        self.assertEqual(len(accepted), 1, "the handshake failure was retried")

    def test_checkpoints_printed_once_each(self):
        run_cli(self.url, "commit", "--set", "a=1")
        self.fake.repeat_checkpoints = True
        env = dict(os.environ, PYTHONPATH=PYDIR)
        p = subprocess.Popen([sys.executable, "-m", "weaseldb", "--url", self.url, "tail", "--after", "0",
                              "--checkpoints", "--count", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=PYDIR)
        self.addCleanup(p.kill)
        lines = [p.stdout.readline(), p.stdout.readline()]
        self.assertTrue(lines[1].startswith("checkpoint 1"), lines)
        time.sleep(1.5)  # the idle stream repeats "checkpoint 1" meanwhile
        run_cli(self.url, "commit", "--set", "b=2")
        out, err = p.communicate(timeout=60)
        lines += out.splitlines()
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual([l for l in lines if l.startswith("checkpoint")], ["checkpoint 1\n"], lines)


if __name__ == "__main__":
    unittest.main()
