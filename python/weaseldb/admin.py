"""Operator library: retention policies, metrics and a health summary.

    from weaseldb.admin import Admin
    a = Admin("http://127.0.0.1:8080")
    a.put_policy("backup", 1200)
    m = a.metrics()                  # weaseldb.metrics.Metrics
    m.get("weaseldb_subscribers")
    h = a.health(interval=1.0)       # two scrapes, one interval apart

Figures over an interval: ``health()`` and the CLI's ``top`` scrape twice
and report rates and latency quantiles from the *differences* between the
two scrapes (counters and histogram buckets), so a server that went idle
shows no latency rather than the quantiles since it started.

Metric names: these families are looked for first, and otherwise the first
family whose name contains the given words (so a renamed metric is still
found):

- commits by outcome: ``weaseldb_commits_total{outcome="committed"|"conflict"}``
  (words: commit, total)
- commit latency histogram: ``weaseldb_commit_latency_seconds``
  (words: commit, latency|duration; outcome="committed" when labelled)
- persist latency histogram: ``weaseldb_persist_latency_seconds``
  (words: persist, latency|duration|seconds)
- transactions per persisted segment: ``weaseldb_persist_batch_transactions``
  (words: batch, transactions|size)
- subscribers: ``weaseldb_subscribers`` (words: subscribers)
- subscriber lag in versions: ``weaseldb_subscriber_lag_versions_max`` (the
  worst open subscriber); from older servers the ``stat="max"`` series of
  ``weaseldb_subscriber_lag_versions``, or the p99 of that histogram (a
  snapshot of the open subscribers)

Version, role, leader and oldest retained version come from the API itself.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from . import metrics as metricslib
from .client import Client, VersionInfo
from .errors import WeaselDBError, error_from_answer

COMMITS = "weaseldb_commits_total"
COMMIT_LATENCY = "weaseldb_commit_latency_seconds"
PERSIST_LATENCY = "weaseldb_persist_latency_seconds"
PERSIST_BATCH = "weaseldb_persist_batch_transactions"
SUBSCRIBERS = "weaseldb_subscribers"
SUBSCRIBER_LAG = "weaseldb_subscriber_lag_versions"
SUBSCRIBER_LAG_MAX = "weaseldb_subscriber_lag_versions_max"


@dataclass(frozen=True)
class Policy:
    """Retention policy: keep every transaction with version > version."""

    policy_id: str
    version: int


@dataclass(frozen=True)
class Policies:
    """Answer of GET /v1/retention/."""

    policies: list[Policy]
    oldest_retained_version: int


@dataclass(frozen=True)
class Health:
    """Summary of a server over an interval. Fields are None when the metric
    is missing, and latencies are None when nothing was observed in the
    interval."""

    version: int
    leader_id: str
    ready: bool
    oldest_retained_version: int
    policies: int
    subscribers: float | None
    subscriber_lag: float | None  # worst subscriber, in versions
    commit_rate: float | None  # committed transactions per second between the scrapes
    commit_latency_p50: float | None  # seconds, over the interval
    commit_latency_p99: float | None
    conflict_rate: float | None = None  # conflict answers per second
    persist_latency_p50: float | None = None  # seconds, over the interval
    persist_latency_p99: float | None = None
    batch_size: float | None = None  # mean transactions per persisted segment over the interval
    role: str | None = None  # "leader" or "replica" (None from older servers)
    leader_url: str | None = None  # a replica's leader


@dataclass(frozen=True)
class Scrape:
    """One look at a server: its version answer and its metrics, taken at
    ``at`` (time.monotonic()); ``error`` says why a part is missing."""

    url: str
    at: float
    version: VersionInfo | None
    metrics: metricslib.Metrics | None
    error: str | None = None


@dataclass(frozen=True)
class Figures:
    """What happened between two scrapes of one server."""

    url: str
    seconds: float
    version: int | None
    role: str | None
    leader_id: str | None
    leader_url: str | None
    commit_rate: float | None
    conflict_rate: float | None
    commit_p50: float | None
    commit_p99: float | None
    persist_p50: float | None
    persist_p99: float | None
    batch_size: float | None
    subscribers: float | None
    lag: float | None
    error: str | None = None


def _find_family(m: metricslib.Metrics, preferred: str, *words: str, kind: str | None = None) -> str | None:
    """Sample name to use: preferred if present, else the first whose name
    contains every word ('a|b' means either)."""
    names = m.names()
    if kind == "histogram":
        if preferred + "_bucket" in names:
            return preferred
        fams = [n[: -len("_bucket")] for n in names if n.endswith("_bucket")]
    else:
        if preferred in names:
            return preferred
        fams = [n for n in names if not n.endswith(("_bucket", "_sum", "_count"))]
    for n in fams:
        if all(any(w in n for w in word.split("|")) for word in words):
            return n
    return None


def _outcome_count(m: metricslib.Metrics, outcome: str) -> float | None:
    name = _find_family(m, COMMITS, "commit", "total")
    if name is None:
        return None
    for label in ("outcome", "status", "result"):
        v = m.sum(name, **{label: outcome})
        if v is not None:
            return v
    return m.sum(name) if outcome == "committed" else None


def committed_count(m: metricslib.Metrics) -> float | None:
    """Total committed transactions per the commits counter."""
    return _outcome_count(m, "committed")


def _counter_delta(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return b - a if b >= a else b  # a reset (restart) starts again from 0


def _hist(m: metricslib.Metrics, preferred: str, *words: str) -> tuple[str | None, dict[str, str]]:
    name = _find_family(m, preferred, *words, kind="histogram")
    if name is None:
        return None, {}
    labelled = any("outcome" in s.labels for s in m.find(name + "_bucket"))
    return name, ({"outcome": "committed"} if labelled else {})


def delta_buckets(a: metricslib.Metrics | None, b: metricslib.Metrics, name: str,
                  **labels: str) -> list[tuple[float, float]]:
    """Cumulative buckets of histogram ``name`` observed between scrapes a
    and b (all of b when a is None or the server restarted in between)."""
    bb = b.buckets(name, **labels)
    if a is None:
        return bb
    ab = dict(a.buckets(name, **labels))
    out = [(le, n - ab.get(le, 0.0)) for le, n in bb]
    if any(n < 0 for _, n in out):
        return bb
    return out


def delta_quantile(q: float, a: metricslib.Metrics | None, b: metricslib.Metrics, name: str | None,
                   **labels: str) -> float | None:
    """Quantile q of what histogram ``name`` observed between a and b; None
    when it observed nothing."""
    if name is None:
        return None
    return metricslib.quantile_from_buckets(q, delta_buckets(a, b, name, **labels))


def _delta_mean(a: metricslib.Metrics | None, b: metricslib.Metrics, name: str | None) -> float | None:
    if name is None:
        return None
    s = _counter_delta(a.sum(name + "_sum") if a else 0.0, b.sum(name + "_sum"))
    n = _counter_delta(a.sum(name + "_count") if a else 0.0, b.sum(name + "_count"))
    if s is None or not n:
        return None
    return s / n


def commit_latency(m: metricslib.Metrics, q: float, before: metricslib.Metrics | None = None) -> float | None:
    """Quantile q of the commit latency (seconds) observed since ``before``
    (None: since the server started)."""
    name, labels = _hist(m, COMMIT_LATENCY, "commit", "latency|duration")
    return delta_quantile(q, before, m, name, **labels)


def persist_latency(m: metricslib.Metrics, q: float, before: metricslib.Metrics | None = None) -> float | None:
    """Quantile q of the segment persist latency (seconds) since ``before``."""
    name, labels = _hist(m, PERSIST_LATENCY, "persist", "latency|duration|seconds")
    return delta_quantile(q, before, m, name, **labels)


def batch_size(m: metricslib.Metrics, before: metricslib.Metrics | None = None) -> float | None:
    """Mean transactions per persisted segment since ``before``."""
    name = _find_family(m, PERSIST_BATCH, "batch", "transactions|size", kind="histogram")
    return _delta_mean(before, m, name)


def subscribers(m: metricslib.Metrics) -> float | None:
    name = _find_family(m, SUBSCRIBERS, "subscribers")
    return m.sum(name) if name else None


def subscriber_lag(m: metricslib.Metrics, before: metricslib.Metrics | None = None) -> float | None:
    """Worst subscriber lag in versions: the ``_max`` gauge (the worst open
    subscriber now); else a gauge's ``stat="max"`` series (older servers);
    else the p99 of the lag histogram (``before`` is unused: the histogram
    is a snapshot of the open subscribers)."""
    names = m.names()
    if SUBSCRIBER_LAG_MAX in names:
        return m.sum(SUBSCRIBER_LAG_MAX)
    if SUBSCRIBER_LAG + "_bucket" in names:
        # A histogram over the subscribers open at scrape time (a snapshot,
        # not a counter): its own p99, no difference.
        return delta_quantile(0.99, None, m, SUBSCRIBER_LAG)
    name = _find_family(m, SUBSCRIBER_LAG, "subscriber", "lag", "version")
    if name is None:
        return None
    samples = m.find(name)
    maxed = [s.value for s in samples if s.labels.get("stat") == "max"]
    vals = maxed or [s.value for s in samples if "stat" not in s.labels]
    vals = [v for v in vals if not math.isnan(v)]
    return max(vals) if vals else None


def figures(a: Scrape, b: Scrape) -> Figures:
    """Rates and quantiles of what happened between scrapes a and b."""
    dt = max(b.at - a.at, 1e-9)
    v = b.version
    base = dict(url=b.url, seconds=dt, version=v.version if v else None, role=v.role if v else None,
                leader_id=v.leader_id if v else None, leader_url=v.leader_url if v else None)
    if b.metrics is None:
        return Figures(**base, commit_rate=None, conflict_rate=None, commit_p50=None, commit_p99=None,
                       persist_p50=None, persist_p99=None, batch_size=None, subscribers=None, lag=None,
                       error=b.error)
    m1, m2 = a.metrics, b.metrics

    def rate(outcome: str) -> float | None:
        d = _counter_delta(_outcome_count(m1, outcome) if m1 else None, _outcome_count(m2, outcome))
        if d is None and outcome == "committed" and a.version and v:
            d = max(v.version - a.version.version, 0)  # every commit takes one version
        return None if d is None else d / dt

    return Figures(**base, commit_rate=rate("committed"), conflict_rate=rate("conflict"),
                   commit_p50=commit_latency(m2, 0.5, m1), commit_p99=commit_latency(m2, 0.99, m1),
                   persist_p50=persist_latency(m2, 0.5, m1), persist_p99=persist_latency(m2, 0.99, m1),
                   batch_size=batch_size(m2, m1), subscribers=subscribers(m2), lag=subscriber_lag(m2, m1),
                   error=b.error)


class Admin:
    """Operator access to one server (same options as :class:`Client`)."""

    def __init__(self, url: str, timeout: float = 10.0, **kwargs: Any) -> None:
        self.client = Client(url, timeout=timeout, **kwargs)

    def _path(self, policy_id: str) -> str:
        return "/v1/retention/" + urllib.parse.quote(policy_id, safe="")

    def put_policy(self, policy_id: str, version: int) -> Policy:
        """Create or move a policy. ConflictError if below the oldest retained version."""
        a = self.client._idempotent("PUT", self._path(policy_id), {"version": int(version)})
        return Policy(a["policy_id"], int(a["version"]))

    def get_policy(self, policy_id: str) -> Policy:
        """The policy, or NotFoundError."""
        a = self.client._idempotent("GET", self._path(policy_id))
        return Policy(a["policy_id"], int(a["version"]))

    def list_policies(self) -> Policies:
        """Every policy and the oldest retained version."""
        a = self.client._idempotent("GET", "/v1/retention/")
        return Policies([Policy(p["policy_id"], int(p["version"])) for p in a.get("policies") or []],
                        int(a.get("oldest_retained_version", 0)))

    def delete_policy(self, policy_id: str) -> None:
        """Remove a policy; NotFoundError if there is none."""
        self.client._idempotent("DELETE", self._path(policy_id))

    def metrics_text(self) -> str:
        """GET /metrics as text."""
        status, _, data = self.client.raw_request("GET", "/metrics", headers={"Accept": "text/plain"})
        if status != 200:
            raise error_from_answer(status, None, data)
        return data.decode("utf-8", "replace")

    def metrics(self) -> metricslib.Metrics:
        """GET /metrics parsed."""
        return metricslib.parse(self.metrics_text())

    def scrape(self) -> Scrape:
        """Version and metrics now; a failure is recorded, not raised."""
        url = self.client.url
        try:
            v = self.client.version()
        except WeaselDBError as e:
            return Scrape(url, time.monotonic(), None, None, str(e))
        try:
            return Scrape(url, time.monotonic(), v, self.metrics())
        except (WeaselDBError, ValueError) as e:
            return Scrape(url, time.monotonic(), v, None, f"metrics: {e}")

    def health(self, interval: float = 1.0) -> Health:
        """Scrape twice, ``interval`` seconds apart, and summarise what
        happened in between."""
        s1 = self.scrape()
        time.sleep(interval)
        s2 = self.scrape()
        if s2.version is None:
            raise WeaselDBError(s2.error or "no answer")
        return summarize(self, s1, s2)


def summarize(admin: Admin, s1: Scrape, s2: Scrape) -> Health:
    """Health from two scrapes."""
    f = figures(s1, s2)
    assert s2.version is not None
    try:
        pols = admin.list_policies()
        oldest, npol = pols.oldest_retained_version, len(pols.policies)
    except WeaselDBError:
        oldest, npol = 0, 0
    return Health(version=s2.version.version, leader_id=s2.version.leader_id, ready=admin.client.ready(),
                  oldest_retained_version=oldest, policies=npol, subscribers=f.subscribers,
                  subscriber_lag=f.lag, commit_rate=f.commit_rate, commit_latency_p50=f.commit_p50,
                  commit_latency_p99=f.commit_p99, conflict_rate=f.conflict_rate, persist_latency_p50=f.persist_p50,
                  persist_latency_p99=f.persist_p99, batch_size=f.batch_size, role=s2.version.role,
                  leader_url=s2.version.leader_url)
