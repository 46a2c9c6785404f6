"""One contract for every SessionStore: in memory, SQLite (a file) and PostgreSQL behave the same."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store import (
    CLEAR_PIN,
    Attachment,
    FailoverEvent,
    InMemorySessionStore,
    NewMessage,
    SessionPatch,
    SessionRecord,
    SessionStore,
    console_session_key,
    session_key,
)
from bot.store.engine import parse_url, plain_sqlite_file, sqlite_file
from bot.store.sql import SqlSessionStore, sqlite_url
from tests.migration_checks import current_revision, head_revision, schema_drift
from tests.pg import pg_url, truncate_all  # noqa: F401

T0 = 1_700_000_000_000
KEY = "telegram:chat:1"
BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "state" / "db" / "modelbot.sqlite")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """The backend under test: None for the in-memory store, else a database URL."""
    return _url(request, tmp_path)


@pytest.fixture(params=SQL_BACKENDS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQL backend only: for what the in-memory store cannot have (files, migrations, restarts)."""
    found = _url(request, tmp_path)
    assert found is not None
    return found


async def _started(url: str | None) -> SessionStore:
    store: SessionStore = InMemorySessionStore() if url is None else SqlSessionStore(url)
    await store.start()
    if url is not None and url.startswith("postgresql"):
        await truncate_all(url)  # one database serves the whole test session
    return store


@pytest.fixture
async def store(url: str | None) -> AsyncIterator[SessionStore]:
    """A started, empty store of the backend under test."""
    started = await _started(url)
    yield started
    await started.stop()


async def _session(
    store: SessionStore, key: str = KEY, *, now_ms: int = T0, **kw: str | None
) -> SessionRecord:
    if key.startswith("console:"):
        platform, chat_id = "console", key.removeprefix("console:")
    else:
        platform, _, rest = key.partition(":chat:")
        chat_id = rest.split(":")[0]
    fields = {"agent_id": "main", "platform": platform, "chat_id": chat_id, **kw}
    return await store.get_or_create(key, now_ms=now_ms, **fields)  # type: ignore[arg-type]


def _msgs(*texts: str, role: str = "user") -> list[NewMessage]:
    return [NewMessage(role, text, token_estimate=len(text)) for text in texts]  # type: ignore[arg-type]


# --- session keys -------------------------------------------------------------------------------------


def test_session_keys_have_the_documented_shapes() -> None:
    """Keys name platform, chat and, by scope, thread and user; the console uses its session name."""
    assert session_key("telegram", 123) == "telegram:chat:123"
    assert session_key("telegram", -100, user_id=42) == "telegram:chat:-100:user:42"
    assert session_key("discord", "9", thread_id=77) == "discord:chat:9:thread:77"
    assert session_key("Discord", 9, thread_id=7, user_id=1) == "discord:chat:9:thread:7:user:1"
    assert console_session_key("main") == "console:main"


@pytest.mark.parametrize(
    ("platform", "chat_id", "user_id"),
    [("telegram", "1:user:2", None), ("telegram", "", None), ("", 1, None), ("telegram", 1, "x" * 200)],
)
def test_session_key_refuses_parts_that_could_forge_another_key(
    platform: str, chat_id: str | int, user_id: str | None
) -> None:
    """A part holding the separator, an empty part or an absurdly long one is refused."""
    with pytest.raises(ValueError, match="session key"):
        session_key(platform, chat_id, user_id=user_id)


def test_patch_refuses_unknown_sources() -> None:
    """A patch can only carry the sources the columns allow."""
    with pytest.raises(ValueError, match="pin source"):
        SessionPatch(pin_source="someone")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model source"):
        SessionPatch(model_source="auto")  # type: ignore[arg-type]
    assert SessionPatch().changes() == {}
    assert SessionPatch(pin_profile=None).changes() == {"pin_profile": None}


