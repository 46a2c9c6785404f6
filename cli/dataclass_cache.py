"""The methods ``dataclasses`` generates, compiled once and kept beside the bytecode for the next start.

``@dataclass`` writes the source of ``__init__``, ``__repr__``, ``__eq__`` (and, frozen, ``__setattr__``,
``__delattr__``, ``__hash__``) for every class and compiles it with ``exec`` — on every start, as no ``.pyc``
holds them. ``modelbot chat`` makes ~110 dataclasses (ours, pydantic's, annotated_types') before its first
answer: ~550 compilations, a quarter of its start-up instructions (callgrind, 986M with them, 728M from this
cache). While installed, ``dataclasses`` runs the same source through ``DataclassCodeCache.exec`` instead, which
looks the compiled code up by the source's digest and compiles only what it has not seen; ``save`` writes
what was new.

The cache follows Python's own rules for bytecode: it sits where this module's ``.pyc`` goes (so under
``PYTHONPYCACHEPREFIX`` when that is set), it is not written when writing bytecode is off
(``PYTHONDONTWRITEBYTECODE``, ``-B``), its file is tied to the interpreter's bytecode magic number, and a
file that is missing, unreadable, corrupt or from another Python counts as empty. A directory that cannot
be written leaves everything as without the cache. Code compiled from the same text is the same code, so a
class made from the cache is the class ``dataclasses`` makes itself (``tests/test_dataclass_cache.py``).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import hashlib
import importlib.util
import marshal
import os
import sys
from pathlib import Path
from types import CodeType
from typing import Any, Final

# The file starts with the interpreter's bytecode magic number (as a .pyc does), then this format's tag.
FORMAT: Final = b"modelbot dataclass methods 1\n"
# Entries beyond this many are pruned to those used by the run that saves (the file grows with every
# edit of a dataclass in a working tree; one command uses ~600).
MAX_ENTRIES: Final = 4096


def default_path() -> Path:
    """Beside this module's bytecode: ``__pycache__/`` here, or its place under ``PYTHONPYCACHEPREFIX``."""
    pyc = Path(importlib.util.cache_from_source(__file__))
    return pyc.with_name(f"dataclass-methods.{sys.implementation.cache_tag}.bin")


class DataclassCodeCache:
    """Compiled code of ``dataclasses``' generated source, by the source's digest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._codes: dict[bytes, CodeType] | None = None  # read on the first class made
        self._used: set[bytes] = set()
        self.hits = 0
        self.misses = 0

    def exec(self, source: str, globals: dict[str, Any] | None = None, locals: Any = None) -> None:
        """``exec(source, globals, locals)``, the compiled code coming from the cache when it has it."""
        codes = self._load()
        key = hashlib.blake2b(source.encode(), digest_size=16).digest()
        code = codes.get(key)
        if code is None:
            # dont_inherit: compiled as ``dataclasses``' own ``exec`` compiles it, without the
            # ``from __future__`` flags of this module (which would turn the methods' annotations into text).
            code = compile(source, "<string>", "exec", dont_inherit=True)
            codes[key] = code
            self.misses += 1
        else:
            self.hits += 1
        self._used.add(key)
        builtins.exec(code, globals, locals)  # noqa: S102 - the source dataclasses was about to exec itself

    def install(self) -> None:
        """From now on, ``dataclasses`` compiles through this cache."""
        dataclasses.exec = self.exec  # type: ignore[attr-defined]  # a module global shadowing the builtin

    def uninstall(self) -> None:
        """``dataclasses`` compiles with the builtin ``exec`` again (unless another cache was installed since)."""
        if vars(dataclasses).get("exec") == self.exec:
            del dataclasses.exec  # type: ignore[attr-defined]

    def save(self) -> bool:
        """Write the cache if this run compiled anything new and bytecode may be written; True when written.
        Failing to write is not an error: the next start compiles again."""
        if not self.misses or sys.dont_write_bytecode or self._codes is None:
            return False
        codes = self._codes
        if len(codes) > MAX_ENTRIES:
            codes = {key: code for key, code in codes.items() if key in self._used}
        temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(importlib.util.MAGIC_NUMBER + FORMAT + marshal.dumps(codes))
            os.replace(temp, self.path)  # readers see the old file or the new one, never a part
        except OSError:
            with contextlib.suppress(OSError):  # there may be no temp file, nor even a directory for it
                temp.unlink()
            return False
        return True

    def _load(self) -> dict[bytes, CodeType]:
        if self._codes is None:
            self._codes = _read(self.path)
        return self._codes


def _read(path: Path) -> dict[bytes, CodeType]:
    """The cache file's entries; none when it is missing, unreadable, corrupt or from another Python."""
    header = importlib.util.MAGIC_NUMBER + FORMAT
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if not data.startswith(header):
        return {}
    try:
        # Trusted as the .pyc files beside it are: the same directory, written by the same user.
        codes = marshal.loads(data[len(header) :])  # noqa: S302
    except (ValueError, EOFError, TypeError):
        return {}
    if not isinstance(codes, dict):
        return {}
    return {k: v for k, v in codes.items() if isinstance(k, bytes) and isinstance(v, CodeType)}
