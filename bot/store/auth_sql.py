"""Transaction bodies of the auth state (auth.store "database"): same SQL on SQLite and PostgreSQL.

Writes never read-then-write unlocked: a usage update locks its one row (``SELECT … FOR UPDATE`` on
PostgreSQL; on SQLite the whole transaction is ``BEGIN IMMEDIATE``), a whole-document edit first locks the
agent's row and its usage rows, and lastGood is a single upsert. Caller-supplied functions run inside the
transaction and must be pure: SQLite may run a body a second time when its first try found the database busy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.store.auth_types import AgentAuthRows, Reseal, RowsEdit, SealedCredential, UsageEdit, UsageRow
from bot.store.sql_ops import dialect_insert
from bot.store.tables import (
    auth_agents,
    auth_credentials,
    auth_last_good,
    auth_meta,
    auth_order,
    auth_usage,
)

KEY_CHECK: Final = "key_check"
_AGENT = sa.bindparam("agent_id", type_=sa.Text())
_CREDENTIAL_COLUMNS: Final = (
    auth_credentials.c.profile_id,
    auth_credentials.c.provider,
    auth_credentials.c.type,
    auth_credentials.c.secret,
    auth_credentials.c.refresh,
    auth_credentials.c.email,
    auth_credentials.c.expires,
    auth_credentials.c.extra,
)
_READ_AGENT: Final = sa.select(auth_agents.c.version, auth_agents.c.extra).where(
    auth_agents.c.agent_id == _AGENT
)
_READ_CREDENTIALS: Final = (
    sa.select(*_CREDENTIAL_COLUMNS)
    .where(auth_credentials.c.agent_id == _AGENT)
    .order_by(auth_credentials.c.profile_id)
)
_READ_ORDER: Final = (
    sa.select(auth_order.c.provider, auth_order.c.profile_ids)
    .where(auth_order.c.agent_id == _AGENT)
    .order_by(auth_order.c.provider)
)
_READ_LAST_GOOD: Final = (
    sa.select(auth_last_good.c.provider, auth_last_good.c.profile_id)
    .where(auth_last_good.c.agent_id == _AGENT)
    .order_by(auth_last_good.c.provider)
)
_READ_USAGE: Final = (
    sa.select(auth_usage.c.profile_id, auth_usage.c.stats, auth_usage.c.rev)
    .where(auth_usage.c.agent_id == _AGENT)
    .order_by(auth_usage.c.profile_id)
)
_LOCK_USAGE: Final = (
    sa.select(auth_usage.c.stats, auth_usage.c.rev)
    .where(auth_usage.c.agent_id == _AGENT, auth_usage.c.profile_id == sa.bindparam("profile_id"))
    .with_for_update()
)


def _read(conn: Connection, agent_id: str) -> AgentAuthRows:
    params = {"agent_id": agent_id}
    agent = conn.execute(_READ_AGENT, params).first()
    credentials = {row[0]: SealedCredential(*row[1:]) for row in conn.execute(_READ_CREDENTIALS, params)}
    order = {provider: list(ids) for provider, ids in conn.execute(_READ_ORDER, params)}
    last_good = {str(provider): str(pid) for provider, pid in conn.execute(_READ_LAST_GOOD, params)}
    usage = {pid: UsageRow(dict(stats), int(rev)) for pid, stats, rev in conn.execute(_READ_USAGE, params)}
    return AgentAuthRows(
        credentials=credentials,
        order=order,
        last_good=last_good,
        usage=usage,
        version=1 if agent is None else int(agent[0]),
        extra={} if agent is None else dict(agent[1]),
    )


def load(conn: Connection, *, agent_id: str) -> AgentAuthRows:
    """The agent's whole state, as of one moment."""
    if conn.dialect.name == "postgresql":
        # Five SELECTs must see one snapshot, or a profile removed meanwhile could show without its stats.
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    return _read(conn, agent_id)


def update_usage(
    conn: Connection, *, agent_id: str, profile_id: str, change: UsageEdit, now_ms: int
) -> tuple[UsageRow, UsageRow]:
    """Apply ``change`` to one profile's stats under its row lock; returns (before, after)."""
    params = {"agent_id": agent_id, "profile_id": profile_id}
    row = conn.execute(_LOCK_USAGE, params).first()
    if row is None:
        # Ensure the row, then lock it: racing creators both end up waiting on the same row lock.
        values = {**params, "stats": {}, "rev": 0, "updated_at": now_ms}
        conn.execute(dialect_insert(conn, auth_usage).values(values).on_conflict_do_nothing())
        row = conn.execute(_LOCK_USAGE, params).one()
    before = UsageRow(dict(row[0]), int(row[1]))
    stats = change(before.stats)
    if stats == before.stats:
        return before, before
    after = UsageRow(stats, before.rev + 1)
    conn.execute(
        sa.update(auth_usage)
        .where(auth_usage.c.agent_id == agent_id, auth_usage.c.profile_id == profile_id)
        .values(stats=after.stats, rev=after.rev, updated_at=now_ms)
    )
    return before, after


def set_last_good(conn: Connection, *, agent_id: str, provider: str, profile_id: str) -> None:
    """One upsert; a row that already names the profile is left alone."""
    insert = dialect_insert(conn, auth_last_good).values(
        agent_id=agent_id, provider=provider, profile_id=profile_id
    )
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[auth_last_good.c.agent_id, auth_last_good.c.provider],
            set_={"profile_id": insert.excluded.profile_id},
            where=auth_last_good.c.profile_id != insert.excluded.profile_id,
        )
    )


