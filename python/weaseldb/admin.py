"""Operator library: retention policies, metrics and a health summary.

    from weaseldb.admin import Admin
    a = Admin("http://127.0.0.1:8080")
    a.put_policy("backup", 1200)
    m = a.metrics()                  # weaseldb.metrics.Metrics
    m.get("weaseldb_subscribers")
    h = a.health(interval=1.0)       # two scrapes, one interval apart

Metric names: the health summary and ``top`` look for these families first
and otherwise for the first family whose name contains the given words
(so a renamed metric is still found):

- commits by outcome: ``weaseldb_commits_total{outcome="committed"}``
  (words: commit, total)
- commit latency histogram: ``weaseldb_commit_latency_seconds``
  (words: commit, latency|duration, histogram type)
- subscribers: ``weaseldb_subscribers`` (words: subscribers)
- subscriber lag in versions: ``weaseldb_subscriber_lag_versions_max`` (the
  worst open subscriber; ``weaseldb_subscriber_lag_versions`` is a histogram)
  (words: subscriber, lag)

Version, leader and oldest retained version come from the API itself.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from . import metrics as metricslib
from .client import Client
from .errors import WeaselDBError, error_from_answer

COMMITS = "weaseldb_commits_total"
COMMIT_LATENCY = "weaseldb_commit_latency_seconds"
SUBSCRIBERS = "weaseldb_subscribers"
SUBSCRIBER_LAG = "weaseldb_subscriber_lag_versions_max"


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
    """Summary of a server. Fields are None when the metric is missing."""

    version: int
    leader_id: str
    ready: bool
    oldest_retained_version: int
    policies: int
    subscribers: float | None
    subscriber_lag: float | None  # worst subscriber, in versions
    commit_rate: float | None  # committed transactions per second between the scrapes
    commit_latency_p50: float | None
    commit_latency_p99: float | None


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
        fams = names
    for n in fams:
        if all(any(w in n for w in word.split("|")) for word in words):
            return n
    return None


def committed_count(m: metricslib.Metrics) -> float | None:
    """Total committed transactions per the commits counter."""
    name = _find_family(m, COMMITS, "commit", "total")
    if name is None:
        return None
    for label, value in (("outcome", "committed"), ("status", "committed"), ("result", "committed")):
        v = m.sum(name, **{label: value})
        if v is not None:
            return v
    return m.sum(name)


def commit_latency(m: metricslib.Metrics, q: float) -> float | None:
    """Quantile q of the commit latency histogram (seconds)."""
    name = _find_family(m, COMMIT_LATENCY, "commit", "latency|duration", kind="histogram")
    return m.quantile(q, name) if name else None


def subscribers(m: metricslib.Metrics) -> float | None:
    name = _find_family(m, SUBSCRIBERS, "subscribers")
    return m.sum(name) if name else None


def subscriber_lag(m: metricslib.Metrics) -> float | None:
    name = _find_family(m, SUBSCRIBER_LAG, "subscriber", "lag", kind=None)
    if name is None:
        return None
    if name + "_bucket" in m.names() or name.endswith("_bucket"):
        return None
    vals = [s.value for s in m.find(name)]
    return max(vals) if vals else None


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

    def health(self, interval: float = 1.0) -> Health:
        """Scrape twice, ``interval`` seconds apart, and summarise."""
        v1 = self.client.version()
        m1, t1 = self.metrics(), time.monotonic()
        time.sleep(interval)
        v2 = self.client.version()
        m2, t2 = self.metrics(), time.monotonic()
        return summarize(self, v1.version, m1, t1, v2.version, v2.leader_id, m2, t2)


def summarize(admin: Admin, version1: int, m1: metricslib.Metrics, t1: float, version2: int, leader_id: str,
              m2: metricslib.Metrics, t2: float) -> Health:
    """Health from two scrapes (used by Admin.health and the CLI's top)."""
    dt = max(t2 - t1, 1e-9)
    c1, c2 = committed_count(m1), committed_count(m2)
    if c1 is not None and c2 is not None:
        rate: float | None = max(c2 - c1, 0.0) / dt
    else:
        rate = max(version2 - version1, 0) / dt  # every commit takes one version
    try:
        pols = admin.list_policies()
        oldest, npol = pols.oldest_retained_version, len(pols.policies)
    except WeaselDBError:
        oldest, npol = 0, 0
    return Health(version=version2, leader_id=leader_id, ready=admin.client.ready(), oldest_retained_version=oldest,
                  policies=npol, subscribers=subscribers(m2), subscriber_lag=subscriber_lag(m2), commit_rate=rate,
                  commit_latency_p50=commit_latency(m2, 0.5), commit_latency_p99=commit_latency(m2, 0.99))
