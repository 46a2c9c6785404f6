"""The in-process clients ``bench.conversation`` compares: each keeps its conversation and asks one turn at a time."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing
from pathlib import Path
from typing import Any, cast

import aiohttp
import openai
from openai.types.chat import ChatCompletionMessageParam

from adapters.console import ConsoleAdapter
from bench.floor import KEY, MODEL, Client, Floor
from bot.app import App, build_app
from bot.failover.engine import TurnDone, TurnEvent, TurnInput
from bot.models.refs import ModelRef
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ProviderClient, ResolvedAuth
from bot.providers.openai_client import OpenAICompletionsClient


class Sdk(Client):
    """The official SDK as its documentation shows it."""

    name = "openai SDK chat.completions.create(stream)"

    def __init__(self, sdk: openai.AsyncOpenAI) -> None:
        super().__init__()
        self._sdk = sdk

    async def send(self, messages: list[dict[str, str]]) -> str:
        stream = await self._sdk.chat.completions.create(
            model=MODEL,
            messages=cast("list[ChatCompletionMessageParam]", messages),
            stream=True,
        )
        parts: list[str] = []
        async with stream:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta is not None and choice.delta.content:
                        parts.append(choice.delta.content)
        return "".join(parts)


class LiteLlm(Client):
    """LiteLLM's Router, one deployment, its retries off."""

    name = "LiteLLM Router.acompletion(stream)"

    def __init__(self, router: Any) -> None:
        super().__init__()
        self._router = router

    async def send(self, messages: list[dict[str, str]]) -> str:
        stream = await self._router.acompletion(model=MODEL, messages=messages, stream=True)
        parts: list[str] = []
        async for chunk in stream:
            content = chunk.choices[0].delta.content if chunk.choices else None
            if content:
                parts.append(content)
        return "".join(parts)


class ProviderPath(Client):
    """modelbot's provider client alone (``OpenAICompletionsClient``, or ``AnthropicMessagesClient`` with
    ``api``: the body built once from our types, sent through the SDK's low-level ``post`` over its aiohttp
    transport, the raw stream decoded by our SSE decoder)."""

    name = "modelbot provider path (SDK post, raw, our SSE)"

    def __init__(self, base_url: str, client: ProviderClient, *, api: str = "openai-completions") -> None:
        super().__init__()
        self._client = client
        self._endpoint = Endpoint("bench", base_url, api)
        self._auth = ResolvedAuth("bench:a", "api_key", KEY)
        self._history: list[ChatMessage] = []

    async def reset(self) -> None:
        self._history = []

    async def ask(self, question: str) -> str:
        self._history.append(ChatMessage("user", question))
        request = ChatRequest(MODEL, self._history)
        answer = "".join([d async for d in self._client.stream(self._endpoint, self._auth, request)])
        self._history.append(ChatMessage("assistant", answer))
        return answer


class EnginePath(ProviderPath):
    """modelbot's failover engine as wired by ``build_app``: auth backend, rotation, the provider client."""

    name = "modelbot Engine.run (auth, rotation, client)"

    def __init__(self, app: App) -> None:
        super().__init__("", OpenAICompletionsClient())
        self._engine = app.engine("main")
        self._chain = [ModelRef("bench", MODEL)]

    async def ask(self, question: str) -> str:
        self._history.append(ChatMessage("user", question))
        # Closed here, as the pipeline closes it: a generator left to the loop's finalizer hook costs a
        # thread-safe wake-up and a task per turn, which no real caller pays.
        events = self._engine.run(TurnInput(chain=self._chain, messages=list(self._history)))
        async with aclosing(cast("AsyncGenerator[TurnEvent, None]", events)) as run:
            async for event in run:
                if isinstance(event, TurnDone):
                    self._history.append(ChatMessage("assistant", event.result.text))
                    return event.result.text
        raise RuntimeError("Engine.run ended without a result")


class PipelinePath(Client):
    """What ``modelbot chat`` runs per line, in this process: the console adapter and the whole pipeline
    on the SQLite store, without the process's pipes."""

    name = "modelbot pipeline in-process (SQLite)"

    def __init__(self, app: App) -> None:
        super().__init__()
        self._out = io.StringIO()
        self._adapter = ConsoleAdapter(app.chat(), session="bench", json_mode=True, stdout=self._out)

    async def reset(self) -> None:
        await self._adapter.handle_line("/new")

    async def ask(self, question: str) -> str:
        self._out.seek(0)
        self._out.truncate()
        await self._adapter.handle_line(question)
        reply: dict[str, Any] = json.loads(self._out.getvalue())
        return str(reply["text"])


async def make_clients(base_url: str, stack: AsyncExitStack, config: Path) -> tuple[list[Client], list[str]]:
    """Every client (the floor first), closed by ``stack``; and a note for each that could not be made.

    ``config`` is the bot's config (``bench.chat_process``); the in-process bot keeps its state beside it.
    """
    session = await stack.enter_async_context(aiohttp.ClientSession())
    sdk = openai.AsyncOpenAI(api_key=KEY, base_url=f"{base_url}/v1", max_retries=0)
    stack.push_async_callback(sdk.close)
    provider = OpenAICompletionsClient()
    stack.push_async_callback(provider.aclose)
    clients: list[Client] = [Floor(base_url, session), Sdk(sdk)]
    missing: list[str] = []
    router = _litellm_router(base_url)
    if router is None:
        missing.append("LiteLLM: not installed here (`pip install litellm` adds it to this table)")
    else:
        clients.append(LiteLlm(router))
    clients.append(ProviderPath(f"{base_url}/v1", provider))
    app = build_app(cli_config=str(config), env={"MODELBOT_STATE_DIR": str(config.parent)})
    await app.start()
    stack.push_async_callback(app.stop)
    clients += [EnginePath(app), PipelinePath(app)]
    return clients, missing


def _litellm_router(base_url: str) -> Any:
    """LiteLLM's Router on the loopback server, or None when litellm is not installed."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of its price list
    try:
        import litellm  # noqa: PLC0415 - optional, and seconds to import
    except ImportError:
        return None
    litellm.suppress_debug_info = True
    with contextlib.suppress(Exception):
        logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    deployment = {"model": f"openai/{MODEL}", "api_base": f"{base_url}/v1", "api_key": KEY}
    return litellm.Router(model_list=[{"model_name": MODEL, "litellm_params": deployment}], num_retries=0)
