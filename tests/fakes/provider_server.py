"""A loopback fake of the OpenAI chat-completions and Anthropic messages APIs, scripted per credential."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

Api = Literal["openai", "anthropic"]
DEFAULT_TEXT = "Hello from the fake provider."


@dataclass(frozen=True)
class Ok:
    """Answer with ``text``, streamed word by word; ``finish`` overrides the finish/stop reason; ``linger``
    keeps the body open that long after the end marker (a gateway that never closes its streams)."""

    text: str = DEFAULT_TEXT
    finish: str | None = None  # e.g. "content_filter" (OpenAI) or "refusal" (Anthropic)
    linger: float = 0.0


@dataclass(frozen=True)
class Status:
    """Fail with an HTTP status; ``body`` None means an error body shaped like the API's own."""

    code: int
    body: str | Mapping[str, Any] | list[Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """Say nothing for ``seconds`` (longer than the client's timeout); with ``after``, stall mid-stream."""

    seconds: float = 10.0
    after: str = ""


@dataclass(frozen=True)
class Empty:
    """A complete, successful answer without any text."""


@dataclass(frozen=True)
class Cut:
    """Stream ``text`` and stop without the end marker: drop the connection, or end the body cleanly."""

    text: str = "This answer was cut"
    drop_connection: bool = True


@dataclass(frozen=True)
class NoEndMarker:
    """Stream ``text`` and the finish/stop reason, then stop without the end marker (``[DONE]``,
    ``message_stop``): a stream whose model said it was done, from a gateway that drops the last event."""

    text: str = "This answer is complete"
    drop_connection: bool = False


@dataclass(frozen=True)
class StreamError:
    """A 200 stream that carries an error event (after ``text``), as providers send when overloaded."""

    type: str = "overloaded_error"
    message: str = "Overloaded"
    text: str = ""


@dataclass(frozen=True)
class Held:
    """Hold the request until the test sets ``gate``, then behave as ``then`` (an answer kept open while
    something else happens: another chat's 429, a burst)."""

    gate: asyncio.Event
    then: Ok | Status | Empty = Ok()


Behaviour = Ok | Status | Hang | Empty | Cut | NoEndMarker | StreamError | Held


# Lower-case spellings read well in scripts: ``server.script(key, status(429), ok("Hi"))``.
ok = Ok
status = Status
timeout = Hang
empty = Empty
cut = Cut
no_end_marker = NoEndMarker
stream_error = StreamError
held = Held


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it; header names are lower-case."""

    api: Api
    path: str
    headers: Mapping[str, str]
    json: Mapping[str, Any]
    key: str  # the credential: the bearer token or the x-api-key value ("" when none was sent)
    connection: int = 0  # the client's port: requests with the same one came over one kept-alive connection
    query: str = ""  # the query string, as sent


@dataclass
class _Script:
    queue: deque[Behaviour]
    default: Behaviour | None


# Default error bodies: (Anthropic error type, OpenAI code, message) per status.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("authentication_error", "invalid_api_key", "invalid x-api-key"),
    402: ("billing_error", None, "Insufficient credits."),
    403: ("permission_error", None, "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model_not_found", "The requested model was not found."),
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit exceeded."),
    500: ("api_error", None, "Internal server error."),
    503: ("api_error", None, "Service unavailable."),
    529: ("overloaded_error", None, "Overloaded"),
}


class FakeProviderServer:
    """``async with FakeProviderServer() as server`` serves both APIs on 127.0.0.1 until the block ends."""

    def __init__(
        self, default: Behaviour | None = None, *, latency_s: float = 0.0, record: bool = True
    ) -> None:
        """``latency_s``: every answer starts that long after its request arrived (a provider's think time).

        ``record``: keep every request in ``requests`` for the test to read. Benchmarks turn it off: over
        thousands of requests whose bodies carry whole histories, the kept objects made the garbage
        collector's full passes stall the server for 20-170 ms at a time, on whichever client's turn was in
        flight."""
        self.requests: list[RecordedRequest] = []
        self._record = record
        self._default = default or Ok()
        self._latency_s = latency_s
        self._by_key: dict[str, _Script] = {}
        self._by_model: dict[str, _Script] = {}
        self._closing = asyncio.Event()
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url  # the Anthropic SDK appends /v1/messages itself

    def script(self, key: str, *behaviours: Behaviour, default: Behaviour | None = None) -> None:
        """Requests with credential ``key`` get ``behaviours`` in turn, then ``default`` (or the server's)."""
        self._by_key[key] = _Script(deque(behaviours), default)

    def script_model(self, model: str, *behaviours: Behaviour, default: Behaviour | None = None) -> None:
        """Like ``script`` for every request naming ``model``; it wins over the credential's script."""
        self._by_model[model] = _Script(deque(behaviours), default)

    async def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> None:
        """Return once ``count`` requests have arrived (to act while a handler is still busy)."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.requests) >= count), timeout_s)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        # A short shutdown timeout keeps every test that starts a server at tens of milliseconds.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()  # wakes every Hang so no handler outlives the server
        if self._runner is not None:
            await self._runner.cleanup()

    def _next(self, key: str, model: str) -> Behaviour:
        script = self._by_model.get(model) or self._by_key.get(key)
        if script is None:
            return self._default
        if script.queue:
            return script.queue.popleft()
        return script.default or self._default

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "openai")

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "anthropic")

    async def _handle(self, request: web.Request, api: Api) -> web.StreamResponse:
        body = await request.json()
        headers = {name.lower(): value for name, value in request.headers.items()}
        auth = headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth else headers.get("x-api-key", "")
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        port = peer[1] if peer else 0
        if self._record:
            self.requests.append(
                RecordedRequest(api, request.path, headers, body, key, port, request.query_string)
            )
        async with self._arrived:
            self._arrived.notify_all()
        model = str(body.get("model", ""))
        behaviour = self._next(key, model)
        if isinstance(behaviour, Held):
            await self._wait(behaviour.gate)
            behaviour = behaviour.then
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        writer = _OpenAIWriter(model) if api == "openai" else _AnthropicWriter(model)
        if isinstance(behaviour, Status):
            return _error_response(api, behaviour)
        if isinstance(behaviour, Hang) and not (behaviour.after and body.get("stream")):
            await self._sleep(behaviour.seconds)
            return web.json_response(writer.complete(""))
        if not body.get("stream"):
            return await self._json_answer(request, writer, behaviour)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        # A client that gave up (timeout tests) leaves a closed socket: nothing more to send then.
        with contextlib.suppress(ConnectionResetError):
            await self._stream(request, response, writer, behaviour)
        return response

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        writer: _OpenAIWriter | _AnthropicWriter,
        behaviour: Behaviour,
    ) -> None:
        await response.write(writer.start())
        if isinstance(behaviour, Ok | Cut | NoEndMarker | Hang | StreamError):
            for word in _words(behaviour.after if isinstance(behaviour, Hang) else behaviour.text):
                await response.write(writer.delta(word))
        if isinstance(behaviour, Hang):
            await self._sleep(behaviour.seconds)
        elif isinstance(behaviour, StreamError):
            await response.write(writer.error(behaviour.type, behaviour.message))
        elif isinstance(behaviour, Cut | NoEndMarker):
            if isinstance(behaviour, NoEndMarker):
                await response.write(writer.finish(None, end_marker=False))
            if behaviour.drop_connection:
                _drop(request)
                return
        else:
            await response.write(writer.finish(behaviour.finish if isinstance(behaviour, Ok) else None))
            if isinstance(behaviour, Ok) and behaviour.linger:
                await self._sleep(behaviour.linger)
        await response.write_eof()

    async def _json_answer(
        self, request: web.Request, writer: _OpenAIWriter | _AnthropicWriter, behaviour: Behaviour
    ) -> web.StreamResponse:
        if isinstance(behaviour, StreamError):
            return _error_response(
                writer.api, Status(500, writer.error_body(behaviour.type, behaviour.message))
            )
        if isinstance(behaviour, Cut):
            whole = json.dumps(writer.complete(behaviour.text)).encode()
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(whole)
            await response.prepare(request)
            await response.write(whole[: len(whole) // 2])
            _drop(request)
            return response
        return web.json_response(
            writer.complete(behaviour.text if isinstance(behaviour, Ok | NoEndMarker) else "")
        )

    async def _wait(self, gate: asyncio.Event) -> None:
        """Until the test opens the gate, or the server closes."""
        closing = asyncio.ensure_future(self._closing.wait())
        opened = asyncio.ensure_future(gate.wait())
        await asyncio.wait({closing, opened}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        opened.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)


def _words(text: str) -> list[str]:
    """Split into deltas that join back to ``text`` exactly."""
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words) if w or i < len(words) - 1]


def _drop(request: web.Request) -> None:
    """Close the socket under the response: the client sees a body that just stops."""
    if request.transport is not None:
        request.transport.close()


def _error_response(api: Api, behaviour: Status) -> web.Response:
    body = behaviour.body
    if body is None:
        kind, code, message = _ERRORS.get(behaviour.code, ("api_error", None, "Error."))
        writer = _OpenAIWriter("") if api == "openai" else _AnthropicWriter("")
        body = writer.error_body(kind, message, code)
    text = body if isinstance(body, str) else json.dumps(body)
    content_type = "application/json" if text.lstrip().startswith(("{", "[")) else "text/plain"
    return web.Response(
        status=behaviour.code, text=text, content_type=content_type, headers=dict(behaviour.headers)
    )


def _sse(data: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


class _OpenAIWriter:
    """Chat-completions chunks: role first, then content deltas, a finish_reason, then ``[DONE]``."""

    api: Api = "openai"

    def __init__(self, model: str) -> None:
        self.model = model

    def _chunk(self, delta: Mapping[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": self.model,
            "choices": [choice],
        }
        return _sse(chunk)

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def delta(self, text: str) -> bytes:
        return self._chunk({"content": text})

    def finish(self, reason: str | None = None, *, end_marker: bool = True) -> bytes:
        return self._chunk({}, reason or "stop") + (_sse("[DONE]") if end_marker else b"")

    def error_body(self, kind: str, message: str, code: str | None = None) -> dict[str, Any]:
        return {"error": {"message": message, "type": kind, "param": None, "code": code or kind}}

    def error(self, kind: str, message: str) -> bytes:
        return _sse(self.error_body(kind, message))  # OpenRouter-style: an error object as a chunk

    def complete(self, text: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split()), "total_tokens": 5},
        }


class _AnthropicWriter:
    """Messages events: message_start, a text block with text_delta events, message_delta, message_stop."""

    api: Api = "anthropic"

    def __init__(self, model: str) -> None:
        self.model = model
        self._block_open = False

    def _message(self, content: list[Any], stop: str | None) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        }

    def start(self) -> bytes:
        return _sse({"type": "message_start", "message": self._message([], None)}, "message_start")

    def delta(self, text: str) -> bytes:
        opening = b""
        if not self._block_open:
            self._block_open = True
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            opening = _sse(block, "content_block_start") + _sse({"type": "ping"}, "ping")
        event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        return opening + _sse(event, "content_block_delta")

    def finish(self, reason: str | None = None, *, end_marker: bool = True) -> bytes:
        closing = b""
        if self._block_open:
            closing = _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason or "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 3},
        }
        stop = _sse({"type": "message_stop"}, "message_stop") if end_marker else b""
        return closing + _sse(delta, "message_delta") + stop

    def error_body(self, kind: str, message: str, code: str | None = None) -> dict[str, Any]:
        return {"type": "error", "error": {"type": kind, "message": message}}

    def error(self, kind: str, message: str) -> bytes:
        return _sse(self.error_body(kind, message), "error")

    def complete(self, text: str) -> dict[str, Any]:
        content = [{"type": "text", "text": text}] if text else []
        return self._message(content, "end_turn")