def test_unsupported_url_is_a_store_error_without_the_password() -> None:
    """Only the async SQLite and PostgreSQL drivers are accepted; the error hides the password."""
    with pytest.raises(StoreError) as caught:
        parse_url("mysql+aiomysql://bob:hunter2@db/x")
    assert "hunter2" not in str(caught.value)
    assert parse_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert parse_url("postgresql://u@h/d").drivername == "postgresql+asyncpg"


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("sqlite+aiosqlite:////s/modelbot.sqlite", True),
        ("sqlite:///relative/x.db", True),
        ("sqlite+aiosqlite:////a%20b/c%25d@e/x.sqlite", True),
        ("sqlite+aiosqlite:////s/x.sqlite?timeout=9", False),
        ("sqlite+aiosqlite://", False),
        ("sqlite+aiosqlite:///:memory:", False),
        ("sqlite+aiosqlite:///file:x.db", False),
        ("sqlite+pysqlite:////s/x.sqlite", False),
        ("SQLITE:////s/x.sqlite", False),
        ("sqlite+aiosqlite://host/x.sqlite", False),
        ("postgresql+asyncpg://u@h/d", False),
    ],
)
def test_a_plain_sqlite_url_is_read_as_sqlalchemy_reads_it(url: str, plain: bool) -> None:
    """The URLs read without SQLAlchemy (the default one among them) name the file ``parse_url`` finds in
    them; every other URL is left to ``parse_url`` and its errors."""
    found = plain_sqlite_file(url)
    assert (found is not None) == plain
    if found is not None:
        assert found == sqlite_file(parse_url(url))


def test_sqlite_url_quotes_what_a_url_would_misread() -> None:
    """A file name with a space, a percent sign or a question mark comes back whole."""
    path = Path("/a b/c%d?e/x.sqlite")
    assert sqlite_file(parse_url(sqlite_url(path))) == path == plain_sqlite_file(sqlite_url(path))


# --- sessions -----------------------------------------------------------------------------------------


async def test_get_of_an_unknown_session_is_none(store: SessionStore) -> None:
    """get() does not create anything."""
    assert await store.get(KEY) is None
    assert await store.count_sessions() == 0


async def test_get_or_create_creates_a_blank_session(store: SessionStore) -> None:
    """A new session has no overrides, pins or history, and both timestamps at creation time."""
    key = session_key("telegram", -100, user_id=42)
    created = await store.get_or_create(
        key, agent_id="main", platform="telegram", chat_id="-100", user_id="42", now_ms=T0
    )
    assert created == SessionRecord(
        key=key,
        agent_id="main",
        platform="telegram",
        chat_id="-100",
        user_id="42",
        thread_id=None,
        model_override=None,
        model_source=None,
        pin_profile=None,
        pin_source=None,
        pin_compaction=None,
        compaction_count=0,
        last_model=None,
        last_profile=None,
        last_fallback=False,
        created_at=T0,
        updated_at=T0,
        message_count=0,
    )
    assert await store.get(key) == created


async def test_get_or_create_returns_the_existing_session_untouched(store: SessionStore) -> None:
    """A second call neither overwrites nor touches the session."""
    first = await _session(store, thread_id="7")
    again = await store.get_or_create(KEY, agent_id="other", platform="telegram", chat_id="1", now_ms=T0 + 5)
    assert again == first
    assert await store.count_sessions() == 1


async def test_update_writes_only_the_patched_fields(store: SessionStore) -> None:
    """Fields left UNCHANGED keep their value; updated_at moves to now."""
    await _session(store)
    pinned = SessionPatch(pin_profile="anthropic:work", pin_source="auto", pin_compaction=0)
    await store.update(KEY, pinned, now_ms=T0 + 1)
    patch = SessionPatch(model_override="openai/gpt-5.2", model_source="user", last_fallback=True)
    updated = await store.update(KEY, patch, now_ms=T0 + 2)
    assert updated.model_override == "openai/gpt-5.2"
    assert updated.model_source == "user"
    assert updated.last_fallback is True
    assert (updated.pin_profile, updated.pin_source, updated.pin_compaction) == ("anthropic:work", "auto", 0)
    assert (updated.created_at, updated.updated_at) == (T0, T0 + 2)
    assert await store.get(KEY) == updated


async def test_update_can_set_fields_back_to_none(store: SessionStore) -> None:
    """None in a patch clears a field (unlike UNCHANGED)."""
    await _session(store)
    await store.update(KEY, SessionPatch(pin_profile="p:a", pin_source="user", last_model="a/b"), now_ms=T0)
    cleared = await store.update(KEY, CLEAR_PIN, now_ms=T0)
    assert (cleared.pin_profile, cleared.pin_source, cleared.pin_compaction) == (None, None, None)
    assert cleared.last_model == "a/b"


