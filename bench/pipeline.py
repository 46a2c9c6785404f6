"""Pipeline benchmark: turns per second through ``ChatPipeline.handle`` on the demo provider, SQLite store.

The bot is wired by ``build_app`` as ``modelbot chat`` wires it without a config (built-in demo provider,
SQLite in the state dir, auth-profiles.json), in a temp state dir holding 10 000 stored sessions (two
messages each, inserted in batches through the store's own engine factory and tables).

Four runs, each on sessions of its own, all Telegram direct messages:

1. **throughput** — 200 conversations at once, each sending its next message as soon as the previous answer
   is back (closed loop, no think time; the next message arrives as a new event, as from a chat platform),
   for a fixed time: turns per second at saturation. Every session here reaches its compaction threshold
   in the same second, so the run includes a burst of 200 compactions. Latency there is mostly waiting for
   the event loop (Little's law: 200 in flight / throughput); it is shown, not judged.
2. **paced** — the same number of conversations, each pausing a random time between its messages so that
   together they offer a fixed 300 turns/s (1.5 messages a second from each, far more than people type): the
   per-turn overhead under concurrent load, judged against the p99 target. 300 turns/s is the load issue 3
   judged it at (half of the capacity measured then); a fixed rate keeps the verdict about the bot's own cost,
   not about a capacity that moves with the machine's speed from one run to the next.
3. **half capacity** — the same again at half of run 1's measured capacity (shown, not judged). Arrivals are
   random, so turns come in bursts, and the tail grows with the load as queueing theory says: a burst of k turns
   arriving together ends k turns' work later for the last of them.
4. **sequential** — one turn at a time: the pipeline's own cost per turn, with no one else to wait for.

Per-turn overhead = wall time of ``handle`` minus the time spent inside the provider's stream (measured by
wrapping the demo client). Peak RSS is ``ru_maxrss`` of this process, which has imported what ``modelbot chat``
on the demo imports; a bot with real providers also loads their HTTP clients, whose size is printed beside it.

Run: ``.venv/bin/python -m bench.pipeline [--sessions N] [--conversations N] [--seconds S]``. No network;
about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from bench import machine, median, peak_rss_mb, percentile, verdict
from bot.app import App, build_app, freeze_startup_heap
from bot.chat import Incoming
from bot.config.paths import default_database_url
from bot.providers.base import ChatRequest, Endpoint, ProviderClient, ResolvedAuth
from bot.store import rows
from bot.store.engine import make_engine
from bot.store.tables import messages, sessions
from bot.store.types import NewMessage

THROUGHPUT_TARGET = 500.0  # turns/s
P99_TARGET_MS = 5.0
RSS_TARGET_MB = 150.0
BATCH = 1_000
PACED_RATE = 300.0  # turns/s the paced run offers (see the docstring)
HALF = 0.5  # share of the measured capacity the last concurrent run offers
EARLIER_EXCHANGE = (
    NewMessage("user", "hello", (), 6),
    NewMessage("assistant", "[demo] Hello! (stored before the benchmark)", (), 15),
)

# The provider time of the turn running in this context; the pipeline's turn task inherits the list.
_provider_ms: ContextVar[list[float] | None] = ContextVar("provider_ms", default=None)


class TimedClient:
    """Wraps a provider client and adds the time spent producing each delta to the current turn's total."""

    def __init__(self, inner: ProviderClient) -> None:
        self._inner = inner

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        bucket = _provider_ms.get()
        deltas = self._inner.stream(endpoint, auth, request).__aiter__()
        while True:
            started = time.perf_counter()
            try:
                text = await deltas.__anext__()
            except StopAsyncIteration:
                return
            finally:
                if bucket is not None:
                    bucket[0] += (time.perf_counter() - started) * 1000
            yield text

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Run:
    """One benchmark run: per-turn wall time and overhead (ms), failed turns, and how long it took."""

    name: str
    latency: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0

    @property
    def turns(self) -> int:
        return len(self.latency)

    @property
    def rate(self) -> float:
        return self.turns / self.wall_s if self.wall_s else 0.0


def chat_id(index: int) -> str:
    return str(100_000 + index)


