"""Lease transaction bodies: one statement each, so concurrent processes never lose or double-grant a lease."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.store.sql_ops import dialect_insert
from bot.store.tables import leases

# Expiry is compared with the caller's clock: hosts sharing a database must keep their clocks in step (NTP),
# as they already must for cooldowns; a lease's TTL is many times any such skew.


def acquire(conn: Connection, *, key: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
    """Take the lease if it is free, expired, or already ours (then extended); True when we hold it."""
    insert = dialect_insert(conn, leases).values(key=key, holder=holder, expires_at=now_ms + ttl_ms)
    statement = insert.on_conflict_do_update(
        index_elements=[leases.c.key],
        set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
        where=sa.or_(leases.c.expires_at <= now_ms, leases.c.holder == holder),
    ).returning(leases.c.holder)
    return conn.execute(statement).first() is not None


def renew(conn: Connection, *, key: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
    """Extend our lease; False when another holder has taken it over (or it was released)."""
    statement = (
        sa.update(leases)
        .where(leases.c.key == key, leases.c.holder == holder)
        .values(expires_at=now_ms + ttl_ms)
        .returning(leases.c.key)
    )
    return conn.execute(statement).first() is not None


def release(conn: Connection, *, key: str, holder: str) -> bool:
    """Give the lease up if we still hold it; True when we did."""
    statement = (
        sa.delete(leases).where(leases.c.key == key, leases.c.holder == holder).returning(leases.c.key)
    )
    return conn.execute(statement).first() is not None
