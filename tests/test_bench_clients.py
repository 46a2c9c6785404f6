"""The benchmarks' clients still talk (``make bench`` is not part of ``make test``): each one of
``bench.conversation``'s rows carries a short conversation on the fake provider and sends the whole history.

Correctness only, never timing: the figures belong to the benchmarks themselves (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from bench.anthropic_clients import make_anthropic_clients
from bench.chat_process import ChatProcess, FloorProcess, LineProcess
from bench.clients import make_clients
from bench.conversation import CHAT, run_order, user_text
from bench.floor import ANSWER, MODEL, Floor
from tests.fakes.provider_server import FakeProviderServer, ok

TURNS = 3


async def test_every_in_process_client_holds_a_conversation(tmp_path: Path) -> None:
    async with FakeProviderServer(default=ok(ANSWER)) as server, AsyncExitStack() as stack:
        config = ChatProcess(server.base_url, MODEL, tmp_path).config
        clients, _missing = await make_clients(server.base_url, stack, config)
        clients += await make_anthropic_clients(server.base_url, stack)
        for client in clients:
            await client.reset()
            before = len(server.requests)
            answers = [await client.ask(user_text(turn)) for turn in range(TURNS)]
            assert answers == [ANSWER] * TURNS, client.name
            sent = server.requests[before:]
            assert len(sent) == TURNS, client.name
            # Every turn sends the whole history so far: its questions and the answers in between.
            assert [len(r.json["messages"]) for r in sent] == [1, 3, 5], client.name
            assert all(r.json.get("stream") is True for r in sent), client.name
        apis = {r.api for r in server.requests}
        assert apis == {"openai", "anthropic"}


@pytest.mark.parametrize("row", ["modelbot chat", "floor process"])
async def test_the_rows_driven_through_pipes_answer_each_line(row: str, tmp_path: Path) -> None:
    async with FakeProviderServer(default=ok(ANSWER)) as server:
        process = (
            ChatProcess(server.base_url, MODEL, tmp_path)
            if row == "modelbot chat"
            else FloorProcess(server.base_url)
        )
        # Driven with blocking pipes, as the benchmark drives it: in a thread, off the server's event loop.
        answers = await asyncio.to_thread(_converse, process)
    assert answers == [ANSWER] * TURNS
    assert [len(r.json["messages"]) for r in server.requests] == [1, 3, 5]  # the whole history every turn


def _converse(process: LineProcess) -> list[str]:
    with process:
        process.say("/new")
        return [str(process.say(user_text(turn)).get("text")) for turn in range(TURNS)]


def test_modelbot_chat_runs_right_after_the_floor() -> None:
    # The targets compare these two: a slow stretch of the machine must fall on both or on neither.
    async def step(turns: int) -> tuple[float, float]:
        return 0.0, 0.0

    steps = dict.fromkeys(("floor", "sdk", "pipeline", CHAT, "anthropic floor"), step)
    order = [name for name, _ in run_order(steps, floor="floor")]
    assert order == ["floor", CHAT, "sdk", "pipeline", "anthropic floor"]
    assert sorted(order) == sorted(steps)


async def test_the_benchmarks_provider_answers_without_keeping_requests() -> None:
    # Kept requests (whole histories) made the long-running bench server's garbage collection stall answers.
    async with (
        FakeProviderServer(default=ok(ANSWER), record=False) as server,
        aiohttp.ClientSession() as session,
    ):
        floor = Floor(server.base_url, session)
        assert [await floor.ask(user_text(turn)) for turn in range(TURNS)] == [ANSWER] * TURNS
    assert server.requests == []
