"""Which exceptions are the database's failures (to become ``StoreError``), told without importing SQLAlchemy."""

from __future__ import annotations

import sqlite3
import sys


def database_errors() -> tuple[type[BaseException], ...]:
    """sqlite3's errors, the OS's, and SQLAlchemy's once it is imported: for an ``except`` clause, whose
    expression is evaluated only when an exception reaches it.

    The SQLite store runs a chat turn without SQLAlchemy (see ``bot.store.sqlite_database``), and naming
    ``SQLAlchemyError`` would import it; none of its errors can exist before it has been imported.
    """
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is None:
        return (sqlite3.Error, OSError)
    return (sqlite3.Error, OSError, sqlalchemy_exc.SQLAlchemyError)
