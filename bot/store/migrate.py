"""Alembic, driven from code: schema upgrades at store start (the drift check lives in tests/migration_checks.py).

No alembic.ini exists on disk: the configuration is built here, pointing at the ``migrations`` folder of
this package, so an installed modelbot migrates its database by itself. To write a new migration, call
``alembic.command.revision(alembic_config(url=...), message=..., autogenerate=True)`` and set
``HEAD_REVISION`` to its id (a test checks the two agree).

A store whose schema is already at ``HEAD_REVISION`` starts without importing Alembic: its import (with
Mako) took a third of ``modelbot chat``'s start-up. On SQLite it does not import SQLAlchemy either (the
other half): the revision is read with sqlite3 on the event loop's connection.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bot.errors import StoreError
from bot.store.database import Database
from bot.store.db_errors import database_errors
from bot.store.sqlite_database import SqliteDatabase

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

MIGRATIONS_DIR: Final = Path(__file__).resolve().with_name("migrations")
HEAD_REVISION: Final = "0002"  # the newest migration in migrations/versions
# Any constant shared by every modelbot process: b"modelbot" as a bigint.
_PG_MIGRATION_LOCK: Final = int.from_bytes(b"modelbot", "big")


def alembic_config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    """An Alembic config for this package's migrations, on ``connection`` or else on ``url``."""
    from alembic.config import Config  # noqa: PLC0415 - see the module docstring

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolates %
    config.attributes["connection"] = connection
    return config


def _stored_revision(connection: Connection) -> str | None:
    """The revision the database records, read without Alembic; None before the first migration."""
    from sqlalchemy import inspect, text  # noqa: PLC0415 - see the module docstring

    if not inspect(connection).has_table("alembic_version"):
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


_SQLITE_HAS_VERSION_TABLE: Final = (
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
)


def _stored_sqlite_revision(connection: sqlite3.Connection) -> str | None:
    """``_stored_revision`` with sqlite3 alone."""
    if connection.execute(_SQLITE_HAS_VERSION_TABLE).fetchone() is None:
        return None
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


async def _read_revision(database: Database) -> str | None:
    if isinstance(database, SqliteDatabase):
        return await database.run_sql(_stored_sqlite_revision)
    return await database.run(_stored_revision)


def _upgrade(connection: Connection, revision: str) -> None:
    from sqlalchemy import text  # noqa: PLC0415 - see the module docstring

    if connection.dialect.name == "postgresql":
        # Two processes starting at once would both CREATE TABLE; the second waits here, then finds the
        # version table at head and does nothing. (On SQLite, BEGIN IMMEDIATE serialises racing starts.)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    from alembic import command  # noqa: PLC0415

    command.upgrade(alembic_config(connection), revision)


async def upgrade_database(database: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` in one transaction; concurrent starts run it one at a time."""
    try:
        if revision == "head" and await _read_revision(database) == HEAD_REVISION:
            return  # the common start: nothing to migrate, and Alembic never imported
    except database_errors() as exc:
        raise StoreError(f"Cannot migrate the session database ({type(exc).__name__}).") from exc
    from alembic.util import CommandError  # noqa: PLC0415

    try:
        await database.run(functools.partial(_upgrade, revision=revision), write=True)
    except CommandError as exc:
        # Typically a database migrated by a newer modelbot: its revision is unknown here.
        raise StoreError(f"Cannot migrate the session database: {exc}.") from exc
    except database_errors() as exc:
        raise StoreError(f"Cannot migrate the session database ({type(exc).__name__}).") from exc
