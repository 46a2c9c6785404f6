"""PostgreSQL for tests: a throwaway database on the local server, else a throwaway cluster, else a skip.

Use with ``from tests.pg import pg_url  # noqa: F401`` and request ``pg_url`` (a
``postgresql+asyncpg://`` URL of an empty database that lives for the whole test session).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import asyncpg  # type: ignore[import-untyped]  # no stubs; pyproject has no override for it
import pytest

T = TypeVar("T")

SERVER_HOST = "127.0.0.1"
SERVER_PORT = 5432
SERVER_USERS = ("postgres", "root")
SERVER_DATABASE = "test"
CONNECT_TIMEOUT_S = 3.0


class Server(NamedTuple):
    """A PostgreSQL server we may create databases on."""

    admin_dsn: str
    user: str
    host: str
    port: int


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a loop of its own, in a thread, whatever loop the caller may be inside."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def _execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _dsn(user: str, host: str, port: int, database: str) -> str:
    return f"postgresql://{user}@{host}:{port}/{database}"


def as_sqlalchemy(dsn: str) -> str:
    """The asyncpg DSN as the SQLAlchemy URL the store takes."""
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def as_asyncpg(url: str) -> str:
    """The store's SQLAlchemy URL as a DSN asyncpg understands."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def truncate_all(url: str) -> None:
    """Empty every table but alembic's, so a test starts from a clean but migrated database."""
    conn = await asyncpg.connect(as_asyncpg(url), timeout=CONNECT_TIMEOUT_S)
    try:
        names = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        if names:
            quoted = ", ".join(f'"{name}"' for name in names)
            await conn.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[str]:
    """Another empty database on the server of ``url`` (for tests that need a never-migrated one)."""
    name = f"modelbot_scratch_{secrets.token_hex(6)}"
    await _execute(as_asyncpg(url), f'CREATE DATABASE "{name}"')
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        await _execute(as_asyncpg(url), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _database_on(server: Server) -> Iterator[str]:
    """A uniquely named database on a running server, dropped afterwards (even if tests left connections)."""
    name = f"modelbot_test_{secrets.token_hex(6)}"
    _run(functools.partial(_execute, server.admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield _dsn(server.user, server.host, server.port, name)
    finally:
        _run(functools.partial(_execute, server.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _local_server() -> Server | None:
    """The server on 127.0.0.1:5432, or None when it does not answer."""
    for user in SERVER_USERS:
        dsn = _dsn(user, SERVER_HOST, SERVER_PORT, SERVER_DATABASE)
        try:
            _run(functools.partial(_execute, dsn, "SELECT 1"))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            continue
        return Server(dsn, user, SERVER_HOST, SERVER_PORT)
    return None


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((SERVER_HOST, 0))
        return int(sock.getsockname()[1])


def _sh(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[Server | None]:
    """A cluster of our own on a free port, or None when none can be started."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        print("tests/pg.py: initdb/pg_ctl not found")
        yield None
        return
    # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
    as_user: list[str] = []
    user = os.environ.get("USER") or "postgres"
    if os.geteuid() == 0:
        as_user, user = ["runuser", "-u", "postgres", "--"], "postgres"
    root = Path(tempfile.mkdtemp(prefix="modelbot-pg-"))
    data, port = root / "data", _free_port()
    options = f"-c listen_addresses={SERVER_HOST} -p {port} -k {root} -c fsync=off"
    started = False
    try:
        try:
            if as_user:
                shutil.chown(root, user="postgres")
            _sh([*as_user, initdb, "-A", "trust", "--no-sync", "-U", user, "-D", str(data)])
            _sh([*as_user, pg_ctl, "-w", "-D", str(data), "-l", str(root / "log"), "-o", options, "start"])
            started = True
        except (OSError, LookupError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            print(f"tests/pg.py: no throwaway PostgreSQL cluster: {exc} {detail.decode(errors='replace')}")
        yield Server(_dsn(user, SERVER_HOST, port, "postgres"), user, SERVER_HOST, port) if started else None
    finally:
        if started:
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """An empty database for this test session: on 127.0.0.1:5432 if it answers, else on a cluster of our own."""
    with contextlib.ExitStack() as stack:
        server = _local_server()
        if server is None:
            server = stack.enter_context(_throwaway_cluster())
        if server is None:
            reason = (
                f"PostgreSQL tests skipped: nothing answers on {SERVER_HOST}:{SERVER_PORT} "
                "(users postgres/root, database test) and no throwaway cluster could be started"
            )
            print(reason)
            pytest.skip(reason)
        yield as_sqlalchemy(stack.enter_context(_database_on(server)))
