"""The compiled dataclass methods kept between starts (``cli.dataclass_cache``): same classes, never in the way."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cli import dataclass_cache
from cli.dataclass_cache import FORMAT, DataclassCodeCache, default_path
from tests.cli_helpers import console_script_at_exit


@pytest.fixture(autouse=True)
def writing_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without PYTHONDONTWRITEBYTECODE (this project's VMs set it)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def make_classes() -> dict[str, type]:
    """Dataclasses of every shape whose methods ``dataclasses`` generates (made afresh on each call)."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int = 0
        tags: tuple[str, ...] = ()

    @dataclasses.dataclass(order=True, kw_only=True)
    class Job:
        priority: int
        name: str = "job"
        items: list[str] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(eq=False)
    class Plain:
        value: Any = None

    made = dataclasses.make_dataclass(
        "Made", [("x", int), ("y", str, dataclasses.field(default=""))], frozen=True
    )
    return {"Point": Point, "Job": Job, "Plain": Plain, "Made": made}


def behaviour(classes: dict[str, type]) -> dict[str, Any]:
    """What a user of the classes can observe."""
    point, job, plain = classes["Point"], classes["Job"], classes["Plain"]
    p = point(1, 2, ("a",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5
    first, second = job(priority=1), job(priority=2, name="b", items=["i"])
    return {
        "repr": (repr(p), repr(first), repr(plain(3))),
        "eq": (p == point(1, 2, ("a",)), p == point(1, 3), first == job(priority=1), plain(1) == plain(1)),
        "hash": hash(p) == hash(point(1, 2, ("a",))),
        "order": (first < second, sorted([second, first]) == [first, second]),
        "defaults": (point(1).y, job(priority=0).items, job(priority=0).items is not job(priority=0).items),
        "slots": vars(point)["__slots__"],
        "signatures": tuple(str(inspect.signature(c)) for c in classes.values()),
        "annotations": tuple(c.__init__.__annotations__ for c in classes.values()),  # type: ignore[misc]
    }


@contextmanager
def installed(cache: DataclassCodeCache) -> Iterator[DataclassCodeCache]:
    cache.install()
    try:
        yield cache
    finally:
        cache.uninstall()


def test_a_class_made_from_the_cache_behaves_as_dataclasses_own(tmp_path: Path) -> None:
    path = tmp_path / "methods.bin"
    expected = behaviour(make_classes())
    # The field types themselves, not text: the methods are compiled without the ``from __future__`` flags of
    # the module that compiles them (here and in the cache).
    assert expected["annotations"][-1] == {"x": int, "y": str, "return": None}

    with installed(DataclassCodeCache(path)) as first:
        assert behaviour(make_classes()) == expected
    assert first.misses > 10
    assert first.save()

    with installed(DataclassCodeCache(path)) as second:
        assert behaviour(make_classes()) == expected
    assert second.misses == 0
    assert second.hits == first.hits + first.misses
    assert not second.save()  # nothing new: the file is left as it is


def test_uninstalling_gives_dataclasses_the_builtin_exec_back(tmp_path: Path) -> None:
    cache = DataclassCodeCache(tmp_path / "methods.bin")
    with installed(cache):
        assert vars(dataclasses)["exec"] == cache.exec
    assert "exec" not in vars(dataclasses)
    make_classes()
    assert cache.hits == cache.misses == 0


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00garbage" * 50, id="garbage"),
        pytest.param(b"\x00\x00\x00\x00" + FORMAT + b"{}", id="another-python"),
        pytest.param(importlib.util.MAGIC_NUMBER + FORMAT + b"\xff\x01", id="truncated"),
        pytest.param(importlib.util.MAGIC_NUMBER + FORMAT + b"N", id="not-a-dict"),
    ],
)
def test_a_damaged_or_foreign_file_counts_as_empty_and_is_replaced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "methods.bin"
    path.write_bytes(content)
    expected = behaviour(make_classes())
    with installed(DataclassCodeCache(path)) as cache:
        assert behaviour(make_classes()) == expected
    assert cache.hits == 0
    assert cache.save()
    with installed(DataclassCodeCache(path)) as again:
        make_classes()
    assert again.misses == 0


def test_nothing_is_written_where_bytecode_is_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    path = tmp_path / "methods.bin"
    with installed(DataclassCodeCache(path)) as cache:
        make_classes()
    assert cache.misses > 0
    assert not cache.save()
    assert not path.exists()


def test_a_place_that_cannot_be_written_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "methods.bin"
    with installed(DataclassCodeCache(path)) as cache:
        make_classes()
    assert not cache.save()
    assert list(tmp_path.iterdir()) == [blocker]  # no temporary file left behind


def test_a_full_cache_keeps_what_the_saving_run_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "methods.bin"
    with installed(DataclassCodeCache(path)) as old:
        for n in range(5):  # other shapes: another run's classes, or an edited file's old ones
            dataclasses.make_dataclass(f"Old{n}", [(f"field{n}", int)])
    assert old.save()
    monkeypatch.setattr(dataclass_cache, "MAX_ENTRIES", old.misses)
    with installed(DataclassCodeCache(path)) as new:
        make_classes()
    assert new.save()
    with installed(DataclassCodeCache(path)) as after:
        make_classes()
        dataclasses.make_dataclass("Old0", [("field0", int)])
    assert after.misses > 0  # the old shape was pruned
    assert after.hits == new.hits + new.misses


def test_the_cache_sits_with_this_modules_bytecode() -> None:
    pyc = Path(importlib.util.cache_from_source(dataclass_cache.__file__))
    assert default_path().parent == pyc.parent
    assert sys.implementation.cache_tag in default_path().name


def _run_console_script(env: dict[str, str]) -> tuple[int, int]:
    """``modelbot models list``; its cache's (hits, misses)."""
    cache = "sys.modules['dataclasses'].exec.__self__"
    hits, misses = console_script_at_exit(
        ["models", "list", "--plain"], f"{cache}.hits, {cache}.misses", env
    ).split()
    return int(hits), int(misses)


def test_help_installs_no_cache() -> None:
    """``modelbot --help`` makes no dataclass, and does not import ``dataclasses`` for the cache's sake."""
    seen = console_script_at_exit(
        ["--help"], "'dataclasses' in sys.modules, 'cli.dataclass_cache' in sys.modules"
    )
    assert seen == "False False"


def test_the_console_script_compiles_the_dataclass_methods_once(state_dir: Path, tmp_path: Path) -> None:
    """The first start compiles and keeps them (beside the bytecode, under PYTHONPYCACHEPREFIX here); the
    next one compiles none and leaves the file alone."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")
    hits, misses = _run_console_script(env)
    assert misses > 100
    [kept] = (tmp_path / "pycache").rglob("dataclass-methods.*.bin")
    written = kept.stat().st_mtime_ns
    again_hits, again_misses = _run_console_script(env)
    assert again_misses == 0
    assert again_hits == hits + misses
    assert kept.stat().st_mtime_ns == written
