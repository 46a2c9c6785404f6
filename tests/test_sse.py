"""The server-sent events decoder: line endings, chunk boundaries and field rules of the event-stream format."""

from __future__ import annotations

import pytest

from bot.providers.sse import SseDecoder, SseEvent


def decode(*chunks: bytes) -> list[SseEvent]:
    decoder = SseDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


@pytest.mark.parametrize(
    ("chunks", "events"),
    [
        pytest.param([b"data: hi\n\n"], [SseEvent(None, "hi")], id="lf"),
        pytest.param([b"data: hi\r\n\r\n"], [SseEvent(None, "hi")], id="crlf"),
        pytest.param([b"data: hi\r\r"], [SseEvent(None, "hi")], id="cr"),
        pytest.param([b"data: hi\r", b"\n\r", b"\n"], [SseEvent(None, "hi")], id="crlf-split-between-chunks"),
        pytest.param(
            [b"da", b"ta: h", b"i\n", b"\n"], [SseEvent(None, "hi")], id="line-split-between-chunks"
        ),
        pytest.param(
            [b"event: message_stop\ndata: {}\n\n"], [SseEvent("message_stop", "{}")], id="named-event"
        ),
        pytest.param([b"data: a\ndata: b\n\n"], [SseEvent(None, "a\nb")], id="multi-line-data"),
        pytest.param([b"data:tight\n\n"], [SseEvent(None, "tight")], id="no-space-after-colon"),
        pytest.param([b"data:  two\n\n"], [SseEvent(None, " two")], id="only-one-space-is-stripped"),
        pytest.param([b"data\n\n"], [SseEvent(None, "")], id="field-without-colon"),
        pytest.param([b": keep-alive\n\ndata: x\n\n"], [SseEvent(None, "x")], id="comment"),
        pytest.param([b"event: ping\n\n"], [], id="event-without-data-is-not-dispatched"),
        pytest.param([b"id: 7\nretry: 10\ndata: x\n\n"], [SseEvent(None, "x")], id="id-and-retry-ignored"),
        pytest.param([b"data: cut off"], [], id="unterminated-event-dropped"),
        pytest.param([b"data: cut off\n"], [], id="event-without-blank-line-dropped"),
        pytest.param(
            ["data: h\u00e9llo\n\n".encode()[:8], "data: h\u00e9llo\n\n".encode()[8:]],
            [SseEvent(None, "h\u00e9llo")],
            id="utf8-split-between-chunks",
        ),
        pytest.param(
            [b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"],
            [SseEvent("a", "1"), SseEvent("b", "2")],
            id="event-name-does-not-carry-over",
        ),
        pytest.param(
            [b"data: x\n\n", b"", b"data: y\n\n"], [SseEvent(None, "x"), SseEvent(None, "y")], id="empty"
        ),
    ],
)
def test_events_are_decoded(chunks: list[bytes], events: list[SseEvent]) -> None:
    """Each stream of chunks gives exactly these events."""
    assert decode(*chunks) == events


def test_every_split_of_a_stream_gives_the_same_events() -> None:
    """Wherever the network cuts the body, the events are the same."""
    stream = b"event: a\r\ndata: 1\r\n\r\n: c\rdata: 2\rdata: 3\r\r" + "data: \u00fcber\n\n".encode()
    expected = decode(stream)
    assert expected == [SseEvent("a", "1"), SseEvent(None, "2\n3"), SseEvent(None, "\u00fcber")]
    for cut in range(1, len(stream)):
        assert decode(stream[:cut], stream[cut:]) == expected, cut
