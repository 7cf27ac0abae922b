"""Client features end to end against the real ``weaseldb`` binary: the
bearer token (library, Admin, CLI), several endpoints, 307 redirects and
lost answers (see also test_api_e2e for the contract itself).

Skipped when the binary is absent (see test_api_e2e for where it is looked
for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest
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


if __name__ == "__main__":
    unittest.main()
