"""auth-profiles.json on disk: cached reads, locked atomic read-modify-write, corruption and legacy import."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.auth import atomic_file, codec, doc_edits, lockfile
from bot.auth.atomic_file import FileKey, file_key
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.refresh_lock import FileRefreshLock, RefreshLock
from bot.auth.types import AuthProfiles, Credential, UsageStats
from bot.clock import Clock, SystemClock
from bot.errors import AuthError, AuthStoreCorrupt
from bot.failover.reasons import Reason

# asyncio is imported inside the coroutines that use it: `modelbot models list` and `auth list` read
# credentials without an event loop, and importing asyncio (with ssl) was a tenth of their start-up.
if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("modelbot.auth")

FILE_MODE = 0o600
DIR_MODE = 0o700
LEGACY_API_KEYS = "auth.json"

# (lock file, thread) pairs whose event loop holds that lock while a write's fsync runs (see ``aupdate``).
_held_by_loop: Counter[tuple[str, int]] = Counter()


_FSYNC_THREADS = 2
_fsync_pool: ThreadPoolExecutor | None = None


def _fsync_executor() -> ThreadPoolExecutor:
    """The threads that run the fsyncs of ``aupdate``: their own, never the loop's default executor.

    While an fsync is pending its writer holds the file lock, and other writers of this process wait for that
    lock in the default executor (``asyncio.to_thread``). Sharing that pool, a burst of failures could fill
    every worker with waiters, leaving none for the fsync that would release them: nothing moved until the
    lock timeout (a burst of chats on one 429 froze this way).
    """
    global _fsync_pool  # noqa: PLW0603 - one pool per process, made on first use (no threads at import)
    if _fsync_pool is None:
        # Imported here: the commands that only read credentials never write them (~1.5 % of their start-up).
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        _fsync_pool = ThreadPoolExecutor(max_workers=_FSYNC_THREADS, thread_name_prefix="modelbot-fsync")
    return _fsync_pool


@dataclass(frozen=True)
class _Cached:
    """The last document read or written, with the file's key and the bytes it came from."""

    key: FileKey
    raw: bytes
    doc: AuthProfiles


