"""Command line interface: ``python3 -m weaseldb`` (or ``weaseldb-cli`` when installed).

Exit codes (stable, for scripts):

====  ==========================================================
0     success
1     not committed: conflict, too_old, leader_changed (commit);
      not_committed or in_flight (status)
2     usage error: bad arguments or input (argparse also uses 2)
3     connection or server error (unreachable, timeout, 5xx, outcome unknown,
      tail --timeout)
4     request refused by the server (400, 401, 404, 405, 410, 413, 415)
5     subscription gap (tail)
130   interrupted (Ctrl-C)
====  ==========================================================

Errors go to stderr as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any, Sequence

from . import encoding
from .admin import Admin, Figures, figures
from .client import Checkpoint, Client, Reset, Transaction, split_urls
from .errors import (GapError, NotCommittedError, OutcomeUnknownError, ServerError, TooManyRequestsError,
                     WeaselDBConnectionError, WeaselDBError)
from .metrics import format_sample

EXIT_OK, EXIT_NOT_COMMITTED, EXIT_USAGE, EXIT_SERVER, EXIT_REFUSED, EXIT_GAP = 0, 1, 2, 3, 4, 5
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 10.0


class UsageError(Exception):
    """Bad arguments or input: exit 2."""


def _out(obj: Any) -> None:
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def _key(s: str) -> bytes:
    return encoding.parse_display(s)


_B64_RUN = re.compile(r"base64:[A-Za-z0-9+/]*")


def split_pair(kv: str, flag: str = "--set") -> tuple[str, str]:
    """Split KEY=VALUE at the '=' that ends the key. A ``base64:`` key may
    end in '=' padding: the key is its base64 run plus the padding that
    completes it (``base64:AP8==base64:AAE=``), or the run alone when the
    padding was left out (``base64:AP8=base64:AAE=``, the key padded here).
    A text key ends at its first '=' (give a key containing '=' as base64:)."""
    if kv.startswith("base64:"):
        run = _B64_RUN.match(kv)
        assert run is not None
        end = run.end()
        pad = -(end - len("base64:")) % 4
        if pad and kv[end:end + pad] == "=" * pad and kv[end + pad:end + pad + 1] == "=":
            return kv[:end + pad], kv[end + pad + 1:]
        if kv[end:end + 1] == "=":
            return kv[:end] + "=" * pad, kv[end + 1:]
        raise UsageError(f"{flag} {kv!r}: expected KEY=VALUE (a base64: key is base64 then '=')")
    k, sep, v = kv.partition("=")
    if not sep:
        raise UsageError(f"{flag} {kv!r}: expected KEY=VALUE")
    return k, v


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, timeout=_timeout(args), token=args.token)


def _admin(args: argparse.Namespace) -> Admin:
    return Admin(args.url, timeout=_timeout(args), token=args.token)


def _timeout(args: argparse.Namespace) -> float:
    return DEFAULT_TIMEOUT if args.timeout is None else args.timeout




# -- commands ------------------------------------------------------------------

def cmd_version(args: argparse.Namespace) -> int:
    v = _client(args).version()
    _out({"version": v.version, "leader_id": v.leader_id})
    return EXIT_OK


def _commit_body_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    ops: list[dict[str, Any]] = []
    pre: list[dict[str, Any]] = []
    for kv in args.set or []:
        k, v = split_pair(kv)
        ops.append(encoding.write(_key(k), _key(v)))
    for k in args.delete or []:
        ops.append(encoding.delete(_key(k)))
    for r in args.delete_range or []:
        b, sep, e = r.partition("..")
        if not sep:
            raise UsageError(f"--delete-range {r!r}: expected BEGIN..END")
        ops.append(encoding.range_delete(_key(b), _key(e)))
    for r in args.read or []:
        k, sep, v = r.rpartition("@")
        if not sep:
            k, v = r, ""
        if v and not v.isdigit():
            raise UsageError(f"--read {r!r}: VERSION must be an integer")
        if not v and args.read_version is None:
            raise UsageError(f"--read {r!r}: give KEY@VERSION or --read-version")
        pre.append(encoding.point_read(_key(k), int(v) if v else None))
    for r in args.read_range or []:
        rng, sep, v = r.rpartition("@")
        if not sep:
            rng, v = r, ""
        b, sep2, e = rng.partition("..")
        if not sep2 or (v and not v.isdigit()):
            raise UsageError(f"--read-range {r!r}: expected BEGIN..END[@VERSION]")
        if not v and args.read_version is None:
            raise UsageError(f"--read-range {r!r}: give @VERSION or --read-version")
        pre.append(encoding.range_read(_key(b), _key(e), int(v) if v else None))
    body: dict[str, Any] = {}
    if pre:
        body["preconditions"] = pre
    if ops:
        body["operations"] = ops
    return body


def cmd_commit(args: argparse.Namespace) -> int:
    flags = any([args.set, args.delete, args.delete_range, args.read, args.read_range])
    if flags and args.empty:
        raise UsageError("--empty commits a transaction with no operations: give it alone")
    if flags:
        body = _commit_body_from_flags(args)
    elif args.empty:
        body = {}
    else:
        if sys.stdin.isatty():
            raise UsageError("nothing to commit: give --set/--delete/--read flags, the /v1/commit JSON body "
                             "on stdin, or --empty for a transaction with no operations")
        text = sys.stdin.read()
        if not text.strip():
            raise UsageError("stdin is empty: give the /v1/commit JSON body, or --empty for a transaction "
                             "with no operations")
        try:
            body = json.loads(text)
        except ValueError as e:
            raise UsageError(f"stdin: not JSON: {e}") from None
        if not isinstance(body, dict):
            raise UsageError("stdin: expected a JSON object (the /v1/commit body)")
    if args.read_version is not None:
        body["read_version"] = args.read_version
    if args.request_id:
        body["request_id"] = args.request_id
    if args.leader_id:
        body["leader_id"] = args.leader_id
    c = _client(args)
    try:
        r = c.commit_body(body)
    except NotCommittedError as e:
        _out({"status": "not_committed", **e.body})
        print(f"weaseldb: not committed: {e}", file=sys.stderr)
        return EXIT_NOT_COMMITTED
    res: dict[str, Any] = {"request_id": r.request_id, "status": "committed", "version": r.version}
    if r.leader_id:
        res["leader_id"] = r.leader_id
    if r.duplicate:
        res["duplicate"] = True
    if r.resolved:
        res["resolved"] = True
    _out(res)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    st = _client(args).status(args.request_id, args.min_version)
    res: dict[str, Any] = {"request_id": st.request_id, "status": st.status}
    if st.version is not None:
        res["version"] = st.version
    _out(res)
    return EXIT_OK if st.status == "committed" else EXIT_NOT_COMMITTED


def _q(b: bytes) -> str:
    """A key or value as a JSON string of its display form: quotes and
    escapes make spaces, '=' and ';' unambiguous."""
    return json.dumps(encoding.display(b), ensure_ascii=False)


def _describe_op(op: Any) -> str:
    if op.type == "write":
        return f"write {_q(op.key)}={_q(op.value or b'')}"
    if op.type == "range_delete":
        return f"range_delete [{_q(op.key)}, {_q(op.end or b'')})"
    return f"{op.type} {_q(op.key)}"


def cmd_tail(args: argparse.Namespace) -> int:
    c = _client(args)
    n = 0
    begin = _key(args.begin) if args.begin is not None else None
    end = _key(args.end) if args.end is not None else None
    last_checkpoint: int | None = None

    def on_retry(failures: int, delay: float, reason: str) -> None:
        print(f"weaseldb: tail: {reason}; retrying in {delay:.1f}s (attempt {failures + 1})", file=sys.stderr,
              flush=True)

    for ev in c.subscribe(after=args.after, durable=not args.non_durable, begin=begin, end=end,
                          retry_for=args.tail_timeout if args.tail_timeout is not None else args.timeout,
                          on_retry=on_retry):
        if isinstance(ev, Transaction):
            if args.json:
                _out({"type": "transaction", "version": ev.version, "prev_version": ev.prev_version,
                      "request_id": ev.request_id, "timestamp": ev.timestamp, "leader_id": ev.leader_id,
                      "operations": [_op_json(o) for o in ev.operations]})
            else:
                ops = "; ".join(_describe_op(o) for o in ev.operations) or "(no operations)"
                print(f"{ev.version} {ev.timestamp or '-'} {ev.request_id or '-'} {ops}", flush=True)
            n += 1
            if args.count is not None and n >= args.count:
                return EXIT_OK
        elif isinstance(ev, Checkpoint) and args.checkpoints:
            if last_checkpoint is not None and ev.committed_version <= last_checkpoint:
                continue  # the idle stream repeats its checkpoint every second
            last_checkpoint = ev.committed_version
            if args.json:
                _out({"type": "checkpoint", "committed_version": ev.committed_version, "leader_id": ev.leader_id})
            else:
                print(f"checkpoint {ev.committed_version}", flush=True)
        elif isinstance(ev, Reset):
            last_checkpoint = None
            if args.json:
                _out({"type": "reset", "version": ev.version})
            else:
                print(f"reset: discard transactions after {ev.version}", flush=True)
    return EXIT_OK


def _op_json(o: Any) -> dict[str, Any]:
    if o.type == "write":
        return encoding.write(o.key, o.value or b"")
    if o.type == "range_delete":
        return encoding.range_delete(o.key, o.end or b"")
    return {"type": o.type, "key": encoding.b64(o.key)}


def cmd_retention(args: argparse.Namespace) -> int:
    a = _admin(args)
    if args.action == "list":
        p = a.list_policies()
        _out({"policies": [{"policy_id": x.policy_id, "version": x.version} for x in p.policies],
              "oldest_retained_version": p.oldest_retained_version})
    elif args.action == "get":
        x = a.get_policy(args.policy_id)
        _out({"policy_id": x.policy_id, "version": x.version})
    elif args.action == "set":
        x = a.put_policy(args.policy_id, args.version)
        _out({"policy_id": x.policy_id, "version": x.version})
    else:
        a.delete_policy(args.policy_id)
    return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    a = _admin(args)
    if args.raw:
        text = a.metrics_text()
        for line in text.splitlines():
            if args.grep is None or re.search(args.grep, line):
                print(line)
        return EXIT_OK
    m = a.metrics()
    try:
        pat = re.compile(args.grep) if args.grep else None
    except re.error as e:
        raise UsageError(f"--grep: {e}") from None
    for s in m.samples:
        line = format_sample(s)
        if pat is None or pat.search(line):
            print(line)
    return EXIT_OK


def _fmt(v: float | None, scale: float = 1.0, prec: int = 1) -> str:
    return "-" if v is None else f"{v * scale:.{prec}f}"


_TOP_COLUMNS = ("ENDPOINT", "ROLE", "LEADER", "VERSION", "COMMITS/S", "CONFLICTS/S", "COMMIT_P50", "COMMIT_P99",
                "PERSIST_P50", "PERSIST_P99", "BATCH", "SUBS", "LAG")


def _top_row(f: Figures) -> tuple[str, ...]:
    if f.version is None:
        return (f.url, "down") + ("-",) * (len(_TOP_COLUMNS) - 2)
    leader = f.leader_url if f.role == "replica" else (f.leader_id or "-")[:12]
    return (f.url, f.role or "-", leader or "-", str(f.version), _fmt(f.commit_rate), _fmt(f.conflict_rate),
            _fmt(f.commit_p50, 1000, 2), _fmt(f.commit_p99, 1000, 2), _fmt(f.persist_p50, 1000, 2),
            _fmt(f.persist_p99, 1000, 2), _fmt(f.batch_size), _fmt(f.subscribers, prec=0), _fmt(f.lag, prec=0))


def cmd_top(args: argparse.Namespace) -> int:
    # One Admin per endpoint, each pinned to its server: top shows every
    # server's own view, not the failover client's current one.
    admins = [Admin(u, timeout=_timeout(args), token=args.token, max_attempts=1) for u in split_urls(args.url)]
    prev = [a.scrape() for a in admins]
    i = 0
    while args.iterations is None or i < args.iterations:
        time.sleep(args.interval)
        cur = [a.scrape() for a in admins]
        rows = [_TOP_COLUMNS] + [_top_row(figures(p, c)) for p, c in zip(prev, cur)]
        widths = [max(len(r[k]) for r in rows) for k in range(len(_TOP_COLUMNS))]
        dt = cur[0].at - prev[0].at
        lines = [f"weaseldb top — last {dt:.1f}s, every {args.interval:g}s (Ctrl-C to quit); "
                 f"latencies in ms over the interval, BATCH = transactions per persisted segment, "
                 f"LAG = worst subscriber, versions"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines += [s.error if s.url in s.error else f"{s.url}: {s.error}" for s in cur if s.error]
        if sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")
        print("\n".join(lines), flush=True)
        prev = cur
        i += 1
    return EXIT_OK


# -- parser --------------------------------------------------------------------

def build_parser(prog: str = "python3 -m weaseldb") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="WeaselDB command line client.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Keys and values are UTF-8 text; prefix with base64: for raw bytes.\n"
               "Exit codes: 0 ok, 1 not committed, 2 usage, 3 connection/server error,\n"
               "4 refused by the server (4xx), 5 subscription gap, 130 interrupted.")
    p.add_argument("--url", default=os.environ.get("WEASELDB_URL", DEFAULT_URL),
                   help="server URL, or several separated by commas (a leader and its replicas: requests "
                        "follow 307s and move on when a server is down; top shows each) "
                        "(default: $WEASELDB_URL or %(default)s)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per request attempt (default 10); for tail, also how long to keep "
                        "retrying without a stream (default: forever)")
    p.add_argument("--token", default=None,
                   help="bearer token sent as 'Authorization: Bearer TOKEN' (default: $WEASELDB_AUTH_TOKEN)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("version", help="latest committed version and leader id")
    s.set_defaults(func=cmd_version)

    s = sub.add_parser("commit", help="commit a transaction (JSON body on stdin, or flags)",
                       description="Commit a transaction. Without --set/--delete/--read flags, the "
                                   "/v1/commit JSON body is read from stdin (not from a terminal); "
                                   "--empty commits a transaction with no operations. Prints the answer "
                                   "as JSON; exit 1 when not committed. A base64: key may carry its '=' "
                                   "padding: --set base64:AP8==base64:AAE= (or base64:AP8=base64:AAE=).")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="write (repeatable)")
    s.add_argument("--delete", action="append", metavar="KEY", help="delete (repeatable)")
    s.add_argument("--delete-range", action="append", metavar="BEGIN..END", help="range delete (repeatable)")
    s.add_argument("--read", action="append", metavar="KEY[@VERSION]", help="point-read precondition (repeatable)")
    s.add_argument("--read-range", action="append", metavar="BEGIN..END[@VERSION]",
                   help="range-read precondition (repeatable)")
    s.add_argument("--read-version", type=int, help="default version of preconditions")
    s.add_argument("--request-id", help="idempotency key (default: random)")
    s.add_argument("--leader-id", help="refuse unless this is the current leader")
    s.add_argument("--empty", action="store_true", help="commit a transaction with no operations (a barrier)")
    s.set_defaults(func=cmd_commit)

    s = sub.add_parser("status", help="did the commit with this request id commit?",
                       description="Print the status of a request id; exit 0 committed, 1 otherwise.")
    s.add_argument("request_id")
    s.add_argument("--min-version", type=int, help="only commits after this version")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("tail", help="follow the transaction stream",
                       description="Follow /v1/subscribe, reconnecting by itself (each retry is said on "
                                   "stderr). Resumable with --after. One line per transaction: version, "
                                   "timestamp, request id, then operations with keys and values as JSON "
                                   "strings (write \"k\"=\"v\"; delete \"k\"; range_delete [\"a\", \"b\")); "
                                   "--json prints JSON lines.")
    s.add_argument("--after", type=int, help="start after this version (default: now)")
    s.add_argument("--json", action="store_true", help="one JSON object per line")
    s.add_argument("--non-durable", action="store_true", help="durable=false (checkpoints mark durability)")
    s.add_argument("--checkpoints", action="store_true", help="also print checkpoints")
    s.add_argument("--begin", help="only keys >= BEGIN")
    s.add_argument("--end", help="only keys < END")
    s.add_argument("--count", type=int, help="exit after this many transactions")
    s.add_argument("--timeout", dest="tail_timeout", type=float, metavar="SECONDS",
                   help="give up (exit 3) after this long without a stream (default: the global "
                        "--timeout when given, else retry forever)")
    s.set_defaults(func=cmd_tail)

    s = sub.add_parser("retention", help="retention policies: list|get|set|delete",
                       description="Manage retention policies.")
    rs = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = rs.add_parser("list", help="every policy and the oldest retained version")
    r = rs.add_parser("get", help="one policy")
    r.add_argument("policy_id")
    r = rs.add_parser("set", help="keep every transaction with version > VERSION")
    r.add_argument("policy_id")
    r.add_argument("version", type=int)
    r = rs.add_parser("delete", help="remove a policy")
    r.add_argument("policy_id")
    s.set_defaults(func=cmd_retention)

    s = sub.add_parser("metrics", help="print /metrics samples",
                       description="Print parsed /metrics samples, one per line.")
    s.add_argument("--grep", metavar="REGEX", help="only lines matching REGEX")
    s.add_argument("--raw", action="store_true", help="print the exposition text as served")
    s.set_defaults(func=cmd_metrics)

    s = sub.add_parser("top", help="refreshing view of rates, latencies, subscribers, lag, role per server",
                       description="A refreshing view, one row per server of --url, of what happened over "
                                   "the last interval (from the difference of two /metrics scrapes): "
                                   "commits/s, conflicts/s, commit and persist latency p50/p99, "
                                   "transactions per persisted segment, subscribers, worst subscriber "
                                   "lag, role and leader.")
    s.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    s.add_argument("--iterations", type=int, help="stop after N refreshes (default: run until Ctrl-C)")
    s.set_defaults(func=cmd_top)
    return p


def _say(e: BaseException) -> None:
    url = getattr(e, "url", None)
    print(f"weaseldb: {url}: {e}" if url else f"weaseldb: {e}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the CLI; returns the exit code. ``prog`` names the command in
    usage lines (default: weaseldb-cli, the installed script)."""
    parser = build_parser(prog or "weaseldb-cli")
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as e:
        print(f"weaseldb: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except GapError as e:
        print(f"weaseldb: {e}", file=sys.stderr)
        return EXIT_GAP
    except NotCommittedError as e:  # e.g. retention set below the oldest retained version
        _say(e)
        return EXIT_REFUSED
    except (WeaselDBConnectionError, ServerError, OutcomeUnknownError, TooManyRequestsError) as e:
        _say(e)
        return EXIT_SERVER
    except WeaselDBError as e:
        _say(e)
        return EXIT_REFUSED
    except ValueError as e:  # bad base64 in an argument, unparsable metrics
        print(f"weaseldb: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
