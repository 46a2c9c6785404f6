"""Processes driven line by line (``modelbot chat --json``, and the floor in a process of its own), and the CPU
time each has used so far."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self


class LineProcess:
    """``with LineProcess(name, argv, env) as p: p.say("hi")``: one line in, the reply's JSON object out."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self._argv = argv
        self._env = env
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(
            self._argv, env=self._env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
            proc.wait(timeout=30)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def say(self, text: str) -> dict[str, Any]:
        """Send one line; the reply's JSON object."""
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(text + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} exited")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def cpu_s(self) -> float:
        """CPU time of every thread of the process so far, in ns resolution (``/proc/…/schedstat``)."""
        assert self._proc is not None
        total = 0
        for task in Path(f"/proc/{self._proc.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
                continue
        return total / 1e9


class ChatProcess(LineProcess):
    """``with ChatProcess(base_url, model, state_dir) as chat: chat.say("hi")`` — the real console bot on a
    config whose only provider is the loopback server (no key: it is local), history never cut or compacted."""

    def __init__(self, base_url: str, model: str, state_dir: Path) -> None:
        config = {
            "models": {
                "providers": {
                    "bench": {
                        "baseUrl": f"{base_url}/v1",
                        "api": "openai-completions",
                        "models": [{"id": model, "contextWindow": 1_000_000}],
                    }
                }
            },
            "agents": {"defaults": {"model": {"primary": f"bench/{model}"}}},
            "session": {"historyLimit": 10_000},
        }
        self.config = state_dir / "config.json5"
        self.config.write_text(json.dumps(config))
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env["MODELBOT_STATE_DIR"] = str(state_dir)
        modelbot = str(Path(sys.executable).parent / "modelbot")
        argv = [modelbot, "chat", "--json", "--config", str(self.config), "--session", "bench"]
        super().__init__("modelbot chat", argv, env)


class FloorProcess(LineProcess):
    """The raw HTTP floor behind the same two pipes (``bench.floor_process``)."""

    def __init__(self, base_url: str) -> None:
        argv = [sys.executable, "-m", "bench.floor_process", base_url]
        super().__init__("the floor process", argv, dict(os.environ))
