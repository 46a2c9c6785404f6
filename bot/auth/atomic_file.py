"""Atomic replacement of a small file in three steps: stage the new content in a temp file beside it, fsync
that, rename it over the file. Separate steps, so that a caller can run the fsync, which waits for the disk,
in a worker thread and the quick steps where it likes (the auth store keeps them on the event loop). And a
copy of a file's bytes kept aside, once, before anything replaces them (a corrupt store's backup)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

FileKey = tuple[int, int, int, int]


def file_key(st: os.stat_result) -> FileKey:
    """What tells one version of a file from another without reading it: inode, mtime, ctime, size."""
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


@dataclass(frozen=True)
class Staged:
    """A temp file holding the next version of ``target``, still open for its fsync."""

    target: Path
    fd: int
    path: str


def stage(target: Path, data: bytes) -> Staged:
    """Write ``data`` to a new temp file (mode 0600) in ``target``'s directory; nothing is synced yet."""
    import tempfile  # noqa: PLC0415 - only a write needs it: commands that read the store never load it

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    staged = Staged(target, fd, tmp)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        discard(staged)
        raise
    return staged


def install(staged: Staged) -> FileKey:
    """Rename the synced temp file over its target and close it; the new file's key (the rename sets its
    ctime, so the key is taken after it)."""
    try:
        os.replace(staged.path, staged.target)
        return file_key(os.fstat(staged.fd))
    except BaseException:
        Path(staged.path).unlink(missing_ok=True)
        raise
    finally:
        os.close(staged.fd)


def discard(staged: Staged) -> None:
    """Drop a staged file that will not be installed."""
    with contextlib.suppress(OSError):
        os.close(staged.fd)
    Path(staged.path).unlink(missing_ok=True)


def sync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable, or a crash could bring back the old file."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def keep_aside(path: Path, raw: bytes, *, kind: str, stamp: str, mode: int) -> str | None:
    """Copy ``raw`` (the bytes of ``path``) to ``<name>.<kind>-<stamp>`` beside it, once: a copy of the same
    kind holding the same bytes is reused. None when 100 names are taken; raises OSError when it cannot write.
    """
    for existing in sorted(path.parent.glob(f"{path.name}.{kind}-*")):
        try:
            if existing.read_bytes() == raw:
                return str(existing)
        except OSError:
            continue
    for attempt in range(100):
        target = path.with_name(f"{path.name}.{kind}-{stamp}" + (f"-{attempt}" if attempt else ""))
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        return str(target)
    return None