async def test_changing_an_unknown_session_is_a_store_error(store: SessionStore) -> None:
    """update, append, compaction and reset refuse a session that does not exist."""
    with pytest.raises(StoreError, match="No session"):
        await store.update("nope", SessionPatch(last_model="a/b"), now_ms=T0)
    with pytest.raises(StoreError, match="No session"):
        await store.append_messages("nope", _msgs("hi"), now_ms=T0)
    with pytest.raises(StoreError, match="No session"):
        await store.replace_history("nope", NewMessage("summary", "s"), 1, now_ms=T0)
    with pytest.raises(StoreError, match="No session"):
        await store.reset("nope", keep_model=True, now_ms=T0)
    assert await store.count_sessions() == 0


# --- history ------------------------------------------------------------------------------------------


async def test_history_is_oldest_first_and_limited_to_the_newest(store: SessionStore) -> None:
    """history(limit=n) gives the last n messages, oldest first; ids grow in append order."""
    await _session(store)
    await store.append_messages(KEY, _msgs("a", "b"), now_ms=T0 + 1)
    await store.append_messages(KEY, _msgs("c", "d", "e", role="assistant"), now_ms=T0 + 2)
    everything = await store.history(KEY)
    assert [m.content for m in everything] == ["a", "b", "c", "d", "e"]
    assert [m.role for m in everything] == ["user", "user", "assistant", "assistant", "assistant"]
    assert [m.created_at for m in everything] == [T0 + 1] * 2 + [T0 + 2] * 3
    ids = [m.id for m in everything]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [m.content for m in await store.history(KEY, limit=2)] == ["d", "e"]
    assert [m.content for m in await store.history(KEY, limit=50)] == ["a", "b", "c", "d", "e"]
    assert await store.history(KEY, limit=0) == []
    record = await store.get(KEY)
    assert record is not None and (record.message_count, record.updated_at) == (5, T0 + 2)


async def test_append_with_a_patch_saves_the_turn_in_one_call(store: SessionStore) -> None:
    """A turn's messages and its session changes (last model, pin) are written together."""
    await _session(store)
    patch = SessionPatch(
        last_model="demo/echo", last_profile="demo:main", pin_profile="demo:main", pin_source="auto"
    )
    await store.append_messages(KEY, _msgs("q", "a"), now_ms=T0 + 5, patch=patch)
    record = await store.get(KEY)
    assert record is not None
    assert (record.message_count, record.last_model, record.pin_profile, record.pin_source) == (
        2,
        "demo/echo",
        "demo:main",
        "auto",
    )
    assert record.updated_at == T0 + 5


async def test_append_returns_what_history_shows(store: SessionStore) -> None:
    """The returned messages carry the ids and values history() reads back, attachments included."""
    await _session(store)
    new = NewMessage(
        "user",
        "look ✓",
        attachments=(Attachment("image/png", 2048, "cat.png"), Attachment("image/jpeg", 10)),
        token_estimate=900,
    )
    stored = await store.append_messages(KEY, [new, NewMessage("assistant", "a cat")], now_ms=T0)
    assert await store.history(KEY) == stored
    assert stored[0].attachments == (
        Attachment("image/png", 2048, "cat.png"),
        Attachment("image/jpeg", 10, None),
    )
    assert (stored[0].session_key, stored[0].token_estimate) == (KEY, 900)
    assert await store.append_messages(KEY, [], now_ms=T0) == []


async def test_a_long_append_keeps_its_order_and_ids(store: SessionStore) -> None:
    """A long append (250 messages, one call): ids follow the list, as history shows, and another session's
    later append gets larger ones."""
    await _session(store)
    await _session(store, "discord:chat:9")
    await store.append_messages("discord:chat:9", _msgs("theirs"), now_ms=T0)
    texts = [f"m{n}" for n in range(250)]
    stored = await store.append_messages(KEY, _msgs(*texts), now_ms=T0 + 1)
    assert [m.content for m in stored] == texts
    assert await store.history(KEY) == stored
    ids = [m.id for m in stored]
    assert ids == sorted(set(ids))
    later = await store.append_messages("discord:chat:9", _msgs("again"), now_ms=T0 + 2)
    assert later[0].id > ids[-1]


