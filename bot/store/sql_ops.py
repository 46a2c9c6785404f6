"""The SQL store's transaction bodies: synchronous functions over one ``Connection``, same SQL on both backends."""

from __future__ import annotations

import functools
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.store import rows
from bot.store.protocol import unknown_session
from bot.store.tables import events, leases, messages, sessions
from bot.store.types import FailoverEvent, NewMessage, SessionPatch, SessionRecord, StoredMessage

# Each body runs inside a transaction opened by bot.store.database: on SQLite in a worker thread, on
# PostgreSQL through run_sync. Read-modify-write is never a plain read followed by a write: each such body
# starts with a statement that takes the session row's write lock (UPDATE … RETURNING, or SELECT … FOR UPDATE
# on PostgreSQL, inside BEGIN IMMEDIATE on SQLite), so concurrent processes queue instead of losing updates
# or failing with "database is locked".

_RESET_IN_BATCHES_OF: Final = 500  # keeps IN (...) lists far below asyncpg's 32767 parameters

# rows' fields as columns, in the order its converters unpack them.
SESSION_COLUMNS: Final = tuple(sessions.c[name] for name in rows.SESSION_FIELDS)
MESSAGE_COLUMNS: Final = tuple(
    # As text: nearly every message has no attachment, and "[]" is cheaper to recognise than to decode.
    sa.type_coerce(messages.c.attachments, sa.Text()).label(name)
    if name == "attachments"
    else messages.c[name]
    for name in rows.MESSAGE_FIELDS
)
EVENT_COLUMNS: Final = tuple(events.c[name] for name in rows.EVENT_FIELDS)

# The statements of every turn, built once: building and hashing a fresh statement per call costs more
# than SQLite takes to run it.
_GET: Final = sa.select(*SESSION_COLUMNS).where(sessions.c.key == sa.bindparam("key"))
_NEWEST_FIRST: Final = (
    sa.select(*MESSAGE_COLUMNS)
    .where(messages.c.session_key == sa.bindparam("key"))
    .order_by(messages.c.id.desc())
)
_LAST_N: Final = _NEWEST_FIRST.limit(sa.bindparam("limit", type_=sa.Integer()))
_INSERT_MESSAGES: Final = messages.insert().returning(*MESSAGE_COLUMNS, sort_by_parameter_order=True)


def dialect_insert(conn: Connection | str, table: sa.Table) -> Any:
    """The dialect's INSERT (of ``conn``'s dialect, or one named), which knows ON CONFLICT (same API in both)."""
    # Imported here: the PostgreSQL dialect (with asyncpg's) is ~30 ms of a SQLite bot's start-up.
    if (conn if isinstance(conn, str) else conn.dialect.name) == "postgresql":
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite  # noqa: PLC0415

    return sqlite.insert(table)


def _lock(conn: Connection, key: str) -> SessionRecord:
    """Read the session row with its write lock held to the end of the transaction."""
    row = conn.execute(sa.select(*SESSION_COLUMNS).where(sessions.c.key == key).with_for_update()).first()
    if row is None:
        raise unknown_session(key)
    return rows.session(row)


def get(conn: Connection, *, key: str) -> SessionRecord | None:
    row = conn.execute(_GET, {"key": key}).first()
    return None if row is None else rows.session(row)


def create(conn: Connection, *, values: dict[str, Any]) -> SessionRecord:
    # A racing creator's row wins quietly; both callers then read the same row.
    conn.execute(dialect_insert(conn, sessions).values(values).on_conflict_do_nothing())
    return rows.session(conn.execute(_GET, {"key": values["key"]}).one())


@functools.lru_cache(maxsize=256)
def _bump(columns: tuple[str, ...], *, appending: bool) -> sa.Update:
    """The UPDATE of one session's ``columns`` and bookkeeping, all bound: built once per set of columns."""
    values: dict[str, Any] = {c: sa.bindparam(f"v_{c}", type_=sessions.c[c].type) for c in columns}
    values["updated_at"] = sa.bindparam("v_now", type_=sessions.c.updated_at.type)
    if appending:
        values["message_count"] = sessions.c.message_count + sa.bindparam("v_added", type_=sa.Integer())
    statement = sa.update(sessions).where(sessions.c.key == sa.bindparam("v_key", type_=sa.Text()))
    return statement.values(values).returning(*((sessions.c.key,) if appending else SESSION_COLUMNS))


