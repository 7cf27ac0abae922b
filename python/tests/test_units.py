"""Unit tests: encoding, SSE parsing, Prometheus parsing, error mapping."""

import math
import random
import unittest

import weaseldb
from weaseldb import encoding, errors
from weaseldb.metrics import Sample, format_sample, parse, quantile_from_buckets
from weaseldb.sse import SSEEvent, SSEParser


class EncodingTest(unittest.TestCase):
    def test_builders(self):
        self.assertEqual(weaseldb.write("key1", b"value"), {"type": "write", "key": "a2V5MQ==", "value": "dmFsdWU="})
        self.assertEqual(weaseldb.delete(b"\x00\xff"), {"type": "delete", "key": "AP8="})
        self.assertEqual(weaseldb.range_delete("x", "y"), {"type": "range_delete", "begin": "eA==", "end": "eQ=="})
        self.assertEqual(weaseldb.point_read("k"), {"type": "point_read", "key": "aw=="})
        self.assertEqual(weaseldb.range_read("a", "b", version=40),
                         {"type": "range_read", "begin": "YQ==", "end": "Yg==", "version": 40})
        self.assertEqual(weaseldb.write("é", ""), {"type": "write", "key": "w6k=", "value": ""})
        with self.assertRaises(TypeError):
            weaseldb.write(1, "x")

    def test_unb64_strict(self):
        self.assertEqual(encoding.unb64("AP8="), b"\x00\xff")
        for bad in ("AP8", "A?==", "é"):
            with self.assertRaises(ValueError, msg=bad):
                encoding.unb64(bad)

    def test_display_round_trip(self):
        rnd = random.Random(1)
        for b in [b"", b"abc", b"\x00\xff", "é".encode(), b"base64:x", b"a\nb"] + \
                 [bytes(rnd.randrange(256) for _ in range(rnd.randrange(8))) for _ in range(200)]:
            self.assertEqual(encoding.parse_display(encoding.display(b)), b)


def parse_chunks(data: bytes, sizes):
    p = SSEParser()
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out += p.feed(data[i:i + n])
        i, k = i + n, k + 1
    return out, p


class SSETest(unittest.TestCase):
    CASES = [
        (b"id: 1\nevent: transaction\ndata: {}\n\n", [SSEEvent("transaction", "{}", "1")]),
        (b"id: 1\r\nevent: transaction\r\ndata: {}\r\n\r\n", [SSEEvent("transaction", "{}", "1")]),
        (b"id: 1\revent: x\rdata: a\r\r", [SSEEvent("x", "a", "1")]),
        (b"data: a\ndata:b\ndata:  c\n\n", [SSEEvent("message", "a\nb\n c", "")]),
        (b": keep-alive\n\n:x\ndata: 1\n\n", [SSEEvent("message", "1", "")]),
        (b"id: 7\ndata: a\n\nid: 8\x00\ndata: b\n\n", [SSEEvent("message", "a", "7"), SSEEvent("message", "b", "7")]),
        (b"event: checkpoint\n\ndata: z\n\n", [SSEEvent("message", "z", "")]),
        (b"data\n\n", [SSEEvent("message", "", "")]),
        (b"foo: bar\ndata: q\n\n", [SSEEvent("message", "q", "")]),
        (b"data: a\n\ndata: b", [SSEEvent("message", "a", "")]),
        (b"data: a\r", []),
    ]

    def test_cases_all_chunkings(self):
        for data, want in self.CASES:
            for sizes in ([len(data) or 1], [1], [2], [3, 1], [5]):
                got, _ = parse_chunks(data, sizes)
                self.assertEqual(got, want, f"{data!r} in chunks {sizes}")

    def test_crlf_split_across_chunks(self):
        p = SSEParser()
        self.assertEqual(p.feed(b"data: a\r"), [])
        self.assertEqual(p.feed(b"\ndata: b\r"), [])
        # The lone CR ends the blank line at once; the LF after it is skipped.
        self.assertEqual(p.feed(b"\n\r"), [SSEEvent("message", "a\nb", "")])
        self.assertEqual(p.feed(b"\ndata: c\n\n"), [SSEEvent("message", "c", "")])

    def test_retry_and_comments(self):
        _, p = parse_chunks(b"retry: 1500\n\nretry: x1\n\n: c\n:\n\n", [4])
        self.assertEqual(p.retry_ms, 1500)
        self.assertEqual(p.comments, 2)

    def test_random_chunking_matches_whole(self):
        rnd = random.Random(7)
        alphabet = [b"data: x", b"data", b"event: t", b"id: 3", b": c", b"\n", b"\r", b"\r\n", b"\n\n", b"retry: 5"]
        for _ in range(300):
            data = b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(30)))
            whole, _ = parse_chunks(data, [max(len(data), 1)])
            got, _ = parse_chunks(data, [rnd.randrange(1, 5) for _ in range(5)])
            self.assertEqual(got, whole, repr(data))