async def test_histories_are_kept_apart(store: SessionStore) -> None:
    """Each session sees only its own messages."""
    other = "discord:chat:9"
    await _session(store)
    await _session(store, other)
    await store.append_messages(KEY, _msgs("mine"), now_ms=T0)
    await store.append_messages(other, _msgs("theirs"), now_ms=T0)
    assert [m.content for m in await store.history(KEY)] == ["mine"]
    assert [m.content for m in await store.history(other)] == ["theirs"]
    assert await store.history("unknown") == []


async def test_compaction_keeps_the_tail_behind_the_summary(store: SessionStore) -> None:
    """replace_history drops all but keep_last messages, puts the summary first, counts the compaction."""
    await _session(store)
    await store.append_messages(KEY, _msgs("1", "2", "3", "4"), now_ms=T0 + 1)
    await store.append_messages(KEY, _msgs("5", "6"), now_ms=T0 + 2)
    assert (
        await store.replace_history(KEY, NewMessage("summary", "S1", token_estimate=3), 2, now_ms=T0 + 3) == 1
    )
    after = await store.history(KEY)
    assert [(m.role, m.content) for m in after] == [("summary", "S1"), ("user", "5"), ("user", "6")]
    assert [m.created_at for m in after] == [T0 + 3, T0 + 2, T0 + 2]  # kept messages keep their time
    assert [m.id for m in after] == sorted(m.id for m in after)
    record = await store.get(KEY)
    assert record is not None
    assert (record.compaction_count, record.message_count, record.updated_at) == (1, 3, T0 + 3)

    await store.append_messages(KEY, _msgs("7"), now_ms=T0 + 4)
    assert await store.replace_history(KEY, NewMessage("summary", "S2"), 0, now_ms=T0 + 5) == 2
    assert [m.content for m in await store.history(KEY)] == ["S2"]


async def test_compaction_never_drops_messages_newer_than_the_summary(store: SessionStore) -> None:
    """Messages appended after through_id (while the summary was written) survive the compaction."""
    await _session(store)
    seen = await store.append_messages(KEY, _msgs("1", "2", "3"), now_ms=T0)
    await store.append_messages(KEY, _msgs("late"), now_ms=T0 + 1)  # arrives during summarising
    count = await store.replace_history(
        KEY, NewMessage("summary", "S"), 1, now_ms=T0 + 2, through_id=seen[1].id
    )
    assert count == 1
    assert [m.content for m in await store.history(KEY)] == ["S", "3", "late"]


async def test_compaction_with_more_kept_than_present_keeps_everything(store: SessionStore) -> None:
    """keep_last beyond the history length just puts the summary in front."""
    await _session(store)
    await store.append_messages(KEY, _msgs("a", "b"), now_ms=T0)
    await store.replace_history(KEY, NewMessage("summary", "S"), 10, now_ms=T0)
    assert [m.content for m in await store.history(KEY)] == ["S", "a", "b"]


# --- reset --------------------------------------------------------------------------------------------


async def _busy_session(store: SessionStore) -> None:
    await _session(store)
    patch = SessionPatch(
        model_override="anthropic/claude-sonnet-4-5",
        model_source="user",
        pin_profile="anthropic:work",
        pin_source="user",
        pin_compaction=1,
        last_model="openai/gpt-5.2",
        last_profile="openai:default",
        last_fallback=True,
    )
    await store.update(KEY, patch, now_ms=T0)
    await store.append_messages(KEY, _msgs("a", "b", "c"), now_ms=T0)
    await store.replace_history(KEY, NewMessage("summary", "S"), 1, now_ms=T0)


