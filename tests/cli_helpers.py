"""Helpers for the CLI tests: run ``modelbot`` in-process or as the installed console script."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config.example.json5"
MODELBOT = Path(sys.executable).parent / "modelbot"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """``modelbot ARGV`` in this process; what it printed, and its exit code."""
    capsys.readouterr()  # drop anything printed before
    code = main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_script(*argv: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """The installed ``modelbot`` console script in a child process, with this test's environment."""
    done = subprocess.run(
        [str(MODELBOT), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def console_script_at_exit(argv: list[str], at_exit: str, env: dict[str, str] | None = None) -> str:
    """``modelbot ARGV`` through ``cli.main.run`` (the console script's function, with its exit handling) in a
    fresh interpreter, its output dropped; what the expression ``at_exit`` (over the modules ``gc`` and
    ``sys``) evaluates to as that interpreter exits. ``env`` replaces this test's environment."""
    script = (
        "import atexit, contextlib, gc, io, sys\n"
        f"atexit.register(lambda: print('at exit:', {at_exit}))\n"
        f"sys.argv = {['modelbot', *argv]!r}\n"
        "from cli.main import run\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ) if env is None else env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].removeprefix("at exit: ")


def write_config(path: Path, text: str) -> str:
    """Write a config file and return its path as a CLI argument."""
    path.write_text(text, encoding="utf-8")
    return str(path)
