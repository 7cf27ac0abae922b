"""Incremental Server-Sent Events parser (WHATWG HTML standard rules).

Feed it bytes as they arrive; it returns the events completed so far.
Lines end in CRLF, LF or a lone CR, also when a CR and its LF arrive in
different chunks; ``:`` starts a comment; one space after the field colon
is dropped; a line without colon is a field with an empty value; multiple
``data`` lines are joined with ``\\n``; a blank line dispatches the event
unless it has no data; an ``id`` containing NUL is ignored; ``retry`` is
kept only when it is all ASCII digits. A partial event at the end of the
stream is discarded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SSEEvent:
    """One dispatched event. ``id`` is the stream's last event id."""

    event: str
    data: str
    id: str


class SSEParser:
    """Push parser: ``events = parser.feed(chunk)``."""

    #: bounds one line so that a broken peer cannot grow memory without end
    MAX_LINE = 64 << 20

    def __init__(self) -> None:
        self._buf = b""
        self._pending_cr = False  # the last chunk ended in CR: skip a leading LF
        self._data: list[str] = []
        self._has_data = False
        self._event = ""
        self.last_id = ""
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse chunk; return the events it completed."""
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._pending_cr = False
        buf = self._buf + chunk
        out: list[SSEEvent] = []
        start = 0
        n = len(buf)
        while True:
            i_cr = buf.find(b"\r", start)
            i_lf = buf.find(b"\n", start)
            if i_cr < 0 and i_lf < 0:
                break
            if i_cr < 0 or (0 <= i_lf < i_cr):
                line, start = buf[start:i_lf], i_lf + 1
            else:
                line = buf[start:i_cr]
                if i_cr + 1 < n:
                    start = i_cr + 2 if buf[i_cr + 1:i_cr + 2] == b"\n" else i_cr + 1
                else:
                    start = i_cr + 1
                    self._pending_cr = True
            ev = self._line(line)
            if ev is not None:
                out.append(ev)
        self._buf = buf[start:]
        if len(self._buf) > self.MAX_LINE:
            raise ValueError(f"SSE line longer than {self.MAX_LINE} bytes")
        return out

    def _line(self, raw: bytes) -> SSEEvent | None:
        line = raw.decode("utf-8", "replace")
        if line == "":
            return self._dispatch()
        if line[0] == ":":
            self.comments += 1
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self.last_id = value
        elif name == "retry":
            if value and all("0" <= c <= "9" for c in value):
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        event, self._event = self._event, ""
        if not self._has_data:
            self._data = []
            return None
        ev = SSEEvent(event=event or "message", data="\n".join(self._data), id=self.last_id)
        self._data, self._has_data = [], False
        return ev
