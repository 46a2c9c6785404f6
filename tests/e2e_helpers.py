"""Drive ``modelbot chat`` as a real subprocess: spawn it, send one line at a time, read its JSON replies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

# Generous on purpose: a cold start imports both provider SDKs, which takes seconds on a busy 2-core
# machine. These bound a hung process; nothing waits for them to elapse when the bot behaves.
STARTUP_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 30.0


def modelbot_command() -> list[str]:
    """The installed console script beside this interpreter, else the same entry point through ``-m``."""
    script = Path(sys.executable).with_name("modelbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's (already cleaned) environment plus ``extra``: state dir, keys the config refers to."""
    env = dict(os.environ)
    env.update(extra or {})
    env.pop("MODELBOT_CONFIG", None)
    return env


@dataclass(frozen=True)
class Finished:
    """A ``modelbot`` run that has exited."""

    returncode: int
    stdout: str
    stderr: str


def spawn_modelbot(args: Sequence[str], *, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start ``modelbot ARGS`` with text pipes; finish it with ``finish``."""
    return subprocess.Popen(
        [*modelbot_command(), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=dict(env),
    )


def finish(proc: subprocess.Popen[str], stdin: str = "") -> Finished:
    """Feed ``stdin`` (a batch of lines), wait for the exit, and collect the output."""
    try:
        stdout, stderr = proc.communicate(stdin, timeout=STARTUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return Finished(proc.returncode, stdout, stderr)


def run_modelbot(args: Sequence[str], *, stdin: str = "", env: Mapping[str, str]) -> Finished:
    """Run ``modelbot ARGS`` to completion with ``stdin`` as its input."""
    return finish(spawn_modelbot(args, env=env), stdin)


class ChatProcess:
    """``modelbot chat --json`` talking over pipes: ``send`` writes a line and returns the JSON reply.

    Replies are read one line per message, so the test can change the fake provider's script between two
    messages. stderr goes to a file (it is only read to explain a failure).
    """

    def __init__(self, proc: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self._proc = proc
        self._stderr_path = stderr_path
        self._replied = False

    @classmethod
    async def start(cls, *args: str, env: Mapping[str, str], stderr_path: Path) -> Self:
        """Spawn ``modelbot chat --json ARGS``; it starts up while the caller goes on."""
        with stderr_path.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *modelbot_command(),
                "chat",
                "--json",
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=dict(env),
            )
        return cls(proc, stderr_path)

    @property
    def stderr(self) -> str:
        return self._stderr_path.read_text(encoding="utf-8", errors="replace")

    async def send(self, line: str) -> dict[str, Any]:
        """One message in, its one JSON reply out (``text``, ``model``, ``profile``, ``kind``, ``note``)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line.encode("utf-8") + b"\n")
        await self._proc.stdin.drain()
        timeout = REPLY_TIMEOUT_S if self._replied else STARTUP_TIMEOUT_S
        raw = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
        if not raw:
            await self._proc.wait()
            raise AssertionError(f"modelbot exited ({self._proc.returncode}) on {line!r}:\n{self.stderr}")
        self._replied = True
        reply: dict[str, Any] = json.loads(raw)
        return reply

    async def close(self) -> int:
        """EOF on stdin: the bot must exit by itself; returns its exit status and checks stdout is drained."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        rest = await asyncio.wait_for(self._proc.stdout.read(), REPLY_TIMEOUT_S)
        assert rest == b"", f"unexpected output after the last reply: {rest!r}"
        return await asyncio.wait_for(self._proc.wait(), REPLY_TIMEOUT_S)

    def signal(self, sig: int) -> None:
        """Send ``sig`` (SIGKILL: a host that dies mid-turn, without a chance to clean up)."""
        self._proc.send_signal(sig)

    async def kill(self) -> None:
        """Make sure the process is gone (a no-op once it has exited): cleanup after a failed test."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
