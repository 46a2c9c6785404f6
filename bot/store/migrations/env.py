"""Alembic's environment for the session store: migrates the connection ``bot.store.migrate`` hands over."""

from __future__ import annotations

import asyncio

from alembic import context
from alembic.config import Config
from sqlalchemy.engine import Connection

from bot.store.database import open_database
from bot.store.tables import metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: future migrations must copy-and-move tables there.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    # Already inside the caller's transaction: begin_transaction() then joins it rather than committing.
    with context.begin_transaction():
        context.run_migrations()


async def _standalone(url: str) -> None:
    database = open_database(url)
    try:
        await database.run(_configure, write=True)
    finally:
        await database.dispose()


def _main(config: Config) -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url: use bot.store.migrate, not bare alembic")
    if context.is_offline_mode():  # `--sql`: print the DDL for a DBA instead of running it
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_standalone(url))


# Alembic executes this file with its context set up; a plain import (a tool walking the package)
# finds no context and does nothing.
if hasattr(context, "config"):
    _main(context.config)
