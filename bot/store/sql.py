"""The SQL ``SessionStore`` (SQLite or PostgreSQL): each method is one short transaction.

Read-modify-write is never a plain read followed by a write. Each such method starts with a statement
that takes the session row's write lock — ``UPDATE … RETURNING`` or ``SELECT … FOR UPDATE`` on
PostgreSQL, inside ``BEGIN IMMEDIATE`` on SQLite — so concurrent processes queue instead of losing
updates or failing with "database is locked".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.errors import StoreError
from bot.store import rows
from bot.store.engine import WRITE, make_engine
from bot.store.migrate import upgrade_engine
from bot.store.protocol import unknown_session
from bot.store.tables import events, messages, sessions
from bot.store.types import FailoverEvent, NewMessage, SessionPatch, SessionRecord, StoredMessage

_RESET_IN_BATCHES_OF = 500  # keeps IN (...) lists far below asyncpg's 32767 parameters


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite database file, e.g. the default ``$MODELBOT_STATE_DIR/modelbot.sqlite``."""
    return sa.URL.create("sqlite+aiosqlite", database=str(path)).render_as_string()


class SqlSessionStore:
    """Sessions in SQLite (``sqlite+aiosqlite://``) or PostgreSQL (``postgresql+asyncpg://``)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._engine: AsyncEngine | None = None
        # SQLite allows one writer. Pooled connections of one process that race for it wait in SQLite's
        # sleeping busy handler and can time out under load ("database is locked"); queueing this
        # process's writes here first leaves busy_timeout to arbitrate between processes only.
        self._write_lock: asyncio.Lock | None = None

    async def start(self) -> None:
        """Create the engine (and the SQLite file's directory) and migrate the schema to head."""
        if self._engine is not None:
            return
        engine = make_engine(self._url)
        try:
            await upgrade_engine(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._engine = engine

    async def stop(self) -> None:
        """Close every pooled connection."""
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    @asynccontextmanager
    async def _tx(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction; where the running store's database errors become ``StoreError``."""
        if self._engine is None:
            raise StoreError("The session store is not started.")
        try:
            async with contextlib.AsyncExitStack() as stack:
                if write and self._write_lock is not None:
                    await stack.enter_async_context(self._write_lock)
                conn = await stack.enter_async_context(self._engine.connect())
                if write:
                    await conn.execution_options(**WRITE)
                await stack.enter_async_context(conn.begin())
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"The session store failed ({type(exc).__name__}).") from exc

    @staticmethod
    def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT (same API in both dialects)."""
        return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)

    async def _lock(self, conn: AsyncConnection, key: str) -> SessionRecord:
        """Read the session row with its write lock held to the end of the transaction."""
        row = (await conn.execute(sa.select(sessions).where(sessions.c.key == key).with_for_update())).first()
        if row is None:
            raise unknown_session(key)
        return rows.session(row)

    async def get(self, key: str) -> SessionRecord | None:
        async with self._tx() as conn:
            row = (await conn.execute(sa.select(sessions).where(sessions.c.key == key))).first()
        return None if row is None else rows.session(row)

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
        async with self._tx(write=True) as conn:
            # A racing creator's row wins quietly; both callers then read the same row.
            await conn.execute(self._insert(conn, sessions).values(values).on_conflict_do_nothing())
            row = (await conn.execute(sa.select(sessions).where(sessions.c.key == key))).one()
        return rows.session(row)

    async def update(self, key: str, patch: SessionPatch, *, now_ms: int) -> SessionRecord:
        statement = (
            sa.update(sessions)
            .where(sessions.c.key == key)
            .values(updated_at=now_ms, **patch.changes())
            .returning(*sessions.c)
        )
        async with self._tx(write=True) as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            raise unknown_session(key)
        return rows.session(row)

    async def append_messages(
        self, key: str, messages_: Sequence[NewMessage], *, now_ms: int, patch: SessionPatch | None = None
    ) -> list[StoredMessage]:
        async with self._tx(write=True) as conn:
            # The UPDATE locks the session row first, so appends to one session never interleave and
            # message ids follow history order.
            bump = (
                sa.update(sessions)
                .where(sessions.c.key == key)
                .values(
                    updated_at=now_ms,
                    message_count=sessions.c.message_count + len(messages_),
                    **(patch.changes() if patch is not None else {}),
                )
                .returning(sessions.c.key)
            )
            if (await conn.execute(bump)).first() is None:
                raise unknown_session(key)
            return await self._insert_messages(conn, key, list(messages_), now_ms)

    async def _insert_messages(
        self, conn: AsyncConnection, key: str, new: list[NewMessage], now_ms: int
    ) -> list[StoredMessage]:
        if not new:
            return []
        statement = messages.insert().returning(*messages.c, sort_by_parameter_order=True)
        result = await conn.execute(statement, [rows.message_values(key, m, now_ms) for m in new])
        return [rows.message(row) for row in result]

    async def history(self, key: str, *, limit: int | None = None) -> list[StoredMessage]:
        if limit is not None and limit <= 0:
            return []
        statement = sa.select(messages).where(messages.c.session_key == key).order_by(messages.c.id.desc())
        if limit is not None:
            statement = statement.limit(limit)
        async with self._tx() as conn:
            result = await conn.execute(statement)
            found = [rows.message(row) for row in result]
        found.reverse()
        return found

    async def replace_history(
        self,
        key: str,
        summary: NewMessage,
        keep_last: int,
        *,
        now_ms: int,
        through_id: int | None = None,
    ) -> int:
        async with self._tx(write=True) as conn:
            record = await self._lock(conn, key)
            of_session = messages.c.session_key == key
            keep: sa.ColumnElement[bool] = sa.false()
            if keep_last > 0:
                tail = (
                    sa.select(messages.c.id).where(of_session).order_by(messages.c.id.desc()).limit(keep_last)
                )
                keep = messages.c.id.in_(tail.scalar_subquery())
            if through_id is not None:
                keep = sa.or_(keep, messages.c.id > through_id)
            kept = (
                await conn.execute(sa.select(messages).where(of_session, keep).order_by(messages.c.id))
            ).all()
            await conn.execute(sa.delete(messages).where(of_session))
            # Re-inserted after the summary so that id order stays history order.
            new = [summary, *(rows.as_new(row) for row in kept)]
            created = [now_ms] + [row.created_at for row in kept]
            await conn.execute(
                messages.insert(),
                [rows.message_values(key, m, at) for m, at in zip(new, created, strict=True)],
            )
            count = record.compaction_count + 1
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.key == key)
                .values(compaction_count=count, message_count=len(new), updated_at=now_ms)
            )
        return count

    async def reset(
        self, key: str, *, keep_model: bool, model_override: str | None = None, now_ms: int
    ) -> SessionRecord:
        values = rows.fresh_values()
        if model_override is not None:
            values.update(model_override=model_override, model_source="user")
        elif not keep_model:
            values.update(model_override=None, model_source=None)
        statement = (
            sa.update(sessions)
            .where(sessions.c.key == key)
            .values(updated_at=now_ms, **values)
            .returning(*sessions.c)
        )
        async with self._tx(write=True) as conn:
            row = (await conn.execute(statement)).first()  # takes the row lock before the delete
            if row is None:
                raise unknown_session(key)
            await conn.execute(sa.delete(messages).where(messages.c.session_key == key))
        return rows.session(row)

    async def list_sessions(
        self,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[SessionRecord]:
        statement = sa.select(sessions).order_by(sessions.c.updated_at.desc(), sessions.c.key)
        filters = (
            (sessions.c.platform, platform),
            (sessions.c.chat_id, chat_id),
            (sessions.c.user_id, user_id),
        )
        for column, value in filters:
            if value is not None:
                statement = statement.where(column == value)
        statement = statement.limit(max(limit, 0)).offset(max(offset, 0))
        async with self._tx() as conn:
            result = await conn.execute(statement)
            return [rows.session(row) for row in result]

    async def delete_older_than(self, cutoff_ms: int) -> int:
        async with self._tx(write=True) as conn:
            # Messages go with their session: ON DELETE CASCADE (foreign_keys=ON on SQLite).
            result = await conn.execute(sa.delete(sessions).where(sessions.c.updated_at < cutoff_ms))
        return int(result.rowcount)

    async def reset_all(self, *, older_than_ms: int | None = None) -> int:
        select = sa.select(sessions.c.key).order_by(sessions.c.key).with_for_update()
        if older_than_ms is not None:
            select = select.where(sessions.c.updated_at < older_than_ms)
        async with self._tx(write=True) as conn:
            # Lock the rows first so that no turn appends to a session between its two statements below.
            keys = list((await conn.execute(select)).scalars())
            for start in range(0, len(keys), _RESET_IN_BATCHES_OF):
                batch = keys[start : start + _RESET_IN_BATCHES_OF]
                await conn.execute(sa.delete(messages).where(messages.c.session_key.in_(batch)))
                await conn.execute(
                    sa.update(sessions).where(sessions.c.key.in_(batch)).values(rows.fresh_values())
                )
        return len(keys)

    async def record_event(self, event: FailoverEvent) -> None:
        async with self._tx(write=True) as conn:
            await conn.execute(events.insert().values(rows.event_values(event)))

    async def events(
        self, *, since_ms: int | None = None, profile_id: str | None = None, limit: int = 100
    ) -> list[FailoverEvent]:
        statement = sa.select(events).order_by(events.c.at.desc(), events.c.id.desc()).limit(max(limit, 0))
        if since_ms is not None:
            statement = statement.where(events.c.at >= since_ms)
        if profile_id is not None:
            statement = statement.where(events.c.profile_id == profile_id)
        async with self._tx() as conn:
            result = await conn.execute(statement)
            return [rows.event(row) for row in result]

    async def prune_events(self, before_ms: int) -> int:
        async with self._tx(write=True) as conn:
            result = await conn.execute(sa.delete(events).where(events.c.at < before_ms))
        return int(result.rowcount)

    async def count_sessions(self) -> int:
        async with self._tx() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(sessions))).scalar_one())
