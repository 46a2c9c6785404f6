"""Shared fixtures: an isolated state dir, a clean environment, and a fake clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes.clock import FakeClock

# Provider keys and proxies from the developer's shell must never reach a test.
_ENV_PREFIXES = ("MODELBOT_",)
_ENV_SUFFIXES = ("_API_KEY",)
_ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Drop provider keys and proxies; point the state dir at a fresh temp folder."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name.endswith(_ENV_SUFFIXES) or name in _ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    monkeypatch.setenv("MODELBOT_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when the test moves it."""
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """The state dir that ``clean_env`` points MODELBOT_STATE_DIR at."""
    path = tmp_path / "state"
    path.mkdir(exist_ok=True)
    return path
