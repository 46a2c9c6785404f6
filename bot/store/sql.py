"""The SQL ``SessionStore`` (SQLite or PostgreSQL): each method is one short transaction of ``sql_ops``
(a turn's own ones on SQLite: of ``sqlite_turn``).

On a SQLite file a chat turn runs without SQLAlchemy (see ``bot.store.sqlite_database``): ``sql_ops`` and
``lease_sql``, built on it, are imported by the methods that use them, the first time one is called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from bot.errors import StoreError
from bot.store import rows, sqlite_turn
from bot.store.database import Database, open_database
from bot.store.db_errors import database_errors
from bot.store.engine import parse_url, plain_sqlite_file, sqlite_in_memory
from bot.store.migrate import upgrade_database
from bot.store.sqlite_database import SqliteDatabase
from bot.store.types import FailoverEvent, NewMessage, SessionPatch, SessionRecord, StoredMessage

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

T = TypeVar("T")

# The longest history a compaction rewrites on the event loop (SQLite); a longer one is rewritten in a thread.
QUICK_REWRITE_MESSAGES = 300  # ~2 ms of the loop on this VM


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite database file, e.g. the default ``$MODELBOT_STATE_DIR/modelbot.sqlite``: the string
    SQLAlchemy's ``URL.create("sqlite+aiosqlite", database=…).render_as_string()`` makes."""
    return "sqlite+aiosqlite:///" + quote(str(path), safe=" +/")


def _sqlalchemy_twin(body: Callable[..., T]) -> Callable[..., T]:
    """The SQLAlchemy twin (``sql_ops``, ``lease_sql``) of one of ``sqlite_turn``'s bodies, for PostgreSQL."""
    twin: Callable[..., T] = _twins()[body]
    return twin


@functools.cache
def _twins() -> dict[Callable[..., Any], Callable[..., Any]]:
    from bot.store import lease_sql, sql_ops  # noqa: PLC0415 - see the module docstring

    return {
        sqlite_turn.get: sql_ops.get,
        sqlite_turn.create: sql_ops.create,
        sqlite_turn.update: sql_ops.update,
        sqlite_turn.append_messages: sql_ops.append_messages,
        sqlite_turn.history: sql_ops.history,
        sqlite_turn.record_event: sql_ops.record_event,
        sqlite_turn.acquire_lease: lease_sql.acquire,
        sqlite_turn.renew_lease: lease_sql.renew,
        sqlite_turn.release_lease: lease_sql.release,
        sqlite_turn.begin_turn: lease_sql.begin_turn,
        sqlite_turn.end_turn: lease_sql.end_turn,
    }