def edit(conn: Connection, *, agent_id: str, change: RowsEdit, now_ms: int) -> AgentAuthRows:
    """A whole-document edit: lock the agent (and its usage rows), apply ``change``, write what changed."""
    conn.execute(
        dialect_insert(conn, auth_agents)
        .values(agent_id=agent_id, version=1, extra={})
        .on_conflict_do_nothing()
    )
    conn.execute(
        sa.select(auth_agents.c.agent_id).where(auth_agents.c.agent_id == agent_id).with_for_update()
    )
    conn.execute(
        sa.select(auth_usage.c.profile_id).where(auth_usage.c.agent_id == agent_id).with_for_update()
    )
    current = _read(conn, agent_id)
    new = change(current)
    if new == current:
        return current
    _write_credentials(conn, agent_id, current.credentials, new.credentials, now_ms)
    _write_pairs(conn, auth_order, "profile_ids", agent_id, old=current.order, new=new.order)
    _write_pairs(conn, auth_last_good, "profile_id", agent_id, old=current.last_good, new=new.last_good)
    _write_usage(conn, agent_id, current.usage, new.usage, now_ms)
    if (new.version, new.extra) != (current.version, current.extra):
        conn.execute(
            sa.update(auth_agents)
            .where(auth_agents.c.agent_id == agent_id)
            .values(version=new.version, extra=new.extra)
        )
    return _read(conn, agent_id)


def _delete(
    conn: Connection, table: sa.Table, key: sa.Column[Any], agent_id: str, gone: Iterable[str]
) -> None:
    names = sorted(gone)
    if names:
        conn.execute(sa.delete(table).where(table.c.agent_id == agent_id, key.in_(names)))


def _write_credentials(
    conn: Connection,
    agent_id: str,
    old: dict[str, SealedCredential],
    new: dict[str, SealedCredential],
    now_ms: int,
) -> None:
    _delete(conn, auth_credentials, auth_credentials.c.profile_id, agent_id, old.keys() - new.keys())
    for pid, cred in new.items():
        if old.get(pid) == cred:
            continue
        values = {
            "provider": cred.provider,
            "type": cred.type,
            "secret": cred.secret,
            "refresh": cred.refresh,
            "email": cred.email,
            "expires": cred.expires,
            "extra": cred.extra,
            "updated_at": now_ms,
        }
        insert = dialect_insert(conn, auth_credentials).values(agent_id=agent_id, profile_id=pid, **values)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[auth_credentials.c.agent_id, auth_credentials.c.profile_id], set_=values
            )
        )


def _write_pairs(
    conn: Connection,
    table: sa.Table,
    column: str,
    agent_id: str,
    *,
    old: dict[str, Any],
    new: dict[str, Any],
) -> None:
    """order and lastGood: one row per provider."""
    _delete(conn, table, table.c.provider, agent_id, old.keys() - new.keys())
    for provider, value in new.items():
        if old.get(provider) == value:
            continue
        insert = dialect_insert(conn, table).values(agent_id=agent_id, provider=provider, **{column: value})
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[table.c.agent_id, table.c.provider], set_={column: value}
            )
        )


def _write_usage(
    conn: Connection, agent_id: str, old: dict[str, UsageRow], new: dict[str, UsageRow], now_ms: int
) -> None:
    _delete(conn, auth_usage, auth_usage.c.profile_id, agent_id, old.keys() - new.keys())
    for pid, row in new.items():
        if pid in old and old[pid].stats == row.stats:
            continue
        insert = dialect_insert(conn, auth_usage).values(
            agent_id=agent_id, profile_id=pid, stats=row.stats, rev=1, updated_at=now_ms
        )
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[auth_usage.c.agent_id, auth_usage.c.profile_id],
                set_={"stats": row.stats, "rev": auth_usage.c.rev + 1, "updated_at": now_ms},
            )
        )


def key_check(conn: Connection, *, make: Callable[[], str]) -> str:
    """The database's key check, created from ``make()`` by the first process that asks."""
    statement = sa.select(auth_meta.c.value).where(auth_meta.c.name == KEY_CHECK)
    found = conn.execute(statement).scalar()
    if found is None:
        conn.execute(
            dialect_insert(conn, auth_meta).values(name=KEY_CHECK, value=make()).on_conflict_do_nothing()
        )
        found = conn.execute(statement).scalar_one()
    return str(found)


def reseal_all(conn: Connection, *, reseal: Reseal) -> int:
    """Seal every stored secret of every agent (and the key check) again with the newest key, all or none;
    returns how many credentials were resealed."""
    rows = conn.execute(
        sa.select(
            auth_credentials.c.agent_id,
            auth_credentials.c.profile_id,
            auth_credentials.c.secret,
            auth_credentials.c.refresh,
            auth_credentials.c.extra,
        ).with_for_update()
    ).all()
    for agent_id, pid, secret, refresh, extra in rows:
        what = f"profile {pid} of agent {agent_id}"
        conn.execute(
            sa.update(auth_credentials)
            .where(auth_credentials.c.agent_id == agent_id, auth_credentials.c.profile_id == pid)
            .values(
                secret=reseal(secret, what),
                refresh=None if refresh is None else reseal(refresh, what),
                extra=None if extra is None else reseal(extra, what),
            )
        )
    check = conn.execute(
        sa.select(auth_meta.c.value).where(auth_meta.c.name == KEY_CHECK).with_for_update()
    ).scalar()
    if check is not None:
        conn.execute(
            sa.update(auth_meta)
            .where(auth_meta.c.name == KEY_CHECK)
            .values(value=reseal(str(check), "the key check of this database"))
        )
    return len(rows)
