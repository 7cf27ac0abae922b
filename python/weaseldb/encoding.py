"""Wire encoding helpers: keys and values are bytes, base64 in JSON.

The builders return the JSON objects of API.md (``{"type": "write",
"key": "<base64>", ...}``); keys and values may be given as ``bytes`` or
``str`` (encoded as UTF-8).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

BytesLike = bytes | bytearray | memoryview | str


def to_bytes(x: BytesLike) -> bytes:
    """Return x as bytes (str is encoded as UTF-8)."""
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"expected bytes or str, got {type(x).__name__}")


def b64(x: BytesLike) -> str:
    """Standard, padded base64 of x."""
    return base64.b64encode(to_bytes(x)).decode("ascii")


def unb64(s: str) -> bytes:
    """Decode strict standard padded base64; ValueError on bad input."""
    try:
        return base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"bad base64 {s!r}: {e}") from None


def write(key: BytesLike, value: BytesLike) -> dict[str, Any]:
    """Operation: set key to value."""
    return {"type": "write", "key": b64(key), "value": b64(value)}


def delete(key: BytesLike) -> dict[str, Any]:
    """Operation: remove key."""
    return {"type": "delete", "key": b64(key)}


def range_delete(begin: BytesLike, end: BytesLike) -> dict[str, Any]:
    """Operation: remove every key in [begin, end)."""
    return {"type": "range_delete", "begin": b64(begin), "end": b64(end)}


def point_read(key: BytesLike, version: int | None = None) -> dict[str, Any]:
    """Precondition: key was read at version (None: the commit's read_version)."""
    p: dict[str, Any] = {"type": "point_read", "key": b64(key)}
    if version is not None:
        p["version"] = int(version)
    return p


def range_read(begin: BytesLike, end: BytesLike, version: int | None = None) -> dict[str, Any]:
    """Precondition: every key in [begin, end) was read at version."""
    p: dict[str, Any] = {"type": "range_read", "begin": b64(begin), "end": b64(end)}
    if version is not None:
        p["version"] = int(version)
    return p


def display(b: bytes) -> str:
    """Human form of a key or value: the text if it is printable UTF-8,
    else ``base64:...``."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(b).decode("ascii")
    if s.isprintable() and not s.startswith("base64:"):
        return s
    return "base64:" + base64.b64encode(b).decode("ascii")


def parse_display(s: str) -> bytes:
    """Inverse of :func:`display`: ``base64:...`` is decoded, anything else is UTF-8."""
    if s.startswith("base64:"):
        return unb64(s[len("base64:"):])
    return s.encode("utf-8")
