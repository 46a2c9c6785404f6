"""Alembic, driven from code: schema upgrades at store start, and a drift check between tables and migrations.

No alembic.ini exists on disk: the configuration is built here, pointing at the ``migrations`` folder of
this package, so an installed modelbot migrates its database by itself. To write a new migration, call
``alembic.command.revision(alembic_config(url=...), message=..., autogenerate=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import CheckConstraint, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import StoreError
from bot.store.engine import WRITE, make_engine
from bot.store.tables import metadata

MIGRATIONS_DIR: Final = Path(__file__).resolve().with_name("migrations")
# Any constant shared by every modelbot process: b"modelbot" as a bigint.
_PG_MIGRATION_LOCK: Final = int.from_bytes(b"modelbot", "big")


def alembic_config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    """An Alembic config for this package's migrations, on ``connection`` or else on ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolates %
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest migration this code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` in one transaction; concurrent starts run it one at a time."""
    try:
        async with engine.connect() as conn:
            await conn.execution_options(**WRITE)  # SQLite: BEGIN IMMEDIATE serialises racing starts
            async with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Two processes starting at once would both CREATE TABLE; the second waits here, then
                    # finds the version table at head and does nothing.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                await conn.run_sync(_upgrade, revision)
    except CommandError as exc:
        # Typically a database migrated by a newer modelbot: its revision is unknown here.
        raise StoreError(f"Cannot migrate the session database: {exc}.") from exc
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(f"Cannot migrate the session database ({type(exc).__name__}).") from exc


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` with a short-lived engine of its own."""
    engine = make_engine(url)
    try:
        await upgrade_engine(engine, revision)
    finally:
        await engine.dispose()


def _drift(connection: Connection) -> list[Any]:
    diffs: list[Any] = list(compare_metadata(MigrationContext.configure(connection), metadata))
    # Autogenerate ignores CHECK constraints; compare their names so that they cannot drift either.
    inspector = inspect(connection)
    for table in metadata.tables.values():
        wanted = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        found = {c["name"] for c in inspector.get_check_constraints(table.name)}
        if wanted != found:
            diffs.append(("check_constraints", table.name, sorted(map(str, wanted)), sorted(map(str, found))))
    return diffs


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def schema_drift(url: str) -> list[Any]:
    """Alembic's autogenerate differences between the database and ``tables.py``: [] when in step."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_drift)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None before the first migration."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_revision)
    finally:
        await engine.dispose()
