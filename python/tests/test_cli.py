"""The CLI as a subprocess against the in-memory fake server."""

import json
import os
import subprocess
import sys
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
        self.assertTrue(lines[0].startswith("2 ") and "write b=2" in lines[0], lines)
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
        code, out, err = run_cli(self.url, "top", "--interval", "0.05", "--iterations", "2")
        self.assertEqual(code, 0, err)
        self.assertIn("commits/s 0.0", out)
        self.assertIn("p50 5.50ms", out)
        self.assertIn("worst lag 7 versions", out)


if __name__ == "__main__":
    unittest.main()
