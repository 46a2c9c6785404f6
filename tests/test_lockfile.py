"""The flock-based lock files: exclusion between holders, waiting with a timeout, nothing left behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bot.auth import lockfile


def test_a_held_lock_is_refused_to_every_other_holder(tmp_path: Path) -> None:
    """Each acquisition is its own holder, so even this process cannot take a lock it already holds."""
    path = tmp_path / "x.lock"
    fd = lockfile.try_lock(path)
    assert fd is not None
    assert lockfile.try_lock(path) is None
    lockfile.unlock(fd)
    again = lockfile.try_lock(path)
    assert again is not None
    lockfile.unlock(again)
    assert path.exists()  # lock files stay, so that waiters never lock a deleted file


def test_lock_file_is_private(tmp_path: Path) -> None:
    """A new lock file gets the mode asked for."""
    path = tmp_path / "x.lock"
    lockfile.unlock(lockfile.lock(path, 1, mode=0o600))
    assert path.stat().st_mode & 0o777 == 0o600


def test_lock_times_out_while_someone_holds_it(tmp_path: Path) -> None:
    """``lock`` polls until its timeout and then raises, without taking the lock."""
    path = tmp_path / "x.lock"
    fd = lockfile.lock(path, 1)
    started = time.monotonic()
    with pytest.raises(lockfile.LockTimeout):
        lockfile.lock(path, 0.05)
    assert time.monotonic() - started >= 0.05
    lockfile.unlock(fd)


def test_lock_waits_for_the_holder_to_release(tmp_path: Path) -> None:
    """A waiter in another thread gets the lock as soon as the holder lets go, and not before."""
    path = tmp_path / "x.lock"
    fd = lockfile.lock(path, 1)
    got: list[float] = []

    def wait() -> None:
        with lockfile.locked(path, 5):
            got.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.05)
    assert got == []
    released = time.monotonic()
    lockfile.unlock(fd)
    waiter.join(5)
    assert got
    assert got[0] >= released
