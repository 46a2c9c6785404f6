"""Checks of the schema the migrations make, for tests: the head revision, a database's revision, drift.

They are what a developer runs after writing a migration (see ``bot/store/migrate.py``); production never
needs them, so they live with the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import CheckConstraint, inspect
from sqlalchemy.engine import Connection

from bot.store.database import open_database
from bot.store.migrate import alembic_config, upgrade_database
from bot.store.tables import metadata

T = TypeVar("T")


def head_revision() -> str | None:
    """The newest migration the code knows, as Alembic reads the migrations folder."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` with a short-lived engine of its own."""
    database = open_database(url)
    try:
        await upgrade_database(database, revision)
    finally:
        await database.dispose()


def _drift(connection: Connection) -> list[Any]:
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

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
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    return MigrationContext.configure(connection).get_current_revision()


async def _read(url: str, body: Callable[[Connection], T]) -> T:
    database = open_database(url)
    try:
        return await database.run(body)
    finally:
        await database.dispose()


async def schema_drift(url: str) -> list[Any]:
    """Alembic's autogenerate differences between the database and ``tables.py``: [] when in step."""
    return await _read(url, _drift)


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None before the first migration."""
    return await _read(url, _revision)
