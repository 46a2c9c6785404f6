"""Conversation benchmark: what a turn costs against the raw HTTP floor, side by side in one run; CLI start-up.

One loopback OpenAI-compatible server (``tests/fakes/provider_server.py`` in a process of its own, so its CPU is
not counted, answering each request after 20 ms and streaming a 12-word answer) serves conversations of 20, 60
and 200 turns in which every turn sends the whole history so far. Each client runs the same conversations:

- **floor**: aiohttp, the JSON body built by hand (``json.dumps``), the SSE lines split by hand;
- **floor in a process**: the same client in a process of its own driven line by line through two pipes as
  ``modelbot chat`` is (``bench.floor_process``): what that boundary alone costs a turn;
- **openai SDK**: ``AsyncOpenAI.chat.completions.create(stream=True)``;
- **LiteLLM**: ``Router.acompletion(stream=True)``, when ``litellm`` is installed (it is not a dependency);
- **provider path**: modelbot's ``OpenAICompletionsClient.stream`` alone (the body built once from our types,
  ``AsyncOpenAI.post(…, cast_to=httpx2.Response, stream=True)`` over the SDK's aiohttp transport, our SSE decoder);
- **Engine.run**: the failover engine as ``build_app`` wires it (auth backend, rotation) around that client;
- **pipeline in-process**: what ``modelbot chat`` runs per line (console adapter, ``ChatPipeline``, the SQLite
  store), in this process: the rows so far show where a turn's cost goes;
- **modelbot chat**: the real ``modelbot chat --json`` process (SQLite store in a temp state dir) fed one line
  per turn, its CPU read from ``/proc/<pid>/task/*/schedstat``.

A second table does the same for the Anthropic Messages API on the same server, in the same rounds: its own floor
(aiohttp, the body by hand), ``AsyncAnthropic.messages.create(stream=True)``, and modelbot's
``AnthropicMessagesClient.stream`` (``bench.anthropic_clients``). The issue's targets are judged on the first.

Wall and CPU are per turn, averaged over the conversation; CPU is the client process's (user + system). Clients
alternate A B … B A over ``--rounds`` rounds so that load from other processes hits all alike, ``modelbot chat``
right beside the floor (the pair the targets compare); ratios compare figures of one run. Then ``bench.startup``
times ``modelbot --help``, ``models list`` and ``chat``.

Run: ``.venv/bin/python -m bench.conversation [--rounds N]``. Loopback only; about three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import machine, verdict
from bench.anthropic_clients import make_anthropic_clients
from bench.chat_process import ChatProcess, FloorProcess, LineProcess
from bench.clients import make_clients
from bench.floor import ANSWER, MODEL, Client
from bench.startup import measure as measure_startup
from bench.startup import report as startup_report

TURNS = (20, 60, 200)
LATENCY_S = 0.020
WALL_TARGET = 1.10  # modelbot chat at 60 turns, × the floor
CPU_TARGET = 3.0
GROWTH_TARGET = 1.5  # chat CPU per turn at 200 turns, × at 60
CHAT = "modelbot chat (whole pipeline, SQLite)"
FLOOR_PROCESS = "raw HTTP floor in its own process, behind pipes"


def user_text(turn: int) -> str:
    return (
        f"Question {turn}: what can you tell me about the number {turn}? Please answer in one short sentence."
    )


@dataclass
class Sample:
    """Summed over the runs of one (client, conversation length)."""

    turns: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def add(self, turns: int, wall_s: float, cpu_s: float) -> None:
        self.turns += turns
        self.wall_s += wall_s
        self.cpu_s += cpu_s

    @property
    def wall_ms(self) -> float:
        return self.wall_s * 1000 / self.turns

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s * 1000 / self.turns


@dataclass
class Results:
    samples: dict[tuple[str, int], Sample] = field(default_factory=dict)
    # Wall seconds per turn of each round's conversation, by (client, turns): the spread between rounds.
    rounds: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def sample(self, client: str, turns: int) -> Sample:
        return self.samples.setdefault((client, turns), Sample())


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def converse(client: Client, turns: int) -> tuple[float, float]:
    """One conversation of ``turns`` turns in this process: its wall and CPU seconds."""
    await client.reset()
    cpu, started = own_cpu_s(), time.perf_counter()
    for turn in range(turns):
        answer = await client.ask(user_text(turn))
        if answer != ANSWER:
            raise RuntimeError(f"{client.name} answered {answer!r}")
    return time.perf_counter() - started, own_cpu_s() - cpu


def driven_conversation(process: LineProcess, turns: int) -> tuple[float, float]:
    """One conversation through a process driven line by line (``modelbot chat``, the floor behind pipes):
    ``/new``, then ``turns`` lines; wall and CPU of the turns."""
    process.say("/new")
    cpu, wall = process.cpu_s(), 0.0
    for turn in range(turns):
        started = time.perf_counter()
        reply = process.say(user_text(turn))
        wall += time.perf_counter() - started
        if reply.get("text") != ANSWER:
            raise RuntimeError(f"{process.name} answered {reply!r}")
    return wall, process.cpu_s() - cpu


async def measure(base_url: str, rounds: int) -> tuple[Results, list[str], list[str], list[str]]:
    """Every client's conversations of each length, ``rounds`` times; the OpenAI-compatible clients' names and
    the Anthropic ones' (each list's floor first), and a note for each client that could not run."""
    results = Results()
    with (
        tempfile.TemporaryDirectory(prefix="modelbot-bench-") as tmp,
        tempfile.TemporaryDirectory(prefix="modelbot-bench-") as own,
    ):
        # The chat process and this process's own bot keep their state (SQLite, auth) apart.
        config = ChatProcess(base_url, MODEL, Path(own)).config
        async with AsyncExitStack() as stack:
            clients, missing = await make_clients(base_url, stack, config)
            anthropic = _steps(await make_anthropic_clients(base_url, stack))
            with ChatProcess(base_url, MODEL, Path(tmp)) as chat, FloorProcess(base_url) as floor_process:
                in_process = _steps(clients)
                floor, *others = in_process
                openai = {
                    floor: in_process[floor],
                    FLOOR_PROCESS: _driven(floor_process),
                    **{name: in_process[name] for name in others},
                    CHAT: _driven(chat),
                }
                steps = {**openai, **anthropic}
                for step in steps.values():  # warm-up: connections, imports, caches, the SQLite files
                    await step(5)
                order = run_order(steps, floor=floor)
                for round_number in range(rounds):
                    for turns in TURNS:
                        for name, step in order if round_number % 2 == 0 else reversed(order):
                            wall, cpu = await step(turns)
                            results.sample(name, turns).add(turns, wall, cpu)
                            results.rounds.setdefault((name, turns), []).append(wall / turns)
    return results, list(openai), list(anthropic), missing


Step = Callable[[int], Awaitable[tuple[float, float]]]


def run_order(steps: Mapping[str, Step], *, floor: str) -> list[tuple[str, Step]]:
    """The clients in table order but for ``modelbot chat``, which runs right after the floor (right before
    it in the reversed rounds): the pair the targets compare then shares the same seconds of the machine, where
    eight conversations apart a slow stretch of this VM could fall on one of them only."""
    order = [(name, step) for name, step in steps.items() if name != CHAT]
    at = [name for name, _ in order].index(floor) + 1
    return [*order[:at], (CHAT, steps[CHAT]), *order[at:]]


def _steps(clients: list[Client]) -> dict[str, Step]:
    """One conversation of n turns in this process, by client name."""

    def in_process(client: Client) -> Step:
        return lambda turns: converse(client, turns)

    return {client.name: in_process(client) for client in clients}


def _driven(process: LineProcess) -> Step:
    async def conversation(turns: int) -> tuple[float, float]:
        return driven_conversation(process, turns)

    return conversation


def report(
    results: Results,
    *,
    names: list[str],
    anthropic: list[str],
    missing: list[str],
    load_before: tuple[float, ...],
    args: argparse.Namespace,
) -> None:
    floor_name = names[0]
    print("modelbot conversation benchmark (one loopback OpenAI-compatible server, 20 ms to the first byte)")
    print(f"  machine: {machine()}; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"  {args.rounds} rounds, clients alternating; every turn sends the whole history so far")
    for note in missing:
        print(f"  {note}")
    _table(results, names)
    print("\n  The Anthropic Messages API on the same server, in the same rounds (its own floor):")
    _table(results, anthropic)
    floor60, chat60, chat200 = (
        results.sample(floor_name, 60),
        results.sample(CHAT, 60),
        results.sample(CHAT, 200),
    )
    wall_ratio, cpu_ratio = chat60.wall_ms / floor60.wall_ms, chat60.cpu_ms / floor60.cpu_ms
    growth = chat200.cpu_ms / chat60.cpu_ms
    per_round = ", ".join(
        f"{chat / floor:.2f}×"
        for floor, chat in zip(results.rounds[(floor_name, 60)], results.rounds[(CHAT, 60)], strict=True)
    )
    print("\nTargets")
    print(
        f"  modelbot chat at 60 turns: wall {wall_ratio:.2f}× floor ≤ {WALL_TARGET:g}×: {verdict(wall_ratio <= WALL_TARGET)}"
        f" (round by round: {per_round})"
    )
    print(
        f"  modelbot chat at 60 turns: CPU {cpu_ratio:.2f}× floor ≤ {CPU_TARGET:g}×: {verdict(cpu_ratio <= CPU_TARGET)}"
    )
    print(
        f"  modelbot chat CPU per turn at 200 turns {growth:.2f}× its value at 60 ≤ {GROWTH_TARGET:g}×: "
        f"{verdict(growth <= GROWTH_TARGET)}"
    )
    piped = results.sample(FLOOR_PROCESS, 60)
    print(
        f"  (no target) at 60 turns, the floor behind the same two pipes costs {piped.wall_ms / floor60.wall_ms:.2f}× "
        f"the floor's wall, {piped.cpu_ms / floor60.cpu_ms:.2f}× its CPU; modelbot chat against it: wall "
        f"{chat60.wall_ms / piped.wall_ms:.2f}×, CPU {chat60.cpu_ms / piped.cpu_ms:.2f}×"
    )


def _table(results: Results, names: list[str]) -> None:
    """Per turn, each client against the first (the floor), at each conversation length."""
    print(
        f"\n  {'turns':>5}  {'client':<50} {'wall ms':>8} {'CPU ms':>7} {'wall/floor':>10} {'CPU/floor':>9}"
    )
    for turns in TURNS:
        floor = results.sample(names[0], turns)
        for name in names:
            s = results.sample(name, turns)
            print(
                f"  {turns:5d}  {name:<50} {s.wall_ms:8.2f} {s.cpu_ms:7.2f} "
                f"{s.wall_ms / floor.wall_ms:9.2f}× {s.cpu_ms / floor.cpu_ms:8.2f}×"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description="A turn's cost against the raw HTTP floor; CLI start-up.")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over every client (default 2)")
    parser.add_argument("--startup-runs", type=int, default=7, help="runs per start-up command (default 7)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.serve_provider", str(LATENCY_S), ANSWER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        results, names, anthropic, missing = asyncio.run(
            measure(server.stdout.readline().strip(), args.rounds)
        )
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
    startup = measure_startup(args.startup_runs)
    report(results, names=names, anthropic=anthropic, missing=missing, load_before=load_before, args=args)
    print(
        f"\nStart-up (median of {args.startup_runs} runs each, fresh processes, no config: the built-in demo)"
    )
    print("\n".join(startup_report(startup)))
    print(f"  load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
