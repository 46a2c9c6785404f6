"""The seam between the engine and the LLM APIs: requests, endpoints, credentials and the client protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ImagePart:
    """An image attached to a user message."""

    media_type: str  # image/png, image/jpeg, image/webp, image/gif
    data: bytes


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    text: str
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True)
class ChatRequest:
    """One call: the model id (without provider) and the conversation so far."""

    model: str
    messages: Sequence[ChatMessage]
    max_tokens: int | None = None
    system: str | None = None  # sent the way the API wants it (a system message or the system field)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach a provider."""

    provider: str
    base_url: str
    api: str  # "openai-completions" | "anthropic-messages" | "demo"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 120.0  # the first token and each gap between chunks; also the SDK's socket timeout
    max_answer_s: float = 600.0  # one whole answer


@dataclass(frozen=True)
class ResolvedAuth:
    """A credential ready to send: for ``token``/``oauth`` types the secret goes as bearer auth."""

    profile_id: str
    type: str  # "api_key" | "token" | "oauth" | "env" | "none"
    secret: str
    headers: Mapping[str, str] = field(default_factory=dict)  # what calls with this credential also need

    def __repr__(self) -> str:  # never the secret in a traceback or a log line
        return f"ResolvedAuth({self.profile_id!r}, {self.type!r})"


class ProviderClient(Protocol):
    """Streams text deltas for one attempt.

    Raises ``bot.errors.ProviderError`` (already classified) for every failure, including a stream that
    ends without the API's end marker. A completed stream with no text is not an error here: the engine
    decides that it counts as ``empty``.
    """

    def stream(self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...