async def test_reset_starts_fresh_but_keeps_the_users_model(store: SessionStore) -> None:
    """/new: history, pins, compaction count and last answer go; the model override stays."""
    await _busy_session(store)
    record = await store.reset(KEY, keep_model=True, now_ms=T0 + 9)
    assert await store.history(KEY) == []
    assert (record.model_override, record.model_source) == ("anthropic/claude-sonnet-4-5", "user")
    assert (record.pin_profile, record.pin_source, record.pin_compaction) == (None, None, None)
    assert (record.compaction_count, record.message_count) == (0, 0)
    assert (record.last_model, record.last_profile, record.last_fallback) == (None, None, False)
    assert record.updated_at == T0 + 9
    assert await store.get(KEY) == record


async def test_reset_without_keep_model_clears_the_override(store: SessionStore) -> None:
    """/reset that does not keep the model falls back to the agent's primary."""
    await _busy_session(store)
    record = await store.reset(KEY, keep_model=False, now_ms=T0)
    assert (record.model_override, record.model_source) == (None, None)


async def test_reset_with_a_model_sets_it_as_the_users_choice(store: SessionStore) -> None:
    """/new <model> sets the override with source "user", whatever keep_model says."""
    await _busy_session(store)
    record = await store.reset(KEY, keep_model=True, model_override="openai/gpt-5.2", now_ms=T0)
    assert (record.model_override, record.model_source) == ("openai/gpt-5.2", "user")


# --- listing and housekeeping -------------------------------------------------------------------------


async def test_list_sessions_is_newest_first_filtered_and_paged(store: SessionStore) -> None:
    """Filters combine; equal update times fall back to key order; limit and offset page through."""
    await _session(store, "telegram:chat:1:user:a", user_id="a", now_ms=T0 + 3)
    await _session(store, "telegram:chat:1:user:b", user_id="b", now_ms=T0 + 1)
    await _session(store, "telegram:chat:2", now_ms=T0 + 2)
    await _session(store, "discord:chat:1", now_ms=T0 + 2)
    await _session(store, "console:main", now_ms=T0)
    keys = [r.key for r in await store.list_sessions()]
    assert keys == [
        "telegram:chat:1:user:a",
        "discord:chat:1",
        "telegram:chat:2",
        "telegram:chat:1:user:b",
        "console:main",
    ]
    assert [r.key for r in await store.list_sessions(platform="telegram", chat_id="1")] == [
        "telegram:chat:1:user:a",
        "telegram:chat:1:user:b",
    ]
    assert [r.key for r in await store.list_sessions(chat_id="1")] == [
        "telegram:chat:1:user:a",
        "discord:chat:1",
        "telegram:chat:1:user:b",
    ]
    assert [r.key for r in await store.list_sessions(user_id="b")] == ["telegram:chat:1:user:b"]
    assert [r.key for r in await store.list_sessions(limit=2, offset=1)] == [
        "discord:chat:1",
        "telegram:chat:2",
    ]
    assert await store.list_sessions(platform="matrix") == []

    await store.append_messages("console:main", _msgs("hi"), now_ms=T0 + 10)  # activity moves it up
    assert (await store.list_sessions(limit=1))[0].key == "console:main"


async def test_delete_older_than_removes_idle_sessions_and_their_history(store: SessionStore) -> None:
    """Sessions last updated before the cutoff go, with their messages; the others stay."""
    await _session(store, "telegram:chat:1", now_ms=T0)
    await _session(store, "telegram:chat:2", now_ms=T0)
    await store.append_messages("telegram:chat:1", _msgs("old"), now_ms=T0)
    await store.append_messages("telegram:chat:2", _msgs("new"), now_ms=T0 + 100)
    assert await store.delete_older_than(T0 + 100) == 1
    assert await store.get("telegram:chat:1") is None
    assert await store.history("telegram:chat:1") == []
    assert [m.content for m in await store.history("telegram:chat:2")] == ["new"]
    # A session of the same key starts from nothing: no orphaned messages came back.
    await _session(store, "telegram:chat:1", now_ms=T0 + 200)
    assert await store.history("telegram:chat:1") == []
    assert await store.count_sessions() == 2