def message(chat: str, number: int) -> Incoming:
    text = f"Message {number} from chat {chat}: what would you suggest for dinner tonight?"
    return Incoming(platform="telegram", chat_id=chat, user_id=chat, user_name=f"user{chat}", text=text)


async def populate(app: App, count: int, now_ms: int) -> float:
    """``count`` Telegram direct-message sessions with a short exchange each; returns the seconds taken."""
    started = time.perf_counter()
    url = app.loaded.config.storage.url or default_database_url(app.paths.state_dir)
    pipeline = app.chat()
    engine = make_engine(url)
    try:
        for first in range(0, count, BATCH):
            chats = [chat_id(i) for i in range(first, min(first + BATCH, count))]
            keys = [pipeline.session_key(message(chat, 0)) for chat in chats]
            session_rows = [
                {
                    **rows.new_session(
                        key,
                        agent_id="main",
                        platform="telegram",
                        chat_id=chat,
                        user_id=chat,
                        thread_id=None,
                        now_ms=now_ms,
                    ),
                    "message_count": len(EARLIER_EXCHANGE),
                }
                for key, chat in zip(keys, chats, strict=True)
            ]
            message_rows = [
                rows.message_values(key, stored, now_ms) for key in keys for stored in EARLIER_EXCHANGE
            ]
            async with engine.begin() as conn:
                await conn.execute(sessions.insert(), session_rows)
                await conn.execute(messages.insert(), message_rows)
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def one_turn(app: App, msg: Incoming, run: Run) -> None:
    bucket = [0.0]
    token = _provider_ms.set(bucket)
    started = time.perf_counter()
    try:
        replies = await app.chat().handle(msg)
    finally:
        _provider_ms.reset(token)
    elapsed = (time.perf_counter() - started) * 1000
    if replies[0].kind != "answer":
        run.errors[replies[0].text] += 1
        return
    run.latency.append(elapsed)
    run.overhead.append(elapsed - bucket[0])


async def concurrent(
    app: App, name: str, chats: list[str], *, seconds: float, mean_think_s: float | None, seed: int
) -> Run:
    """Every conversation sends messages until ``seconds`` have passed; pauses ~``mean_think_s`` between."""
    run = Run(name)
    rng = random.Random(seed)
    deadline = time.perf_counter() + seconds

    async def talk(chat: str) -> None:
        if mean_think_s is not None:  # start spread out, as people do, not all in the same millisecond
            await asyncio.sleep(rng.uniform(0, mean_think_s))
        number = 0
        while time.perf_counter() < deadline:
            number += 1
            await one_turn(app, message(chat, number), run)
            if mean_think_s is None:
                # The next message arrives as a new event, as from a chat platform. A turn on the demo may
                # never suspend, so without this one conversation would hold the loop to the deadline.
                await asyncio.sleep(0)
                continue
            # A person reading the answer and typing the next message (a load model, not a wait).
            think = rng.uniform(0.5, 1.5) * mean_think_s
            if time.perf_counter() + think >= deadline:
                return
            await asyncio.sleep(think)

    started = time.perf_counter()
    await asyncio.gather(*(talk(chat) for chat in chats))
    run.wall_s = time.perf_counter() - started
    return run


async def sequential(app: App, chats: list[str], turns: int) -> Run:
    run = Run("sequential")
    started = time.perf_counter()
    for chat in chats:
        for number in range(1, turns + 1):
            await one_turn(app, message(chat, number), run)
    run.wall_s = time.perf_counter() - started
    return run