class AuthStore:
    """One auth-profiles.json, shared safely by every bot process and the CLI.

    Reads are cached by the file's identity (inode, mtime, ctime, size); every change goes through
    ``update``, which re-reads under a cross-process lock, so concurrent writers never lose each other's
    updates. Returned documents are shared with the cache: treat them as read-only.

    The async methods never wait for the disk on the event loop: waiting for the lock, and the fsync of a
    write, which waits for the file system's journal and so for other files' data (9 ms here under the
    bot's own SQLite writes, far longer on a busy disk), happen in a worker thread. Only those leave the
    loop: creating, writing and renaming the temp file touch the page cache and the directory (0.2 ms,
    3 ms at most under that load), and each further hand-off between threads cost about 0.3 ms of every
    failover on this 2-vCPU VM (docs/benchmarks.md).
    """

    def __init__(
        self,
        path: Path,
        *,
        legacy_oauth_path: Path | None = None,
        clock: Clock | None = None,
        lock_timeout_s: float = 30.0,
    ) -> None:
        self.path = path
        self.legacy_oauth_path = legacy_oauth_path
        self._clock: Clock = SystemClock() if clock is None else clock
        self._lock_timeout_s = lock_timeout_s
        self._cache: _Cached | None = None

    @property
    def lock_path(self) -> Path:
        """Held for every read-modify-write of the file."""
        return Path(f"{self.path}.lock")

    @property
    def refresh_lock_path(self) -> Path:
        """Held across an OAuth refresh call, which is slow I/O that must not block ordinary writes."""
        return Path(f"{self.path}.refresh.lock")

    @property
    def where(self) -> str:
        return str(self.path)

    def refresh_lock(self, *, timeout_s: float) -> RefreshLock:
        """The lock file beside the store: one OAuth refresh at a time across the processes of this host."""
        return FileRefreshLock(self.refresh_lock_path, timeout_s=timeout_s, mode=FILE_MODE)

    # -- reading -------------------------------------------------------------------------------------

    def load(self) -> AuthProfiles:
        """The current store; a missing file is an empty store (after importing legacy files once)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self._import_legacy_once() if self._legacy_sources() else AuthProfiles()
        key = file_key(st)
        if self._cache is not None and self._cache.key == key:
            return self._cache.doc
        raw = self.path.read_bytes()
        doc = self._parse(raw)
        self._cache = _Cached(key, raw, doc)
        return doc

    def _import_legacy_once(self) -> AuthProfiles:
        """Write the imported legacy profiles into the store, so the import happens once.

        When another writer holds the lock, it is creating the store right now, legacy profiles included
        (``_modify`` imports them into a missing file): show them without waiting, which on an event loop
        that holds the lock itself would never end."""
        self._ensure_dir()
        lock = lockfile.try_lock(self.lock_path, mode=FILE_MODE)
        if lock is None:
            return self._import_legacy()
        try:
            return self._apply(lambda doc: doc, sync_dir=True)
        finally:
            lockfile.unlock(lock)

    def reload(self) -> AuthProfiles:
        """The file as it is now, bypassing the cache (whose key can miss a write in the same clock tick)."""
        self._cache = None
        return self.load()

    def _parse(self, raw: bytes) -> AuthProfiles:
        try:
            return codec.decode(json.loads(raw.decode("utf-8")))
        except json.JSONDecodeError as exc:
            detail = f"invalid JSON at line {exc.lineno}, column {exc.colno}"
        except UnicodeDecodeError:
            detail = "not UTF-8 text"
        except ValueError as exc:
            detail = str(exc)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock.now_ms() / 1000))
        try:
            backup: str | None = atomic_file.keep_aside(
                self.path, raw, kind="corrupt", stamp=stamp, mode=FILE_MODE
            )
        except OSError as exc:
            log.warning("could not back up the corrupt auth store %s: %s", self.path, exc.strerror)
            backup = None
        raise AuthStoreCorrupt(str(self.path), backup, detail)

    def _legacy_sources(self) -> list[Path]:
        paths = [self.path.with_name(LEGACY_API_KEYS), self.legacy_oauth_path]
        return [p for p in paths if p is not None and p.is_file()]

    def _import_legacy(self) -> AuthProfiles:
        """Profiles from the legacy files; a broken legacy file is skipped (it stays where it is)."""
        creds: dict[str, Credential] = {}
        for source in self._legacy_sources():
            try:
                data = json.loads(source.read_text(encoding="utf-8"))
                if source == self.legacy_oauth_path:
                    creds.update(codec.legacy_oauth(data, taken=creds, path=source.name))
                else:
                    creds.update(codec.legacy_api_keys(data, path=source.name))
            except (OSError, ValueError) as exc:
                log.warning("skipped the legacy auth file %s: %s", source, type(exc).__name__)
        if creds:
            log.info("imported %d legacy auth profile(s) into %s", len(creds), self.path)
        return AuthProfiles(profiles=creds)

    # -- writing -------------------------------------------------------------------------------------

    def update(self, fn: Callable[[AuthProfiles], AuthProfiles], *, sync_dir: bool = True) -> AuthProfiles:
        """Apply ``fn`` to the freshest store under the cross-process lock and write the result atomically.

        A corrupt file raises ``AuthStoreCorrupt`` before ``fn`` runs: it is never replaced by a new store.
        ``sync_dir=False`` (usage stats only) skips fsyncing the directory after the rename: the new file's
        content is still fsynced first, so a crash can only bring back the previous, complete file — with
        every credential — and slightly older cooldowns. It saves one fsync on every failover.
        """
        if _held_by_loop[(str(self.lock_path), threading.get_ident())]:
            # This thread's event loop holds the lock (any store object on the file), and releases it
            # only once the loop runs again: waiting here would never end.
            raise RuntimeError(
                f"a synchronous write of {self.path} on the event loop while its async write is in flight; "
                "use aupdate"
            )
        self._ensure_dir()
        try:
            with lockfile.locked(self.lock_path, self._lock_timeout_s, mode=FILE_MODE):
                return self._apply(fn, sync_dir=sync_dir)
        except lockfile.LockTimeout:
            raise AuthError(
                f"{self.path} stayed locked by another process for {self._lock_timeout_s:g}s."
            ) from None

    def _apply(self, fn: Callable[[AuthProfiles], AuthProfiles], *, sync_dir: bool) -> AuthProfiles:
        """The read-modify-write itself; the caller holds the lock."""
        new, data = self._modify(fn)
        if data is None:
            return new
        staged = atomic_file.stage(self.path, data)
        try:
            os.fsync(staged.fd)
        except BaseException:
            atomic_file.discard(staged)
            raise
        self._cache = _Cached(atomic_file.install(staged), data, new)
        if sync_dir:
            atomic_file.sync_dir(self.path.parent)
        return new

    def _modify(self, fn: Callable[[AuthProfiles], AuthProfiles]) -> tuple[AuthProfiles, bytes | None]:
        """Under the lock: ``fn`` of the store as it is now, and the bytes to write (None: no change)."""
        # Always re-read: the cache key cannot tell two writes apart that reuse an inode within one
        # timestamp tick at the same size, and a stale base here would drop another process's update.
        # The same bytes as cached parse to the cached document, so only a changed file is parsed again.
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            current, fresh = self._import_legacy(), True
        else:
            cached = self._cache
            current = cached.doc if cached is not None and cached.raw == raw else self._parse(raw)
            fresh = False
        new = fn(current)
        if new != current or (fresh and new.profiles):
            return new, codec.dumps(new).encode("utf-8")
        return new, None

    def _ensure_dir(self) -> None:
        # Path.mkdir(parents=True) creates the parents with the default mode; every new level is made 0700.
        missing: list[Path] = []
        for parent in (self.path.parent, *self.path.parent.parents):
            if parent.exists():
                break
            missing.append(parent)
        for directory in reversed(missing):
            directory.mkdir(mode=DIR_MODE, exist_ok=True)
            os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask

    # -- conveniences built on update ------------------------------------------------------------------

    def record_failure(
        self,
        profile_id: str,
        reason: Reason,
        *,
        provider: str,
        now_ms: int,
        policy: CooldownPolicy,
        model: str | None = None,
        retry_after_ms: int | None = None,
    ) -> UsageStats:
        """Persist one failure (cooldown or billing disable) of a call to ``model``; works for implicit ids
        like ``openai:env`` too."""
        apply = doc_edits.with_failure(
            profile_id,
            reason,
            provider=provider,
            now_ms=now_ms,
            policy=policy,
            model=model,
            retry_after_ms=retry_after_ms,
        )
        return self.update(apply, sync_dir=False).stats(profile_id)

    def record_success(
        self,
        profile_id: str,
        *,
        provider: str,
        now_ms: int,
        started_ms: int | None = None,
        model: str | None = None,
    ) -> UsageStats:
        """Persist a success of a call started at ``started_ms`` (default: ``now_ms``): what failed before
        it started is cleared, ``lastUsed`` moves forward, and the provider's ``lastGood``."""
        apply = doc_edits.with_success(
            profile_id, provider, model, now_ms if started_ms is None else started_ms, now_ms
        )
        return self.update(apply, sync_dir=False).stats(profile_id)

    def clear_cooldown(self, profile_id: str, model: str | None = None) -> UsageStats:
        """An operator's reset of the profile and all its pairs, or of its pair with ``model`` only."""
        return self.update(doc_edits.without_cooldown(profile_id, model)).stats(profile_id)

    def set_order(self, provider: str, ids: Sequence[str]) -> None:
        """Pin the rotation order of a provider; an empty list clears it."""
        self.update(doc_edits.with_order(provider, ids))

    # -- async wrappers: file I/O and the lock wait stay off the event loop ----------------------------

    async def aload(self) -> AuthProfiles:
        import asyncio  # noqa: PLC0415 - see the module's imports

        return await asyncio.to_thread(self.load)

    async def areload(self) -> AuthProfiles:
        import asyncio  # noqa: PLC0415 - see the module's imports

        return await asyncio.to_thread(self.reload)

    async def aupdate(
        self, fn: Callable[[AuthProfiles], AuthProfiles], *, sync_dir: bool = True
    ) -> AuthProfiles:
        """``update`` without waiting on the event loop.

        When the lock is free, everything but the fsync runs here: the small read, ``fn``, writing the temp
        file (page cache only), and after the fsync, which a worker thread does, the rename and the unlock.
        They run in a callback of the fsync, so a caller cancelled meanwhile still leaves the write done
        and the lock free. While the fsync runs, this thread's event loop holds the lock: a synchronous
        ``update`` on it then raises instead of waiting for a lock only the loop could release. When another
        writer holds the lock, the whole update waits for it in a thread.
        """
        import asyncio  # noqa: PLC0415 - see the module's imports

        self._ensure_dir()
        lock = lockfile.try_lock(self.lock_path, mode=FILE_MODE)
        if lock is None:
            return await asyncio.to_thread(self.update, fn, sync_dir=sync_dir)
        try:
            new, data = self._modify(fn)
            staged = None if data is None else atomic_file.stage(self.path, data)
        except BaseException:
            lockfile.unlock(lock)
            raise
        if data is None or staged is None:
            lockfile.unlock(lock)
            return new
        loop = asyncio.get_running_loop()
        try:
            synced = loop.run_in_executor(_fsync_executor(), os.fsync, staged.fd)
        except BaseException:  # no executor (the loop is shutting down): nothing was written
            atomic_file.discard(staged)
            lockfile.unlock(lock)
            raise
        holder = (str(self.lock_path), threading.get_ident())
        _held_by_loop[holder] += 1
        committed: asyncio.Future[None] = loop.create_future()

        def commit(synced: asyncio.Future[None]) -> None:
            try:
                try:
                    synced.result()  # the fsync's own error, if it failed
                except BaseException:
                    atomic_file.discard(staged)
                    raise
                self._cache = _Cached(atomic_file.install(staged), data, new)
            except BaseException as exc:
                if not committed.done():  # else the caller was cancelled and nobody waits for the error
                    committed.set_exception(exc)
            else:
                if not committed.done():
                    committed.set_result(None)
            finally:
                lockfile.unlock(lock)
                _held_by_loop[holder] -= 1

        synced.add_done_callback(commit)
        await committed
        if sync_dir:
            await asyncio.to_thread(atomic_file.sync_dir, self.path.parent)
        return new

    async def arecord_failure(
        self,
        profile_id: str,
        reason: Reason,
        *,
        provider: str,
        now_ms: int,
        policy: CooldownPolicy,
        model: str | None = None,
        retry_after_ms: int | None = None,
    ) -> UsageStats:
        apply = doc_edits.with_failure(
            profile_id,
            reason,
            provider=provider,
            now_ms=now_ms,
            policy=policy,
            model=model,
            retry_after_ms=retry_after_ms,
        )
        return (await self.aupdate(apply, sync_dir=False)).stats(profile_id)

    async def arecord_success(
        self,
        profile_id: str,
        *,
        provider: str,
        now_ms: int,
        started_ms: int | None = None,
        model: str | None = None,
    ) -> UsageStats:
        apply = doc_edits.with_success(
            profile_id, provider, model, now_ms if started_ms is None else started_ms, now_ms
        )
        return (await self.aupdate(apply, sync_dir=False)).stats(profile_id)

    async def aclear_cooldown(self, profile_id: str, model: str | None = None) -> UsageStats:
        return (await self.aupdate(doc_edits.without_cooldown(profile_id, model))).stats(profile_id)