class SqlSessionStore:
    """Sessions in SQLite (``sqlite+aiosqlite://``) or PostgreSQL (``postgresql+asyncpg://``)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._database: Database | None = None

    @property
    def shared(self) -> bool:
        """Whether other processes can open this database too (any but a private in-memory SQLite one)."""
        return plain_sqlite_file(self._url) is not None or not sqlite_in_memory(parse_url(self._url))

    async def start(self) -> None:
        """Open the database (creating the SQLite file's directory) and migrate the schema to head."""
        if self._database is not None:
            return
        database = open_database(self._url)
        try:
            await upgrade_database(database)
        except BaseException:
            await database.dispose()
            raise
        self._database = database

    @property
    def database(self) -> Database:
        """The started store's database, for the composition root to share (one engine per process)."""
        if self._database is None:
            raise StoreError("The session store is not started.")
        return self._database

    async def warm(self) -> None:
        """On SQLite, make the engine and the loop's SQLAlchemy connections now (see ``SqliteDatabase.warm``)."""
        await self.database.warm()

    async def stop(self) -> None:
        """Close every pooled connection."""
        if self._database is not None:
            database, self._database = self._database, None
            await database.dispose()

    async def _run(self, body: Callable[[Connection], T], *, write: bool = False, quick: bool = False) -> T:
        """One transaction; where the running store's database errors become ``StoreError``.

        ``quick``: one of a turn's few-row transactions (see ``Database.run``); bulk ones never are.
        """
        if self._database is None:
            raise StoreError("The session store is not started.")
        try:
            return await self._database.run(body, write=write, quick=quick)
        except database_errors() as exc:  # sqlite3's too: opening the loop's connections
            raise StoreError(f"The session store failed ({type(exc).__name__}).") from exc

    async def _quick(self, on_sqlite: Callable[..., T], *, write: bool = False, **args: Any) -> T:
        """One of a turn's few-row transactions: ``on_sqlite`` as SQL text on the sqlite3 connection (see
        ``sqlite_turn``), else its SQLAlchemy twin on a SQLAlchemy connection; either called with ``args``."""
        database = self._database
        if not isinstance(database, SqliteDatabase):
            return await self._run(partial(_sqlalchemy_twin(on_sqlite), **args), write=write, quick=True)
        try:
            return await database.run_sql(partial(on_sqlite, **args), write=write)
        except database_errors() as exc:  # SQLAlchemy's: opening a thread's connection
            raise StoreError(f"The session store failed ({type(exc).__name__}).") from exc

    async def get(self, key: str) -> SessionRecord | None:
        return await self._quick(sqlite_turn.get, key=key)

    async def get_or_create(
        self,
        key: str,
        *,
        agent_id: str,
        platform: str,
        chat_id: str,
        user_id: str | None = None,
        thread_id: str | None = None,
        now_ms: int,
    ) -> SessionRecord:
        # Nearly every call finds the session: read without taking SQLite's write lock first.
        existing = await self.get(key)
        if existing is not None:
            return existing
        values = rows.new_session(
            key,
            agent_id=agent_id,
            platform=platform,
            chat_id=chat_id,
            user_id=user_id,
            thread_id=thread_id,
            now_ms=now_ms,
        )
        return await self._quick(sqlite_turn.create, write=True, values=values)

    async def update(self, key: str, patch: SessionPatch, *, now_ms: int) -> SessionRecord:
        return await self._quick(sqlite_turn.update, write=True, key=key, patch=patch, now_ms=now_ms)

    async def append_messages(
        self, key: str, messages_: Sequence[NewMessage], *, now_ms: int, patch: SessionPatch | None = None
    ) -> list[StoredMessage]:
        return await self._quick(
            sqlite_turn.append_messages,
            write=True,
            key=key,
            new=list(messages_),
            now_ms=now_ms,
            patch=patch,
        )

    async def history(self, key: str, *, limit: int | None = None) -> list[StoredMessage]:
        if limit is not None and limit <= 0:
            return []
        if limit is None:  # the whole history: a bulk read, in a thread
            from bot.store import sql_ops  # noqa: PLC0415 - see the module docstring

            return await self._run(partial(sql_ops.history, key=key, limit=None))
        return await self._quick(sqlite_turn.history, key=key, limit=limit)

    async def replace_history(
        self,
        key: str,
        summary: NewMessage,
        keep_last: int,
        *,
        now_ms: int,
        through_id: int | None = None,
    ) -> int:
        from bot.store import sql_ops  # noqa: PLC0415 - see the module docstring

        body = partial(
            sql_ops.replace_history,
            key=key,
            summary=summary,
            keep_last=keep_last,
            now_ms=now_ms,
            through_id=through_id,
        )
        if isinstance(self._database, SqliteDatabase):
            # A short history's rewrite is a turn-sized transaction: on the loop it takes about a millisecond,
            # while as a thread write every conversation's next save waits for it, and a burst of compactions
            # chained those waits to 100 ms (bench.pipeline at 760 turns/s). A long one still goes to a thread.
            try:
                return await self._run(partial(body, at_most=QUICK_REWRITE_MESSAGES), write=True, quick=True)
            except sql_ops.TooLongForQuick:
                pass
        return await self._run(body, write=True)

    async def reset(
        self, key: str, *, keep_model: bool, model_override: str | None = None, now_ms: int
    ) -> SessionRecord:
        from bot.store import sql_ops  # noqa: PLC0415 - see the module docstring

        values = rows.fresh_values()
        if model_override is not None:
            values.update(model_override=model_override, model_source="user")
        elif not keep_model:
            values.update(model_override=None, model_source=None)
        return await self._run(partial(sql_ops.reset, key=key, values=values, now_ms=now_ms), write=True)

    async def list_sessions(
        self,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[SessionRecord]:
        from bot.store import sql_ops  # noqa: PLC0415 - see the module docstring

        filters = {"platform": platform, "chat_id": chat_id, "user_id": user_id}
        return await self._run(partial(sql_ops.list_sessions, filters=filters, limit=limit, offset=offset))

    async def delete_older_than(self, cutoff_ms: int) -> int:
        from bot.store import sql_ops  # noqa: PLC0415 - see the module docstring

        return await self._run(partial(sql_ops.delete_older_than, cutoff_ms=cutoff_ms), write=True)

    async def reset_all(self, *, older_than_ms: int | None = None) -> int:
        from bot.store import sql_ops  # noqa: PLC0415 - see the module docstring

        return await self._run(partial(sql_ops.reset_all, older_than_ms=older_than_ms), write=True)

    async def record_event(self, event: FailoverEvent) -> None:
        await self._quick(sqlite_turn.record_event, write=True, event=event)

    async def events(
        self, *, since_ms: int | None = None, profile_id: str | None = None, limit: int = 100
    ) -> list[FailoverEvent]:
        from bot.store import sql_ops  # noqa: PLC0415 - see the module docstring

        body = partial(sql_ops.list_events, since_ms=since_ms, profile_id=profile_id, limit=limit)
        return await self._run(body)

    async def prune_events(self, before_ms: int) -> int:
        from bot.store import sql_ops  # noqa: PLC0415 - see the module docstring

        return await self._run(partial(sql_ops.prune_events, before_ms=before_ms), write=True)

    async def count_sessions(self) -> int:
        from bot.store import sql_ops  # noqa: PLC0415 - see the module docstring

        return await self._run(sql_ops.count_sessions)

    async def acquire_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        return await self._quick(
            sqlite_turn.acquire_lease,
            write=True,
            key=key,
            holder=holder,
            ttl_ms=ttl_ms,
            now_ms=now_ms,
        )

    async def renew_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        return await self._quick(
            sqlite_turn.renew_lease,
            write=True,
            key=key,
            holder=holder,
            ttl_ms=ttl_ms,
            now_ms=now_ms,
        )

    async def release_lease(self, key: str, holder: str) -> bool:
        return await self._quick(sqlite_turn.release_lease, write=True, key=key, holder=holder)

    async def begin_turn(
        self,
        key: str,
        *,
        lease_key: str,
        holder: str,
        ttl_ms: int,
        agent_id: str,
        platform: str,
        chat_id: str,
        user_id: str | None = None,
        thread_id: str | None = None,
        now_ms: int,
    ) -> SessionRecord | None:
        values = rows.new_session(
            key,
            agent_id=agent_id,
            platform=platform,
            chat_id=chat_id,
            user_id=user_id,
            thread_id=thread_id,
            now_ms=now_ms,
        )
        return await self._quick(
            sqlite_turn.begin_turn,
            write=True,
            lease_key=lease_key,
            holder=holder,
            ttl_ms=ttl_ms,
            now_ms=now_ms,
            values=values,
        )

    async def end_turn(
        self,
        key: str,
        messages_: Sequence[NewMessage],
        *,
        now_ms: int,
        patch: SessionPatch | None = None,
        lease_key: str,
        holder: str,
    ) -> list[StoredMessage]:
        return await self._quick(
            sqlite_turn.end_turn,
            write=True,
            key=key,
            new=list(messages_),
            now_ms=now_ms,
            patch=patch,
            lease_key=lease_key,
            holder=holder,
        )
