"""Auth-store writes under the bot's own load: why the fsync of auth-profiles.json stays off the event loop.

While conversations run through ``ChatPipeline.handle`` on the SQLite store at a steady pace (as in
``bench.pipeline``'s paced run, at a fixed offered rate), a writer records a rate-limit failure in
auth-profiles.json many times a second, like a storm of 429s. Two passes with the same load, each on
sessions of its own:

1. **aupdate** — what the engine does on a failure: the temp file is written and renamed on the event loop,
   its fsync runs in a worker thread while the loop goes on.
2. **fsync on the loop** — the same steps with the fsync on the event loop too: what a write entirely on
   the loop would cost everyone else.

Printed per pass: the write's own latency (what a failover waits for), the event loop's lag (how late a
1 ms timer fires: every conversation waits that long), and the turns' overhead p99. The fsync of a small
file waits for ext4's journal, and so for whatever the process's SQLite writes left in it: its worst case,
not its median, is what the event loop must not see.

Run: ``.venv/bin/python -m bench.auth_writes [--seconds S] [--writes-per-s N] [--turns-per-s N]``.
No network; about 40 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from bench import machine, median, percentile
from bench.pipeline import Run, TimedClient, concurrent, populate, sequential, spread
from bot.app import App, build_app
from bot.auth import atomic_file, lockfile
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.doc_edits import with_failure
from bot.auth.store import FILE_MODE, AuthStore
from bot.auth.types import AuthProfiles
from bot.config.paths import auth_profiles_path
from bot.failover.reasons import Reason

STORM_PROFILE = "demo:storm"  # an id no turn uses: the turns' own rotation is not disturbed
TICK_S = 0.001
T = TypeVar("T")
WARM_UP_S = 3.0


@dataclass
class Pass:
    name: str
    writes: list[float] = field(default_factory=list)  # ms per write, as its caller waited
    on_loop: list[float] = field(default_factory=list)  # ms of each write spent running on the event loop
    lag: list[float] = field(default_factory=list)  # ms the 1 ms timer fired late
    overhead: list[float] = field(default_factory=list)  # ms per turn beyond the provider's own time


async def write_on_loop(store: AuthStore, fn: Callable[[AuthProfiles], AuthProfiles]) -> None:
    """``aupdate`` with its fsync on the event loop (the store's private steps, for this comparison only);
    like ``aupdate``, a held lock is waited for in a thread."""
    lock = lockfile.try_lock(store.lock_path, mode=FILE_MODE)
    if lock is None:
        await asyncio.to_thread(store.update, fn, sync_dir=False)
        return
    try:
        store._apply(fn, sync_dir=False)
    finally:
        lockfile.unlock(lock)


class LoopTime:
    """Adds up the time a coroutine's steps run on the event loop, i.e. what every other conversation waits
    for (``time_installs`` adds the loop callbacks a write starts)."""

    def __init__(self) -> None:
        self.ms = 0.0

    def add(self, started: float) -> None:
        self.ms += (time.perf_counter() - started) * 1000

    def run(self, coro: Coroutine[Any, Any, T]) -> Generator[Any, Any, T]:
        steps = coro.__await__()
        value: Any = None
        error: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                yielded = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as done:
                self.add(started)
                return cast(T, done.value)
            self.add(started)
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # handed to the coroutine, as asyncio would
                value, error = None, exc


class Timed(Generic[T]):
    """An awaitable that runs ``coro`` under ``timer``."""

    def __init__(self, timer: LoopTime, coro: Coroutine[Any, Any, T]) -> None:
        self._timer, self._coro = timer, coro

    def __await__(self) -> Generator[Any, Any, T]:
        return self._timer.run(self._coro)


def time_installs(timer: list[LoopTime | None]) -> None:
    """The rename and unlock of an ``aupdate`` run in a loop callback, outside the coroutine's steps: add
    them to ``timer[0]`` while it is set. Only the write holding the lock can install, so it is that one."""
    install = atomic_file.install

    def timed_install(staged: atomic_file.Staged) -> atomic_file.FileKey:
        started = time.perf_counter()
        try:
            return install(staged)
        finally:
            if timer[0] is not None and threading.current_thread() is threading.main_thread():
                timer[0].add(started)  # not when a contended write installed from a worker thread

    atomic_file.install = timed_install


async def storm(
    store: AuthStore,
    app: App,
    per_s: float,
    *,
    on_loop: bool,
    stop: asyncio.Event,
    into: Pass,
    current: list[LoopTime | None],
) -> None:
    policy = CooldownPolicy()
    while not stop.is_set():
        timer = LoopTime()
        started = time.perf_counter()
        now_ms = app.clock.now_ms()
        if on_loop:
            apply = with_failure(
                STORM_PROFILE,
                Reason.RATE_LIMIT,
                provider="demo",
                now_ms=now_ms,
                policy=policy,
                model=None,
                retry_after_ms=None,
            )
            await Timed(timer, write_on_loop(store, apply))
        else:
            current[0] = timer  # the inline variant's install runs inside its timed steps already
            try:
                await Timed(
                    timer,
                    store.arecord_failure(
                        STORM_PROFILE, Reason.RATE_LIMIT, provider="demo", now_ms=now_ms, policy=policy
                    ),
                )
            finally:
                current[0] = None
        into.writes.append((time.perf_counter() - started) * 1000)
        into.on_loop.append(timer.ms)
        await asyncio.sleep(1 / per_s)


async def ticker(stop: asyncio.Event, into: Pass) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(TICK_S)
        into.lag.append((time.perf_counter() - started - TICK_S) * 1000)


async def one_slice(
    app: App,
    store: AuthStore,
    args: argparse.Namespace,
    into: Pass | None,
    *,
    on_loop: bool,
    offset: int,
    current: list[LoopTime | None],
) -> None:
    """Half a pass of paced conversations, with the storm of writes beside them (none for the warm-up)."""
    stop = asyncio.Event()
    side = []
    if into is not None:
        side = [
            asyncio.ensure_future(
                storm(store, app, args.writes_per_s, on_loop=on_loop, stop=stop, into=into, current=current)
            ),
            asyncio.ensure_future(ticker(stop, into)),
        ]
    try:
        run: Run = await concurrent(
            app,
            "paced",
            spread(args.conversations, args.sessions, offset),
            seconds=args.seconds / 2 if into is not None else WARM_UP_S,
            mean_think_s=args.conversations / args.turns_per_s,
            seed=offset,
        )
    finally:
        stop.set()
        await asyncio.gather(*side)
    if into is not None:
        into.overhead.extend(run.overhead)


def spread_of(samples: list[float]) -> str:
    return f"p50 {median(samples):5.2f} p99 {percentile(samples, 99):6.2f} max {max(samples):6.2f}"


def describe(p: Pass) -> str:
    return (
        f"  {p.name:<17} {len(p.writes):5d} writes | a write takes {spread_of(p.writes)} ms,"
        f" of which on the loop {spread_of(p.on_loop)} ms\n"
        f"  {'':<17} loop lag p99 {percentile(p.lag, 99):5.2f} max {max(p.lag):6.2f} ms |"
        f" {len(p.overhead)} turns, overhead p99 {percentile(p.overhead, 99):5.2f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    ours, inline = Pass("aupdate"), Pass("fsync on the loop")
    with tempfile.TemporaryDirectory(prefix="modelbot-bench-") as tmp:
        app = build_app(env={"MODELBOT_STATE_DIR": tmp})
        app.clients["demo"] = TimedClient(app.clients["demo"])
        await app.start()
        try:
            await populate(app, args.sessions, app.clock.now_ms())
            store = AuthStore(auth_profiles_path(Path(tmp)))  # a second handle on the bot's own file
            current: list[LoopTime | None] = [None]
            time_installs(current)
            await sequential(app, spread(20, args.sessions, 7), 3)
            await one_slice(
                app, store, args, None, on_loop=False, offset=5, current=current
            )  # the first seconds stall most
            # A B B A: drift over the run (WAL size, checkpoints, compactions) hits both passes alike.
            for offset, into in enumerate((ours, inline, inline, ours), start=11):
                await one_slice(
                    app, store, args, into, on_loop=into is inline, offset=offset, current=current
                )
        finally:
            await app.stop()
    print("modelbot auth-store writes under load (auth-profiles.json on the state dir's file system)")
    print(f"  machine: {machine()}; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(
        f"  {args.conversations} conversations offering {args.turns_per_s:g} turns/s through ChatPipeline.handle"
        f" on SQLite ({args.sessions} stored sessions); a failure written {args.writes_per_s:g} times a second;"
        f" {args.seconds:g} s per pass, in two halves (A B B A)"
    )
    print(describe(ours))
    print(describe(inline))
    print(
        f"  the fsync in a thread: each write takes {median(ours.writes) - median(inline.writes):+.2f} ms (p50) and"
        f" holds the event loop {max(ours.on_loop):.2f} ms at most, against {max(inline.on_loop):.2f} ms with the"
        " whole write on the loop"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="auth-profiles.json writes under the pipeline's load.")
    parser.add_argument("--sessions", type=int, default=10_000, help="stored sessions (default 10000)")
    parser.add_argument("--conversations", type=int, default=200, help="paced conversations (200)")
    parser.add_argument("--turns-per-s", type=float, default=250.0, help="turns offered per second (250)")
    parser.add_argument("--writes-per-s", type=float, default=100.0, help="failures written per second (100)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each pass (15)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