def spread(count: int, among: int, offset: int) -> list[str]:
    """``count`` chat ids spread evenly over the ``among`` stored sessions."""
    step = max(1, among // count)
    return [chat_id((offset + i * step) % among) for i in range(count)]


def describe(run: Run) -> str:
    line = (
        f"  {run.name:<10} {run.turns:5d} turns in {run.wall_s:5.1f} s = {run.rate:6.1f} turns/s | "
        f"latency p50 {median(run.latency):7.2f} p99 {percentile(run.latency, 99):7.2f} ms | "
        f"overhead p50 {median(run.overhead):6.2f} p99 {percentile(run.overhead, 99):6.2f} ms"
    )
    for text, count in run.errors.items():
        line += f"\n    FAILED {count} turn(s): {text}"
    return line


async def measure(app: App, args: argparse.Namespace) -> tuple[list[Run], int, float]:
    populated_s = await populate(app, args.sessions, app.clock.now_ms())
    stored = await app.store.count_sessions()
    # Warm-up on sessions of its own: first calls, demo:busy's scripted 429, caches, pooled connections.
    await sequential(app, spread(20, args.sessions, 7), 3)
    freeze_startup_heap()  # as `modelbot run` does once its channels are up
    saturated = await concurrent(
        app,
        "throughput",
        spread(args.conversations, args.sessions, 0),
        seconds=args.seconds,
        mean_think_s=None,
        seed=1,
    )
    paced = await concurrent(
        app,
        "paced",
        spread(args.conversations, args.sessions, 13),
        seconds=args.seconds,
        mean_think_s=args.conversations / PACED_RATE,
        seed=2,
    )
    half = await concurrent(
        app,
        "half cap.",
        spread(args.conversations, args.sessions, 17),
        seconds=args.seconds,
        mean_think_s=args.conversations / (HALF * saturated.rate),
        seed=3,
    )
    alone = await sequential(app, spread(20, args.sessions, 29), 15)
    return [saturated, paced, half, alone], stored, populated_s


async def main(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="modelbot-bench-") as tmp:
        # No config file and no keys: the built-in demo default, as on a fresh machine.
        app = build_app(env={"MODELBOT_STATE_DIR": tmp})
        # Only the demo client answers here; the others would import their HTTP stack for nothing.
        app.clients["demo"] = TimedClient(app.clients["demo"])  # the engines share this mapping
        await app.start()
        await app.store.warm()  # as `modelbot run` does before it serves chats
        rss_started = peak_rss_mb()
        try:
            runs, stored, populated_s = await measure(app, args)
        finally:
            await app.stop()
    saturated, paced, half, alone = runs
    rss = peak_rss_mb()
    http_mb = provider_clients_import_mb()
    p99 = percentile(paced.overhead, 99)
    print("modelbot pipeline benchmark (ChatPipeline.handle, demo provider, SQLite in a temp state dir)")
    print(f"  machine: {machine()}; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(
        f"  {stored} stored sessions (inserted in {populated_s:.1f} s); {args.conversations} concurrent "
        f"conversations; the paced run offers {PACED_RATE:.0f} turns/s, the next {HALF:.0%} of the measured "
        "capacity"
    )
    for run in runs:
        print(describe(run))
    print(f"  peak RSS {rss:.1f} MB (after start-up, before the sessions: {rss_started:.1f} MB)")
    print(
        f"  the provider clients (the openai and anthropic SDKs, aiohttp), which a bot with real providers "
        f"imports, add {http_mb:.0f} MB"
    )
    print("Targets")
    print(
        f"  throughput {saturated.rate:.0f} turns/s ≥ {THROUGHPUT_TARGET:.0f}: "
        f"{verdict(saturated.rate >= THROUGHPUT_TARGET)}"
    )
    print(
        f"  p99 overhead {p99:.2f} ms (paced, {args.conversations} conversations) ≤ {P99_TARGET_MS:g} ms: "
        f"{verdict(p99 <= P99_TARGET_MS)} (at {half.rate:.0f} turns/s, half the capacity: "
        f"{percentile(half.overhead, 99):.2f} ms, shown, not judged; sequential {percentile(alone.overhead, 99):.2f} ms)"
    )
    print(f"  peak RSS {rss:.0f} MB ≤ {RSS_TARGET_MB:.0f} MB: {verdict(rss <= RSS_TARGET_MB)}")
    failed = sum(sum(run.errors.values()) for run in runs)
    if failed:
        print(f"  {failed} turn(s) FAILED (see above)")


def provider_clients_import_mb() -> float:
    """What importing both provider clients (and so both SDKs and aiohttp) adds to this process's resident memory."""
    before = current_rss_mb()
    for module in ("bot.providers.anthropic_client", "bot.providers.openai_client"):
        importlib.import_module(module)  # measured on purpose, after the runs

    return current_rss_mb() - before


def current_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Turns per second through the whole chat pipeline.")
    parser.add_argument("--sessions", type=int, default=10_000, help="stored sessions (default 10000)")
    parser.add_argument("--conversations", type=int, default=200, help="concurrent conversations (200)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each concurrent run (15)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
