"""A server-sent events decoder (the WHATWG event-stream rules), fed the response body chunk by chunk."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its ``event:`` name (None when the stream gave none) and its joined ``data:``."""

    event: str | None
    data: str


class SseDecoder:
    """Splits bytes into lines (CR, LF or CRLF, across chunk boundaries) and lines into events.

    A line is decoded only once it is complete, so a UTF-8 character split between two chunks is never
    broken; an event is dispatched at the blank line that ends it, and one cut off by the end of the body
    is dropped, as the standard says.
    """

    def __init__(self) -> None:
        self._pending = b""  # the start of a line whose end has not arrived yet
        self._after_cr = False  # the last chunk ended in CR: an LF opening the next one belongs to it
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by ``chunk``."""
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        if not chunk:
            self._after_cr = False
            return []
        self._after_cr = chunk.endswith(b"\r")
        lines = (self._pending + chunk).splitlines()  # bytes split on CR, LF and CRLF only
        self._pending = b"" if chunk.endswith((b"\n", b"\r")) else lines.pop()
        events: list[SseEvent] = []
        for line in lines:
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._event = None
                return None
            event = SseEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event
        if line.startswith(":"):  # a comment (keep-alives)
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value or None
        # "id" and "retry" steer reconnection, which a one-shot answer never does.
        return None
