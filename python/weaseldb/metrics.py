"""Parser of the Prometheus text exposition format (version 0.0.4).

``parse(text)`` returns a :class:`Metrics`: every sample with its labels,
plus the HELP and TYPE of each family. Handles comments, label values with
``\\\\``, ``\\"`` and ``\\n`` escapes, ``+Inf``/``-Inf``/``NaN``, optional
timestamps, and histogram/summary families (``_bucket``/``_sum``/
``_count`` samples belong to their family; :meth:`Metrics.quantile`
estimates a quantile from histogram buckets as Prometheus'
``histogram_quantile`` does).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_gsum", "_gcount")


@dataclass(frozen=True)
class Sample:
    """One sample line."""

    name: str
    labels: dict[str, str]
    value: float
    timestamp_ms: int | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in labels.items())


@dataclass
class Metrics:
    """Parsed exposition: samples in order, HELP and TYPE per family."""

    samples: list[Sample] = field(default_factory=list)
    help: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def find(self, name: str, **labels: str) -> list[Sample]:
        """Samples named exactly ``name`` whose labels include ``labels``."""
        return [s for s in self.samples if s.name == name and s.matches(labels)]

    def get(self, name: str, **labels: str) -> float | None:
        """Value of the single matching sample; None if none; ValueError if several."""
        found = self.find(name, **labels)
        if not found:
            return None
        if len(found) > 1:
            raise ValueError(f"{len(found)} samples match {name}{labels}; add labels")
        return found[0].value

    def sum(self, name: str, **labels: str) -> float | None:
        """Sum over the matching samples (None if none match)."""
        found = self.find(name, **labels)
        return sum(s.value for s in found) if found else None

    def family(self, sample_name: str) -> str:
        """The family a sample belongs to (strips _bucket/_sum/_count of a
        histogram or summary, _total of a counter)."""
        if sample_name in self.types:
            return sample_name
        for suf in _SUFFIXES:
            if sample_name.endswith(suf) and sample_name[: -len(suf)] in self.types:
                return sample_name[: -len(suf)]
        return sample_name

    def names(self) -> list[str]:
        """Distinct sample names, in first-seen order."""
        return list(dict.fromkeys(s.name for s in self.samples))

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) of histogram ``name``, summed over
        label sets matching ``labels`` (other than le), sorted by bound."""
        acc: dict[float, float] = {}
        for s in self.find(name + "_bucket", **labels):
            le = s.labels.get("le")
            if le is None:
                continue
            bound = parse_value(le)
            acc[bound] = acc.get(bound, 0.0) + s.value
        return sorted(acc.items())

    def quantile(self, q: float, name: str, **labels: str) -> float | None:
        """Estimate quantile q (0..1) of histogram ``name`` by linear
        interpolation inside the bucket, like PromQL histogram_quantile.
        None when there are no observations."""
        b = self.buckets(name, **labels)
        return quantile_from_buckets(q, b)


def quantile_from_buckets(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile over sorted cumulative (bound, count) pairs."""
    if not buckets or not math.isinf(buckets[-1][0]):
        return None
    total = buckets[-1][1]
    if total <= 0 or math.isnan(total):
        return None
    if q <= 0:
        return 0.0 if buckets[0][0] >= 0 else buckets[0][0]
    if q >= 1:
        return buckets[-2][0] if len(buckets) > 1 else None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # in the +Inf bucket: the highest finite bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return buckets[-2][0] if len(buckets) > 1 else None


def parse_value(s: str) -> float:
    """Parse a sample value: floats, +Inf, -Inf, Inf, NaN."""
    t = s.strip()
    low = t.lower()
    if low in ("+inf", "inf"):
        return math.inf
    if low == "-inf":
        return -math.inf
    if low == "nan":
        return math.nan
    return float(t)


def _parse_labels(s: str, i: int, lineno: int) -> tuple[dict[str, str], int]:
    """Parse ``{a="x",b="y"}`` starting at s[i] == '{'; return labels and the index after '}'."""
    labels: dict[str, str] = {}
    i += 1
    n = len(s)
    while True:
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] == "}":
            return labels, i + 1
        m = _NAME.match(s, i)
        if not m:
            raise ValueError(f"line {lineno}: bad label name at column {i + 1}")
        key, i = m.group(0), m.end()
        while i < n and s[i] in " \t":
            i += 1
        if i >= n or s[i] != "=":
            raise ValueError(f"line {lineno}: expected '=' after label {key}")
        i += 1
        while i < n and s[i] in " \t":
            i += 1
        if i >= n or s[i] != '"':
            raise ValueError(f"line {lineno}: expected '\"' for label {key}")
        i += 1
        val = []
        while True:
            if i >= n:
                raise ValueError(f"line {lineno}: unterminated value of label {key}")
            c = s[i]
            if c == "\\" and i + 1 < n:
                nxt = s[i + 1]
                val.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
                i += 2
                continue
            if c == '"':
                i += 1
                break
            val.append(c)
            i += 1
        labels[key] = "".join(val)
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] == ",":
            i += 1
        elif i < n and s[i] == "}":
            return labels, i + 1
        else:
            raise ValueError(f"line {lineno}: expected ',' or '}}' after label {key}")


def _unescape_help(s: str) -> str:
    return s.replace("\\\\", "\x00").replace("\\n", "\n").replace("\x00", "\\")


def parse(text: str) -> Metrics:
    """Parse a text exposition; ValueError (naming the line) on malformed input."""
    out = Metrics()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line == "# EOF":
            continue
        if line.startswith("#"):
            parts = line[1:].strip().split(None, 2)
            if len(parts) >= 2 and parts[0] == "HELP":
                out.help[parts[1]] = _unescape_help(parts[2] if len(parts) > 2 else "")
            elif len(parts) >= 3 and parts[0] == "TYPE":
                out.types[parts[1]] = parts[2].strip()
            continue
        m = _NAME.match(line)
        if not m:
            raise ValueError(f"line {lineno}: bad metric name: {raw!r}")
        name, i = m.group(0), m.end()
        labels: dict[str, str] = {}
        while i < len(line) and line[i] in " \t":
            i += 1
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i, lineno)
        rest = line[i:].split()
        if not rest:
            raise ValueError(f"line {lineno}: no value: {raw!r}")
        try:
            value = parse_value(rest[0])
            ts = int(float(rest[1])) if len(rest) > 1 else None
        except ValueError:
            raise ValueError(f"line {lineno}: bad value: {raw!r}") from None
        out.samples.append(Sample(name, labels, value, ts))
    return out


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_sample(s: Sample) -> str:
    """Render a sample back as an exposition line (parse(format_sample(s)) == s)."""
    head = s.name
    if s.labels:
        head += "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in s.labels.items()) + "}"
    v = s.value
    if math.isnan(v):
        vs = "NaN"
    elif math.isinf(v):
        vs = "+Inf" if v > 0 else "-Inf"
    elif v == int(v) and abs(v) < 1e15:
        vs = str(int(v))
    else:
        vs = repr(v)
    return f"{head} {vs}"
