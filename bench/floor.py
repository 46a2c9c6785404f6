"""The raw HTTP floor every client is measured against, and the conversation client it shares with them.

Kept apart from ``bench.clients`` so that ``bench.floor_process`` runs it without importing modelbot or the SDKs.
"""

from __future__ import annotations

import json

import aiohttp

MODEL = "bench-model"
ANSWER = "Sure, here is a short streamed answer of twelve words for you."
KEY = "sk-bench-0001"


class Client:
    """One way of asking the server; ``reset`` starts a new conversation."""

    name = ""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []

    async def reset(self) -> None:
        self.messages = []

    async def ask(self, question: str) -> str:
        self.messages.append({"role": "user", "content": question})
        answer = await self.send(self.messages)
        self.messages.append({"role": "assistant", "content": answer})
        return answer

    async def send(self, messages: list[dict[str, str]]) -> str:
        raise NotImplementedError


class Floor(Client):
    """aiohttp, the body built by hand with ``json.dumps``, the SSE ``data:`` lines split by hand."""

    name = "raw HTTP floor (aiohttp, body by hand)"

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        super().__init__()
        self._url = f"{base_url}/v1/chat/completions"
        self._session = session
        self._headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    async def send(self, messages: list[dict[str, str]]) -> str:
        body = json.dumps({"model": MODEL, "messages": messages, "stream": True}).encode()
        parts: list[str] = []
        async with self._session.post(self._url, data=body, headers=self._headers) as response:
            async for line in response.content:
                if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                    for choice in json.loads(line[6:])["choices"]:
                        if choice["delta"].get("content"):
                            parts.append(choice["delta"]["content"])
        return "".join(parts)
