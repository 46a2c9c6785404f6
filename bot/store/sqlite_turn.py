"""The SQLite store's quick transactions as SQL text on the sqlite3 connection: the bodies of a chat turn.

Same statements (but for RETURNING: see ``_INSERT_MESSAGE``), same rows and same locking as their SQLAlchemy
twins in ``sql_ops`` and ``lease_sql``, which PostgreSQL and the bulk transactions keep using: a turn's
transactions (its lease with the session, the saved turn with the lease's release) cost three times as much
through SQLAlchemy's execution machinery as SQLite took to run them. The rows come back in ``rows``' column
order for its converters (a test compares), and the store contract tests pin that both behave alike. Writes
run inside BEGIN IMMEDIATE (``SqliteDatabase.run_sql(…, write=True)``), so a read-modify-write body holds
SQLite's write lock from its first statement. Nothing here imports SQLAlchemy.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from typing import Any, Final

from bot.store import rows
from bot.store.protocol import unknown_session
from bot.store.types import FailoverEvent, NewMessage, SessionPatch, SessionRecord, StoredMessage

# The columns of rows.SESSION_FIELDS and rows.MESSAGE_FIELDS, in their order ("key" is an SQL keyword).
_SESSION: Final = ", ".join(f'"{name}"' for name in rows.SESSION_FIELDS)
_MESSAGE: Final = ", ".join(rows.MESSAGE_FIELDS)

_GET: Final = f'SELECT {_SESSION} FROM sessions WHERE "key" = ?'  # noqa: S608 - column names, never input
_CREATE: Final = (
    'INSERT INTO sessions ("key", agent_id, platform, chat_id, user_id, thread_id, created_at, updated_at) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_NEWEST_FIRST: Final = f"SELECT {_MESSAGE} FROM messages WHERE session_key = ? ORDER BY id DESC"  # noqa: S608
_LAST_N: Final = f"{_NEWEST_FIRST} LIMIT ?"
# One row at a time, so that ids follow the order of the list (a turn saves two). No RETURNING in the writes:
# the stored message is what was written plus its id (``lastrowid``), and whether a row matched is
# ``rowcount``; through the sqlite3 module a RETURNING clause cost 12-16 us a statement (~70 us a turn).
_INSERT_MESSAGE: Final = (
    "INSERT INTO messages (session_key, role, content, attachments, token_estimate, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_SESSION_CREATED: Final = (
    "key", "agent_id", "platform", "chat_id", "user_id", "thread_id", "created_at", "updated_at"
)  # fmt: skip
_INSERT_EVENT: Final = (
    "INSERT INTO events (at, session_key, ref, profile_id, reason, cooldown_until) VALUES (?, ?, ?, ?, ?, ?)"
)
_ACQUIRE: Final = (
    'INSERT INTO leases ("key", holder, expires_at) VALUES (?, ?, ?) '
    'ON CONFLICT ("key") DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at '
    "WHERE leases.expires_at <= ? OR leases.holder = excluded.holder"
)
_RENEW: Final = 'UPDATE leases SET expires_at = ? WHERE "key" = ? AND holder = ?'
# A released lease keeps its row, held by nobody ('') and expired: updated in place it is one page of the
# WAL per release and per next acquire, where deleting and inserting it again also rewrote its key's index
# page each time (acquire + release 54 -> 42 us in a loop of their own). Holder ids are never empty.
_RELEASE: Final = "UPDATE leases SET holder = '', expires_at = 0 WHERE \"key\" = ? AND holder = ?"


def get(conn: sqlite3.Connection, *, key: str) -> SessionRecord | None:
    row = conn.execute(_GET, (key,)).fetchone()
    return None if row is None else rows.session(row)


def create(conn: sqlite3.Connection, *, values: dict[str, Any]) -> SessionRecord:
    # A racing creator's row wins quietly; both callers then read the same row.
    conn.execute(_CREATE, [values[c] for c in _SESSION_CREATED])
    row = conn.execute(_GET, (values["key"],)).fetchone()
    if row is None:  # cannot happen inside this transaction; sql_ops' ``.one()`` would raise too
        raise unknown_session(values["key"])
    return rows.session(row)


@functools.lru_cache(maxsize=256)
def _bump(columns: tuple[str, ...], *, appending: bool) -> str:
    """The UPDATE of one session's ``columns`` and bookkeeping (parameters: the columns' values in this
    order, now, [the messages added,] the key), built once per set of columns."""
    assigned = [f'"{_session_field(c)}" = ?' for c in columns]
    assigned.append("updated_at = ?")
    if appending:
        assigned.append("message_count = message_count + ?")
    returning = "" if appending else f" RETURNING {_SESSION}"  # appending: rowcount says whether it matched
    # Column names of the table (checked in _session_field), every value bound.
    return f'UPDATE sessions SET {", ".join(assigned)} WHERE "key" = ?{returning}'  # noqa: S608


def _session_field(name: str) -> str:
    if name not in rows.SESSION_FIELDS:  # a column of the table, never a name from elsewhere
        raise KeyError(name)
    return name


def _changes(patch: SessionPatch | None) -> tuple[tuple[str, ...], list[Any]]:
    changes = {} if patch is None else patch.changes()
    columns = tuple(sorted(changes))
    return columns, [changes[c] for c in columns]


def update(conn: sqlite3.Connection, *, key: str, patch: SessionPatch, now_ms: int) -> SessionRecord:
    columns, values = _changes(patch)
    row = conn.execute(_bump(columns, appending=False), [*values, now_ms, key]).fetchone()
    if row is None:
        raise unknown_session(key)
    return rows.session(row)


def append_messages(
    conn: sqlite3.Connection, *, key: str, new: list[NewMessage], now_ms: int, patch: SessionPatch | None
) -> list[StoredMessage]:
    # The UPDATE comes first, as in sql_ops: a missing session fails before any message is written.
    columns, values = _changes(patch)
    if conn.execute(_bump(columns, appending=True), [*values, now_ms, len(new), key]).rowcount != 1:
        raise unknown_session(key)
    stored = []
    for m in new:
        row_id = conn.execute(_INSERT_MESSAGE, _message_params(key, m, now_ms)).lastrowid
        assert row_id is not None  # set by every INSERT of a row
        stored.append(
            StoredMessage(row_id, key, m.role, m.content, tuple(m.attachments), m.token_estimate, now_ms)
        )
    return stored


def _message_params(key: str, new: NewMessage, created_at: int) -> tuple[Any, ...]:
    # The JSON text SQLAlchemy's JSON type writes for the same list (its default serializer, json.dumps).
    attachments = (
        json.dumps(rows.message_values(key, new, created_at)["attachments"]) if new.attachments else "[]"
    )
    return (key, new.role, new.content, attachments, new.token_estimate, created_at)


def history(conn: sqlite3.Connection, *, key: str, limit: int | None) -> list[StoredMessage]:
    """The newest ``limit`` messages (all when None), oldest first."""
    if limit is None:
        found = conn.execute(_NEWEST_FIRST, (key,)).fetchall()
    else:
        found = conn.execute(_LAST_N, (key, limit)).fetchall()
    return [rows.message(row) for row in reversed(found)]


def begin_turn(
    conn: sqlite3.Connection, *, lease_key: str, holder: str, ttl_ms: int, now_ms: int, values: dict[str, Any]
) -> SessionRecord | None:
    """A message's first transaction: take its session's lease and, when taken, get or create the session
    (``values``: a new one's columns); None, with nothing done, when another holder has the lease."""
    if not acquire_lease(conn, key=lease_key, holder=holder, ttl_ms=ttl_ms, now_ms=now_ms):
        return None
    found = get(conn, key=values["key"])
    return create(conn, values=values) if found is None else found


def end_turn(
    conn: sqlite3.Connection,
    *,
    key: str,
    new: list[NewMessage],
    now_ms: int,
    patch: SessionPatch | None,
    lease_key: str,
    holder: str,
) -> list[StoredMessage]:
    """A turn's last transaction: save its messages, then give the session's lease back (if still ours)."""
    stored = append_messages(conn, key=key, new=new, now_ms=now_ms, patch=patch)
    release_lease(conn, key=lease_key, holder=holder)
    return stored


def record_event(conn: sqlite3.Connection, *, event: FailoverEvent) -> None:
    conn.execute(
        _INSERT_EVENT,
        (event.at, event.session_key, event.ref, event.profile_id, event.reason, event.cooldown_until),
    )


def acquire_lease(conn: sqlite3.Connection, *, key: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
    """Take the lease if it is free, expired, or already ours (then extended); True when we hold it."""
    # A row inserted, or updated by DO UPDATE: 1; the WHERE refused the update: 0.
    return conn.execute(_ACQUIRE, (key, holder, now_ms + ttl_ms, now_ms)).rowcount == 1


def renew_lease(conn: sqlite3.Connection, *, key: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
    """Extend our lease; False when another holder has taken it over (or it was released)."""
    return conn.execute(_RENEW, (now_ms + ttl_ms, key, holder)).rowcount == 1


def release_lease(conn: sqlite3.Connection, *, key: str, holder: str) -> bool:
    """Give the lease up if we still hold it; True when we did."""
    return conn.execute(_RELEASE, (key, holder)).rowcount == 1