async def test_reset_all_clears_history_and_pins_but_keeps_rows(store: SessionStore) -> None:
    """reset_all keeps every row and model override; the cutoff limits it to idle sessions."""
    await _busy_session(store)  # updated at T0
    await _session(store, "telegram:chat:2", now_ms=T0 + 50)
    await store.append_messages("telegram:chat:2", _msgs("recent"), now_ms=T0 + 50)
    assert await store.reset_all(older_than_ms=T0 + 10) == 1
    idle = await store.get(KEY)
    assert idle is not None and await store.history(KEY) == []
    assert (idle.pin_profile, idle.compaction_count, idle.message_count) == (None, 0, 0)
    assert idle.model_override == "anthropic/claude-sonnet-4-5"
    assert idle.updated_at == T0  # not touched, so a later delete_older_than still finds it
    assert [m.content for m in await store.history("telegram:chat:2")] == ["recent"]

    assert await store.reset_all() == 2
    assert await store.history("telegram:chat:2") == []
    assert await store.count_sessions() == 2


async def test_events_are_newest_first_and_filterable(store: SessionStore) -> None:
    """The failover log reads back newest first, by time and by profile, and can be pruned."""
    logged = [
        FailoverEvent(T0, KEY, "anthropic/claude", "anthropic:a", "rate_limit", T0 + 60_000),
        FailoverEvent(T0 + 1, None, "openai/gpt", None, "timeout"),
        FailoverEvent(T0 + 2, KEY, "anthropic/claude", "anthropic:a", "billing", T0 + 5 * 3_600_000),
        FailoverEvent(T0 + 2, KEY, "anthropic/claude", "anthropic:b", "auth", T0 + 60_000),
    ]
    for event in logged:
        await store.record_event(event)
    assert await store.events() == [logged[3], logged[2], logged[1], logged[0]]
    assert await store.events(profile_id="anthropic:a") == [logged[2], logged[0]]
    assert await store.events(since_ms=T0 + 1, limit=2) == [logged[3], logged[2]]
    assert await store.prune_events(T0 + 2) == 2
    assert await store.events() == [logged[3], logged[2]]


async def test_stop_and_start_again_keeps_everything(store: SessionStore) -> None:
    """A store can be stopped and started again without losing data."""
    await _busy_session(store)
    before = await store.get(KEY)
    history = await store.history(KEY)
    await store.stop()
    await store.start()
    assert await store.get(KEY) == before
    assert await store.history(KEY) == history


# --- SQL only -----------------------------------------------------------------------------------------


async def test_a_new_process_sees_the_same_sessions(sql_url: str) -> None:
    """A second store on the same URL (a restart) finds sessions, history and events; migrating is idempotent."""
    first = await _started(sql_url)
    try:
        await _busy_session(first)
        await first.record_event(FailoverEvent(T0, KEY, "a/b", "a:x", "timeout"))
        expected = (await first.get(KEY), await first.history(KEY), await first.events())
    finally:
        await first.stop()
    second = SqlSessionStore(sql_url)
    await second.start()  # runs the migrations again: a no-op at head
    try:
        assert (await second.get(KEY), await second.history(KEY), await second.events()) == expected
    finally:
        await second.stop()
    assert await current_revision(sql_url) == head_revision() == "0002"


async def test_migrations_build_exactly_the_declared_tables(sql_url: str) -> None:
    """Alembic's autogenerate finds no difference between the migrated database and tables.py."""
    store = await _started(sql_url)
    await store.stop()
    assert await schema_drift(sql_url) == []


async def test_an_unstarted_sql_store_refuses_to_work(tmp_path: Path) -> None:
    """Using the store before start() (or after stop()) is a StoreError, not an AttributeError."""
    store = SqlSessionStore(sqlite_url(tmp_path / "x.sqlite"))
    with pytest.raises(StoreError, match="not started"):
        await store.get(KEY)


async def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    """The database directory is created 0700, the file 0600, and the journal is WAL."""
    path = tmp_path / "state" / "deeper" / "modelbot.sqlite"
    store = SqlSessionStore(sqlite_url(path))
    await store.start()
    await _session(store)
    await store.stop()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_an_unreachable_database_is_a_store_error() -> None:
    """A server that does not answer makes start() fail with a StoreError that hides the password."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        store = SqlSessionStore(f"postgresql+asyncpg://bob:hunter2@127.0.0.1:{port}/x")
        with pytest.raises(StoreError) as caught:
            await store.start()
    assert "hunter2" not in str(caught.value)
