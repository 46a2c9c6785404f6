"""Start-up of the ``modelbot`` command line against ``python -c pass``: wall and CPU of whole processes.

Each command runs ``--runs`` times in a fresh process (interleaved, so load hits all alike) and the medians are
compared. ``modelbot chat`` is timed from its start to its first answer on the built-in demo provider.
Used by ``bench.conversation``; also runnable alone: ``.venv/bin/python -m bench.startup``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import machine, median, verdict

HELP_TARGET = 5.0  # × python -c pass
LIST_TARGET = 10.0
FIRST_ANSWER_TARGET_S = 0.5


@dataclass
class Timing:
    """Wall and CPU seconds of each run of one command."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def wall_ms(self) -> float:
        return median(self.wall) * 1000

    @property
    def cpu_ms(self) -> float:
        return median(self.cpu) * 1000


def _script(name: str) -> str:
    """The console script installed beside this interpreter (``.venv/bin/modelbot``)."""
    return str(Path(sys.executable).parent / name)


def _finish(
    proc: subprocess.Popen[bytes], started: float, timing: Timing, *, wall: float | None = None
) -> None:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
    timing.wall.append(time.perf_counter() - started if wall is None else wall)
    timing.cpu.append(usage.ru_utime + usage.ru_stime)


def run_command(argv: list[str], env: dict[str, str], timing: Timing) -> None:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _finish(proc, started, timing)


def first_answer(env: dict[str, str], timing: Timing) -> None:
    """``modelbot chat`` on a pipe: from the process's start to its first reply line (wall), then EOF."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [_script("modelbot"), "chat", "--json"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(b"hello\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    wall = time.perf_counter() - started
    if b'"demo/' not in line:
        raise RuntimeError(f"modelbot chat answered {line!r}")
    proc.stdin.close()
    proc.stdout.read()
    proc.stdout.close()
    _finish(proc, started, timing, wall=wall)


def measure(runs: int) -> dict[str, Timing]:
    """Every command ``runs`` times, interleaved, each on a fresh state dir without a config (the demo)."""
    timings = {name: Timing() for name in ("pass", "help", "list", "chat")}
    with tempfile.TemporaryDirectory(prefix="modelbot-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env["MODELBOT_STATE_DIR"] = tmp
        # An installed modelbot is byte-compiled (pip does it); a source tree run with
        # PYTHONDONTWRITEBYTECODE (as on this project's VMs) would compile its ~90 modules on every start.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        steps: dict[str, Callable[[Timing], None]] = {
            "pass": lambda t: run_command([sys.executable, "-c", "pass"], env, t),
            "help": lambda t: run_command([_script("modelbot"), "--help"], env, t),
            "list": lambda t: run_command([_script("modelbot"), "models", "list"], env, t),
            "chat": lambda t: first_answer(env, t),
        }
        for step in steps.values():  # warm the file cache (and create the state dir's files)
            step(Timing())
        for _ in range(runs):
            for name, step in steps.items():
                step(timings[name])
    return timings


def report(timings: dict[str, Timing]) -> list[str]:
    """The start-up table and its verdicts, as lines."""
    base = timings["pass"]
    rows = [
        ("python -c pass", base),
        ("modelbot --help", timings["help"]),
        ("modelbot models list", timings["list"]),
        ("modelbot chat, to its first demo answer", timings["chat"]),
    ]
    lines = [f"  {'command':<42} {'wall ms':>8} {'CPU ms':>8} {'wall / pass':>12}"]
    for name, timing in rows:
        lines.append(
            f"  {name:<42} {timing.wall_ms:8.1f} {timing.cpu_ms:8.1f} {timing.wall_ms / base.wall_ms:11.1f}×"
        )
    help_ratio = timings["help"].wall_ms / base.wall_ms
    list_ratio = timings["list"].wall_ms / base.wall_ms
    first_s = timings["chat"].wall_ms / 1000
    lines += [
        f"  modelbot --help {help_ratio:.1f}× python -c pass ≤ {HELP_TARGET:g}×: {verdict(help_ratio <= HELP_TARGET)}",
        f"  modelbot models list {list_ratio:.1f}× ≤ {LIST_TARGET:g}×: {verdict(list_ratio <= LIST_TARGET)}",
        f"  modelbot chat's first demo answer after {first_s:.2f} s ≤ {FIRST_ANSWER_TARGET_S:g} s: "
        f"{verdict(first_s <= FIRST_ANSWER_TARGET_S)}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="Start-up of the modelbot command line.")
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    args = parser.parse_args()
    print("modelbot start-up benchmark")
    print(f"  machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    print("\n".join(report(measure(args.runs))))


if __name__ == "__main__":
    main()