def _bump_params(key: str, now_ms: int, changes: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    params = {"v_key": key, "v_now": now_ms, **{f"v_{c}": v for c, v in changes.items()}}
    return tuple(sorted(changes)), params


def update(conn: Connection, *, key: str, patch: SessionPatch, now_ms: int) -> SessionRecord:
    columns, params = _bump_params(key, now_ms, patch.changes())
    row = conn.execute(_bump(columns, appending=False), params).first()
    if row is None:
        raise unknown_session(key)
    return rows.session(row)


def append_messages(
    conn: Connection, *, key: str, new: list[NewMessage], now_ms: int, patch: SessionPatch | None
) -> list[StoredMessage]:
    # The UPDATE locks the session row first, so appends to one session never interleave and message ids
    # follow history order.
    columns, params = _bump_params(key, now_ms, patch.changes() if patch is not None else {})
    if conn.execute(_bump(columns, appending=True), {**params, "v_added": len(new)}).first() is None:
        raise unknown_session(key)
    if not new:
        return []
    result = conn.execute(_INSERT_MESSAGES, [rows.message_values(key, m, now_ms) for m in new])
    return [rows.message(row) for row in result]


def history(conn: Connection, *, key: str, limit: int | None) -> list[StoredMessage]:
    """The newest ``limit`` messages (all when None), oldest first."""
    if limit is None:
        result = conn.execute(_NEWEST_FIRST, {"key": key})
    else:
        result = conn.execute(_LAST_N, {"key": key, "limit": limit})
    return [rows.message(row) for row in reversed(result.all())]


class TooLongForQuick(Exception):
    """``replace_history(at_most=…)`` found more messages than that, and did nothing."""


def replace_history(
    conn: Connection,
    *,
    key: str,
    summary: NewMessage,
    keep_last: int,
    now_ms: int,
    through_id: int | None,
    at_most: int | None = None,
) -> int:
    """Compact ``key``'s history; ``TooLongForQuick`` (rolled back, nothing done) when ``at_most`` is given
    and the session holds more messages than that."""
    record = _lock(conn, key)
    if at_most is not None and record.message_count > at_most:
        raise TooLongForQuick(key)
    of_session = messages.c.session_key == key
    keep: sa.ColumnElement[bool] = sa.false()
    if keep_last > 0:
        tail = sa.select(messages.c.id).where(of_session).order_by(messages.c.id.desc()).limit(keep_last)
        keep = messages.c.id.in_(tail.scalar_subquery())
    if through_id is not None:
        keep = sa.or_(keep, messages.c.id > through_id)
    kept = conn.execute(sa.select(*MESSAGE_COLUMNS).where(of_session, keep).order_by(messages.c.id)).all()
    conn.execute(sa.delete(messages).where(of_session))
    # Re-inserted after the summary so that id order stays history order.
    new = [summary, *(rows.as_new(row) for row in kept)]
    created = [now_ms] + [row.created_at for row in kept]
    conn.execute(
        messages.insert(), [rows.message_values(key, m, at) for m, at in zip(new, created, strict=True)]
    )
    count = record.compaction_count + 1
    conn.execute(
        sa.update(sessions)
        .where(sessions.c.key == key)
        .values(compaction_count=count, message_count=len(new), updated_at=now_ms)
    )
    return count


def reset(conn: Connection, *, key: str, values: dict[str, Any], now_ms: int) -> SessionRecord:
    statement = (
        sa.update(sessions)
        .where(sessions.c.key == key)
        .values(updated_at=now_ms, **values)
        .returning(*SESSION_COLUMNS)
    )
    row = conn.execute(statement).first()  # takes the row lock before the delete
    if row is None:
        raise unknown_session(key)
    conn.execute(sa.delete(messages).where(messages.c.session_key == key))
    return rows.session(row)


def list_sessions(
    conn: Connection, *, filters: dict[str, str | None], limit: int, offset: int
) -> list[SessionRecord]:
    statement = sa.select(*SESSION_COLUMNS).order_by(sessions.c.updated_at.desc(), sessions.c.key)
    for column, value in filters.items():
        if value is not None:
            statement = statement.where(sessions.c[column] == value)
    statement = statement.limit(max(limit, 0)).offset(max(offset, 0))
    return [rows.session(row) for row in conn.execute(statement)]


def delete_older_than(conn: Connection, *, cutoff_ms: int) -> int:
    # A released lease keeps its row (held by nobody, expired at 0: see sqlite_turn._RELEASE); rows of leases
    # that ran out before the cutoff go with the idle sessions. A row that has expired is free already.
    conn.execute(sa.delete(leases).where(leases.c.expires_at < cutoff_ms))
    # Messages go with their session: ON DELETE CASCADE (foreign_keys=ON on SQLite).
    return int(conn.execute(sa.delete(sessions).where(sessions.c.updated_at < cutoff_ms)).rowcount)


def reset_all(conn: Connection, *, older_than_ms: int | None) -> int:
    select = sa.select(sessions.c.key).order_by(sessions.c.key).with_for_update()
    if older_than_ms is not None:
        select = select.where(sessions.c.updated_at < older_than_ms)
    # Lock the rows first so that no turn appends to a session between its two statements below.
    keys = list(conn.execute(select).scalars())
    for start in range(0, len(keys), _RESET_IN_BATCHES_OF):
        batch = keys[start : start + _RESET_IN_BATCHES_OF]
        conn.execute(sa.delete(messages).where(messages.c.session_key.in_(batch)))
        conn.execute(sa.update(sessions).where(sessions.c.key.in_(batch)).values(rows.fresh_values()))
    return len(keys)


def record_event(conn: Connection, *, event: FailoverEvent) -> None:
    conn.execute(events.insert().values(rows.event_values(event)))


def list_events(
    conn: Connection, *, since_ms: int | None, profile_id: str | None, limit: int
) -> list[FailoverEvent]:
    statement = (
        sa.select(*EVENT_COLUMNS).order_by(events.c.at.desc(), events.c.id.desc()).limit(max(limit, 0))
    )
    if since_ms is not None:
        statement = statement.where(events.c.at >= since_ms)
    if profile_id is not None:
        statement = statement.where(events.c.profile_id == profile_id)
    return [rows.event(row) for row in conn.execute(statement)]


def prune_events(conn: Connection, *, before_ms: int) -> int:
    return int(conn.execute(sa.delete(events).where(events.c.at < before_ms)).rowcount)


def count_sessions(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(sessions)).scalar_one())
