"""What the openai SDK's ways of sending one streamed request cost against the raw HTTP floor (CPU and wall per call).

A 60-turn conversation's request (121 messages, the body built once by hand) goes to the loopback fake provider
(20 ms to the first byte) five ways: the floor (aiohttp); the SDK's low-level ``post`` with the raw response,
over its aiohttp transport (how ``bot/providers`` sends) and over its default httpx2 transport; and ``post`` with
the SDK's own ``AsyncStream`` decoder (a typed chunk per event) on both transports. Variants alternate over four
rounds of 30 calls after a warm-up. Run: ``.venv/bin/python -m bench.sdk_paths`` (about 30 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx2
import openai
from openai import AsyncStream
from openai.types.chat import ChatCompletionChunk

from bench import machine
from bench.conversation import user_text
from bench.floor import ANSWER, KEY, MODEL

Call = Callable[[], Awaitable[None]]
CALLS, ROUNDS, TURNS = 30, 4, 60


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def body() -> bytes:
    messages = []
    for turn in range(TURNS):
        messages += [{"role": "user", "content": user_text(turn)}, {"role": "assistant", "content": ANSWER}]
    messages.append({"role": "user", "content": user_text(TURNS)})
    return json.dumps({"model": MODEL, "messages": messages, "stream": True}).encode()


def variants(
    base_url: str, session: aiohttp.ClientSession, sdks: dict[str, openai.AsyncOpenAI]
) -> dict[str, Call]:
    payload = body()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    async def floor() -> None:
        async with session.post(f"{base_url}/v1/chat/completions", data=payload, headers=headers) as response:
            async for _ in response.content:
                pass

    def raw(sdk: openai.AsyncOpenAI) -> Call:
        async def call() -> None:
            response = await sdk.post(
                "/chat/completions", cast_to=httpx2.Response, content=payload, stream=True
            )
            async for _ in response.aiter_bytes():
                pass
            await response.aclose()

        return call

    def typed(sdk: openai.AsyncOpenAI) -> Call:
        async def call() -> None:
            stream = await sdk.post(
                "/chat/completions",
                cast_to=ChatCompletionChunk,
                content=payload,
                stream=True,
                stream_cls=AsyncStream[ChatCompletionChunk],
            )
            async for _ in stream:
                pass

        return call

    return {
        "raw HTTP floor (aiohttp, body by hand)": floor,
        "SDK post, raw response, aiohttp transport": raw(sdks["aiohttp"]),
        "SDK post, raw response, httpx2 transport": raw(sdks["httpx2"]),
        "SDK post, AsyncStream, aiohttp transport": typed(sdks["aiohttp"]),
        "SDK post, AsyncStream, httpx2 transport": typed(sdks["httpx2"]),
    }


async def measure(base_url: str) -> dict[str, tuple[float, float]]:
    """CPU and wall seconds per call, by variant."""
    sdks = {
        "aiohttp": openai.AsyncOpenAI(
            api_key=KEY, base_url=f"{base_url}/v1", max_retries=0, http_client=openai.DefaultAioHttpClient()
        ),
        "httpx2": openai.AsyncOpenAI(api_key=KEY, base_url=f"{base_url}/v1", max_retries=0),
    }
    totals: dict[str, tuple[float, float]] = {}
    async with aiohttp.ClientSession() as session:
        calls = variants(base_url, session, sdks)
        for call in calls.values():
            for _ in range(5):
                await call()
        for round_number in range(ROUNDS):
            order = list(calls.items())
            for name, call in order if round_number % 2 == 0 else reversed(order):
                cpu, wall = cpu_s(), time.perf_counter()
                for _ in range(CALLS):
                    await call()
                spent_cpu, spent_wall = totals.get(name, (0.0, 0.0))
                totals[name] = (spent_cpu + cpu_s() - cpu, spent_wall + time.perf_counter() - wall)
    for sdk in sdks.values():
        await sdk.close()
    return {name: (c / (CALLS * ROUNDS), w / (CALLS * ROUNDS)) for name, (c, w) in totals.items()}


def main() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.serve_provider", "0.020", ANSWER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        results = asyncio.run(measure(server.stdout.readline().strip()))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
    print(f"openai SDK request paths, {TURNS}-turn history, {CALLS * ROUNDS} calls each")
    print(f"  machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    floor_cpu, floor_wall = next(iter(results.values()))
    print(f"  {'variant':<44} {'CPU ms':>7} {'wall ms':>8} {'CPU/floor':>9} {'wall/floor':>10}")
    for name, (cpu, wall) in results.items():
        print(
            f"  {name:<44} {cpu * 1000:7.2f} {wall * 1000:8.2f} {cpu / floor_cpu:8.2f}× {wall / floor_wall:9.2f}×"
        )


if __name__ == "__main__":
    main()
