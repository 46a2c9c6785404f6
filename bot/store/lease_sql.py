"""Lease transaction bodies: one statement each, so concurrent processes never lose or double-grant a lease;
and a message's first and last transactions, which take and give back its session's lease with the session's
own work (the twins of ``sqlite_turn.begin_turn`` and ``end_turn``).

The statements are built once (per dialect) with bound parameters: a session's lease is taken and given back
around every turn, and building an upsert anew each time cost twice as much as executing it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.store import sql_ops
from bot.store.sql_ops import dialect_insert
from bot.store.tables import leases
from bot.store.types import NewMessage, SessionPatch, SessionRecord, StoredMessage

# Expiry is compared with the caller's clock: hosts sharing a database must keep their clocks in step (NTP),
# as they already must for cooldowns; a lease's TTL is many times any such skew.

# Named unlike the columns: SQLAlchemy keeps the column names for the parameters of its own VALUES and SET.
_KEY = sa.bindparam("lease_key", type_=sa.Text())
_HOLDER = sa.bindparam("lease_holder", type_=sa.Text())
_EXPIRES = sa.bindparam("lease_expires_at", type_=sa.BigInteger())
_NOW = sa.bindparam("now_ms", type_=sa.BigInteger())
_RENEW = (
    sa.update(leases)
    .where(leases.c.key == _KEY, leases.c.holder == _HOLDER)
    .values(expires_at=_EXPIRES)
    .returning(leases.c.key)
)
# A released lease keeps its row, held by nobody ("") and expired, as on SQLite (see sqlite_turn._RELEASE).
_RELEASE = (
    sa.update(leases)
    .where(leases.c.key == _KEY, leases.c.holder == _HOLDER)
    .values(holder="", expires_at=0)
    .returning(leases.c.key)
)


@cache
def _acquire(dialect: str) -> Any:
    """Insert the lease, or take it over when it is expired or already the holder's. The row's values come
    from the execute parameters named after its columns (an INSERT without ``.values()``)."""
    statement = dialect_insert(dialect, leases)
    return statement.on_conflict_do_update(
        index_elements=[leases.c.key],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=sa.or_(leases.c.expires_at <= _NOW, leases.c.holder == statement.excluded.holder),
    ).returning(leases.c.holder)


def acquire(conn: Connection, *, key: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
    """Take the lease if it is free, expired, or already ours (then extended); True when we hold it."""
    params = {"key": key, "holder": holder, "expires_at": now_ms + ttl_ms, "now_ms": now_ms}
    return conn.execute(_acquire(conn.dialect.name), params).first() is not None


def renew(conn: Connection, *, key: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
    """Extend our lease; False when another holder has taken it over (or it was released)."""
    params = {"lease_key": key, "lease_holder": holder, "lease_expires_at": now_ms + ttl_ms}
    return conn.execute(_RENEW, params).first() is not None


def release(conn: Connection, *, key: str, holder: str) -> bool:
    """Give the lease up if we still hold it; True when we did."""
    return conn.execute(_RELEASE, {"lease_key": key, "lease_holder": holder}).first() is not None


def begin_turn(
    conn: Connection, *, lease_key: str, holder: str, ttl_ms: int, now_ms: int, values: dict[str, Any]
) -> SessionRecord | None:
    """Take the session's lease and, when taken, get or create the session; None when held elsewhere."""
    if not acquire(conn, key=lease_key, holder=holder, ttl_ms=ttl_ms, now_ms=now_ms):
        return None
    found = sql_ops.get(conn, key=values["key"])
    return sql_ops.create(conn, values=values) if found is None else found


def end_turn(
    conn: Connection,
    *,
    key: str,
    new: list[NewMessage],
    now_ms: int,
    patch: SessionPatch | None,
    lease_key: str,
    holder: str,
) -> list[StoredMessage]:
    """Save the turn's messages, then give the session's lease back (if still ours)."""
    stored = sql_ops.append_messages(conn, key=key, new=new, now_ms=now_ms, patch=patch)
    release(conn, key=lease_key, holder=holder)
    return stored
