"""Schema history: a database of the first release upgrades to the auth-state schema with its data, and back."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from bot.store.database import open_database
from bot.store.migrate import alembic_config
from bot.store.sql import sqlite_url
from bot.store.tables import sessions
from tests.migration_checks import current_revision, head_revision, schema_drift, upgrade
from tests.pg import pg_url, scratch_database  # noqa: F401

AUTH_TABLES = {"auth_agents", "auth_credentials", "auth_order", "auth_last_good", "auth_usage", "auth_meta"}


def _insert_session(conn: Connection) -> None:
    values = {"key": "telegram:chat:1", "agent_id": "main", "platform": "telegram", "chat_id": "1"}
    conn.execute(sessions.insert().values(**values, created_at=1, updated_at=1))


def _count_sessions(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(sessions)).scalar_one())


def _tables(conn: Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _downgrade(conn: Connection, revision: str) -> None:
    command.downgrade(alembic_config(conn), revision)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_first_release_database_upgrades_with_its_sessions_and_downgrades(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """0001 → head adds the auth tables and keeps the sessions; head → 0001 removes only what 0002 added."""
    assert head_revision() == "0002"
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            url = sqlite_url(tmp_path / "old.sqlite")
        else:
            url = await stack.enter_async_context(scratch_database(request.getfixturevalue("pg_url")))
        await upgrade(url, "0001")
        database = open_database(url)
        stack.push_async_callback(database.dispose)
        await database.run(_insert_session, write=True)
        assert not (await database.run(_tables)) & AUTH_TABLES

        await upgrade(url)
        assert await current_revision(url) == "0002"
        assert await schema_drift(url) == []
        assert AUTH_TABLES | {"leases"} <= await database.run(_tables)
        assert await database.run(_count_sessions) == 1

        await database.run(functools.partial(_downgrade, revision="0001"), write=True)
        assert await current_revision(url) == "0001"
        assert not (await database.run(_tables)) & (AUTH_TABLES | {"leases"})
        assert await database.run(_count_sessions) == 1