class MetricsTest(unittest.TestCase):
    TEXT = """# HELP weaseldb_commits_total Commits by outcome.\\nSecond line \\\\ done.
# TYPE weaseldb_commits_total counter
weaseldb_commits_total{outcome="committed"} 10
weaseldb_commits_total{outcome="conflict",path="a\\"b\\\\c\\nd"} 2 1700000000000
# TYPE lat histogram
lat_bucket{le="0.1"} 50
lat_bucket{le="0.2"} 90
lat_bucket{le="+Inf"} 100
lat_sum 12.5
lat_count 100
# TYPE s summary
s{quantile="0.5"} NaN
s_sum 0
s_count 0
g -Inf
h +Inf
e 1.5e-3
  spaced { a = "1" , } 4
"""

    def test_parse(self):
        m = parse(self.TEXT)
        self.assertEqual(m.types["weaseldb_commits_total"], "counter")
        self.assertEqual(m.help["weaseldb_commits_total"], "Commits by outcome.\nSecond line \\ done.")
        self.assertEqual(m.get("weaseldb_commits_total", outcome="committed"), 10)
        s = m.find("weaseldb_commits_total", outcome="conflict")[0]
        self.assertEqual(s.labels["path"], 'a"b\\c\nd')
        self.assertEqual(s.timestamp_ms, 1700000000000)
        self.assertEqual(m.sum("weaseldb_commits_total"), 12)
        self.assertTrue(math.isnan(m.get("s", quantile="0.5")))
        self.assertEqual(m.get("g"), -math.inf)
        self.assertEqual(m.get("h"), math.inf)
        self.assertEqual(m.get("e"), 0.0015)
        self.assertEqual(m.get("spaced", a="1"), 4)
        self.assertEqual(m.family("lat_bucket"), "lat")
        self.assertEqual(m.family("s_count"), "s")
        self.assertIsNone(m.get("nope"))
        with self.assertRaises(ValueError):
            m.get("weaseldb_commits_total")  # ambiguous

    def test_quantile(self):
        m = parse(self.TEXT)
        self.assertAlmostEqual(m.quantile(0.5, "lat"), 0.1)
        self.assertAlmostEqual(m.quantile(0.7, "lat"), 0.15)
        self.assertAlmostEqual(m.quantile(0.95, "lat"), 0.2)  # in +Inf: highest finite bound
        self.assertIsNone(quantile_from_buckets(0.5, [(math.inf, 0)]))
        self.assertIsNone(m.quantile(0.5, "missing"))

    def test_errors_name_the_line(self):
        for bad in ('x{a="1} 2', "x{a=1} 2", "x", "x abc", "1x 2"):
            with self.assertRaisesRegex(ValueError, "line 1", msg=bad):
                parse(bad)

    def test_format_round_trip(self):
        for s in [Sample("a", {}, 1.0), Sample("b", {"x": 'q"\\\n'}, 2.5), Sample("c", {"le": "+Inf"}, math.inf)]:
            self.assertEqual(parse(format_sample(s)).samples[0], s)


class ErrorMappingTest(unittest.TestCase):
    def test_hierarchy(self):
        cases = [
            (409, {"error": "conflict", "reason": "conflict", "conflicts": [1]}, weaseldb.ConflictError),
            (409, {"error": "conflict", "reason": "too_old"}, weaseldb.TooOldError),
            (409, {"error": "conflict", "reason": "leader_changed"}, weaseldb.LeaderChangedError),
            (409, {"error": "conflict"}, weaseldb.ConflictError),
            (400, {"error": "bad_request", "reason": "future_version"}, weaseldb.FutureVersionError),
            (400, {"error": "bad_request"}, weaseldb.BadRequestError),
            (404, None, weaseldb.NotFoundError),
            (410, {"error": "gone"}, weaseldb.GoneError),
            (413, {"error": "payload_too_large"}, weaseldb.PayloadTooLargeError),
            (415, {"error": "unsupported_media_type"}, weaseldb.UnsupportedMediaTypeError),
            (429, {"error": "too_many_requests"}, weaseldb.TooManyRequestsError),
            (503, {"error": "unavailable"}, weaseldb.UnavailableError),
            (500, {"error": "internal"}, weaseldb.ServerError),
            (502, None, weaseldb.ServerError),
        ]
        for status, body, cls in cases:
            e = errors.error_from_answer(status, body, b"plain text")
            self.assertIs(type(e), cls, (status, body))
            self.assertIsInstance(e, weaseldb.WeaselDBError)
            self.assertEqual(e.status, status)
        e = errors.error_from_answer(409, {"error": "conflict", "reason": "conflict", "conflicts": [0, 2],
                                           "version": 57, "leader_id": "L", "message": "m"})
        self.assertEqual((e.conflicts, e.version, e.leader_id, e.message, e.code), ([0, 2], 57, "L", "m", "conflict"))
        self.assertIsInstance(e, weaseldb.NotCommittedError)
        self.assertEqual(errors.error_from_answer(502, None, b"Bad Gateway\n").message, "Bad Gateway")


class LagMetricTest(unittest.TestCase):
    """The worst subscriber lag is read from each form servers have had."""

    def test_forms(self):
        from weaseldb.admin import subscriber_lag
        from weaseldb.metrics import parse
        self.assertEqual(subscriber_lag(parse("weaseldb_subscriber_lag_versions_max 7\n")), 7)
        self.assertEqual(subscriber_lag(parse('weaseldb_subscriber_lag_versions{stat="max"} 7\n'
                                              'weaseldb_subscriber_lag_versions{stat="sum"} 10\n')), 7)
        h = ('weaseldb_subscriber_lag_versions_bucket{le="1"} %d\n'
             'weaseldb_subscriber_lag_versions_bucket{le="100"} %d\n'
             'weaseldb_subscriber_lag_versions_bucket{le="+Inf"} %d\n')
        before, after = parse(h % (10, 10, 10)), parse(h % (10, 20, 20))
        self.assertAlmostEqual(subscriber_lag(after, before), 1 + 99 * 9.8 / 10)  # a snapshot: no difference
        self.assertIsNone(subscriber_lag(parse("go_threads 5\n")))


if __name__ == "__main__":
    unittest.main()
