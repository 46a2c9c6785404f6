"""The Discord adapter end to end: the real discord.py against the loopback fake, the core on the demo provider."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.client import DiscordSetupError, Timings
from adapters.discord.settings import DiscordChannel
from bot.app import App, build_app
from bot.channels import ChannelAdapter
from bot.conversation.pipeline import ChatPipeline
from bot.failover.reasons import Reason
from bot.store.memory import InMemorySessionStore
from tests import log_guard
from tests.fakes.clock import FakeClock
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.fake_channel import channels_with
from tests.fakes.scripted import Fail, ScriptedClient, ok
from tests.test_telegram_adapter import _Gate

TOKEN = "fake-bot-token"
APP_ID = 1_100_000_000_000_000_001
BOT_ID = 1_200_000_000_000_000_002
GUILD = 900_000_000_000_000_001
GENERAL = 900_000_000_000_000_010
THREAD = 900_000_000_000_000_011
OPEN = 900_000_000_000_000_012  # listed as channel:<id> in the access test
MODS = 900_000_000_000_000_020  # a role with Manage Server
FRIENDS = 900_000_000_000_000_021  # listed as role:<id> in the access test
OWNER = 700_000_000_000_000_001
ALICE = 700_000_000_000_000_002  # a moderator (MODS)
BOB = 700_000_000_000_000_003
CAROL = 700_000_000_000_000_004  # a stranger once allowFrom is set
DAVE = 700_000_000_000_000_005  # has the FRIENDS role
DM_ALICE = 800_000_000_000_000_001
DM_CAROL = 800_000_000_000_000_002
MANAGE_GUILD = str(1 << 5)  # the resolved permissions Discord sends with a Manage Server member's interaction
EPHEMERAL = 1 << 6
COMMANDS = ["model", "new", "reset", "status", "help", "retry", "stop"]
PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001"
    "0d0a2db40000000049454e44ae426082"
)


@pytest.fixture(autouse=True)
def fail_on_error_logs() -> Iterator[None]:
    """discord.py and the adapter only log exceptions raised in handlers: such records fail the test."""
    with log_guard.fail_on_error_logs(["discord", "modelbot.discord"]):
        yield


async def _populate(dc: FakeDiscordServer) -> None:
    await dc.add_guild(
        GUILD,
        name="lab",
        owner_id=OWNER,
        channels=[
            {"id": GENERAL, "name": "general"},
            {"id": OPEN, "name": "open"},
            {"id": THREAD, "name": "ideas", "type": 11, "parent_id": GENERAL},
        ],
        roles=[
            {"id": MODS, "name": "mods", "permissions": 1 << 5},
            {"id": FRIENDS, "name": "friends", "permissions": 0},
        ],
        members=[
            {"id": OWNER, "username": "owner"},
            {"id": ALICE, "username": "alice", "roles": [MODS]},
            {"id": BOB, "username": "bob"},
            {"id": CAROL, "username": "carol"},
            {"id": DAVE, "username": "dave", "roles": [FRIENDS]},
        ],
    )
    dc.add_dm_channel(DM_ALICE, ALICE, username="alice")
    dc.add_dm_channel(DM_CAROL, CAROL, username="carol")


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscordServer]:
    """The fake with one guild (channels, a thread, roles, members) and DMs with Alice and Carol."""
    async with FakeDiscordServer(token=TOKEN, application_id=APP_ID, bot_user_id=BOT_ID) as server:
        await _populate(server)
        yield server


def _make_app(state_dir: Path, *, config: str | None = None, demo_delay_s: float = 0.0) -> App:
    if config is not None:
        (state_dir / "config.json5").write_text(config)
    return build_app(
        env={"MODELBOT_STATE_DIR": str(state_dir), "DISCORD_BOT_TOKEN": TOKEN},
        clock=FakeClock(),
        store=InMemorySessionStore(),
        demo_delay_s=demo_delay_s,
    )


@contextlib.asynccontextmanager
async def _started(app: App) -> AsyncIterator[App]:
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def app(state_dir: Path) -> AsyncIterator[App]:
    """The bot on the built-in demo provider, in-memory sessions, a fake clock."""
    async with _started(_make_app(state_dir)) as built:
        yield built


def _settings(dc: FakeDiscordServer, **overrides: Any) -> DiscordChannel:
    values: dict[str, Any] = {
        "enabled": True,
        "token": TOKEN,
        "api_base_url": dc.rest_base,
        "gateway_url": str(dc.gateway_url),
    }
    return DiscordChannel(**(values | overrides))


def _timings(*, stream_interval_s: float = 0.02, defer_after_s: float = 1.0) -> Timings:
    """Fast test timings: short READY wait, no pause between shard IDENTIFYs."""
    return Timings(
        stream_interval_s=stream_interval_s,
        defer_after_s=defer_after_s,
        guild_ready_timeout_s=0.05,
        start_timeout_s=5.0,
        stop_grace_s=2.0,
        shard_identify_pause=False,
    )


@contextlib.asynccontextmanager
async def serving(
    app: App,
    dc: FakeDiscordServer,
    *,
    stream_interval_s: float = 0.02,
    defer_after_s: float = 1.0,
    **config: Any,
) -> AsyncIterator[DiscordAdapter]:
    """The adapter started against the fake with test timings (config keys in snake_case); stopped on exit."""
    timings = _timings(stream_interval_s=stream_interval_s, defer_after_s=defer_after_s)
    adapter = DiscordAdapter(app.chat(), _settings(dc, **config), timings=timings)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


async def _idle(adapter: DiscordAdapter) -> None:
    """Until the adapter handles nothing; a bot that keeps answering itself never gets there."""
    await asyncio.wait_for(adapter.wait_idle(), 2)


def _texts(dc: FakeDiscordServer, channel_id: int) -> list[str]:
    return [m["content"] for m in dc.bot_messages(channel_id)]


def _latest(dc: FakeDiscordServer, channel_id: int, predicate: Callable[[str], bool]) -> Callable[[], str]:
    """A ``wait_for`` condition: the bot's latest message in the channel once it satisfies ``predicate``."""

    def check() -> str:
        texts = _texts(dc, channel_id)
        return texts[-1] if texts and predicate(texts[-1]) else ""

    return check


async def _ask(dc: FakeDiscordServer, channel: int, text: str, *, user: int = ALICE, **kw: Any) -> str:
    """Post a message that addresses the bot and return the bot's next new message there."""
    before = len(dc.bot_messages(channel))
    if channel not in (DM_ALICE, DM_CAROL):
        kw = {"guild_id": GUILD, "mentions_bot": True, **kw}
    await dc.user_message(channel, text, author_id=user, **kw)
    messages = await dc.wait_for(lambda: dc.bot_messages(channel)[before:])
    return str(messages[0]["content"])


async def _slash(dc: FakeDiscordServer, name: str, *, user: int = ALICE, **kw: Any) -> dict[str, Any]:
    """Run a slash command in #general and return the interaction callback body."""
    handle = await dc.slash_command(name, user_id=user, guild_id=GUILD, channel_id=GENERAL, **kw)
    return await handle.wait_response()


# -- start-up -----------------------------------------------------------------------------------------------


async def test_start_identifies_with_message_content_and_syncs_global_commands(
    app: App, dc: FakeDiscordServer
) -> None:
    """start() logs in, IDENTIFYs with the message-content intent, PUTs the commands globally; stop() undoes the URLs."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with serving(app, dc):
        assert dc.rest_base == Route.BASE and dc.gateway_url == DiscordWebSocket.DEFAULT_GATEWAY
        assert dc.ready_sessions == 1
    assert saved == (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    intents = dc.identifies[0]["intents"]
    assert all(intents & bit for bit in (1 << 0, 1 << 9, 1 << 12, 1 << 15))  # guilds, messages, DMs, content
    assert [c["name"] for c in dc.synced_commands()] == COMMANDS and dc.synced_commands(GUILD) == []
    model = dc.synced_commands()[0]
    subcommands = {o["name"]: o for o in model["options"]}
    assert list(subcommands) == ["show", "list", "status", "set", "pick", "default"]
    [choice] = subcommands["set"]["options"]
    assert choice["name"] == "model" and choice["autocomplete"] is True and choice["required"] is True
    reset = next(c for c in dc.synced_commands() if c["name"] == "reset")
    assert [(o["name"], o["type"]) for o in reset["options"]] == [("model", 3), ("member", 6)]
    await dc.wait_for(lambda: dc.ready_sessions == 0)


async def test_per_guild_sync_and_autocomplete_filtered_by_what_was_typed(
    app: App, dc: FakeDiscordServer
) -> None:
    """With guildIds the commands go to that guild only; /model set autocompletes the allowed models."""
    async with serving(app, dc, guild_ids=(str(GUILD),)):
        typed = await dc.autocomplete(
            "model set",
            options={"model": "vis"},
            focused="model",
            user_id=ALICE,
            guild_id=GUILD,
            channel_id=GENERAL,
        )
        narrowed = await typed.wait_response()
        empty = await dc.autocomplete(
            "new", options={"model": ""}, focused="model", user_id=BOB, guild_id=GUILD, channel_id=GENERAL
        )
        everything = await empty.wait_response()
    assert [c["name"] for c in dc.synced_commands(GUILD)] == COMMANDS and dc.synced_commands() == []
    assert [c.path for c in dc.calls if c.method == "PUT"] == [
        f"/applications/{APP_ID}/guilds/{GUILD}/commands"
    ]
    assert narrowed == {"type": 8, "data": {"choices": [{"name": "demo/vision", "value": "demo/vision"}]}}
    assert [c["value"] for c in everything["data"]["choices"]] == [
        "demo/broken",
        "demo/echo",
        "demo/story",
        "demo/vision",
    ]


async def test_missing_message_content_intent_is_a_clear_startup_error(state_dir: Path) -> None:
    """The gateway closes with 4014: start() raises DiscordSetupError naming the intent, and cleans up."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with (
        _started(_make_app(state_dir)) as app,
        FakeDiscordServer(token=TOKEN, message_content_intent_allowed=False) as dc,
    ):
        with pytest.raises(DiscordSetupError, match="Message Content intent") as caught:
            async with serving(app, dc):
                pass
        assert dc.gateway_close_codes == [4014]
    assert "Privileged Gateway Intents" in str(caught.value)
    assert saved == (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)


@pytest.fixture
def keep_root_logging() -> Iterator[None]:
    """`modelbot run` installs its own root log handler; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("keep_root_logging")
async def test_modelbot_run_serves_discord_from_the_config_until_stopped(
    state_dir: Path, dc: FakeDiscordServer
) -> None:
    """`modelbot run` (serve) builds the adapter from channels.discord in the config, answers, stops cleanly."""
    from cli.run_cmd import serve  # noqa: PLC0415 -- the CLI is only needed by this test

    config = state_dir / "config.json5"
    config.write_text(
        "{channels: {discord: {enabled: true, token: '${DISCORD_BOT_TOKEN}', "
        f"apiBaseUrl: '{dc.rest_base}', gatewayUrl: '{dc.gateway_url}', guildIds: ['{GUILD}']}}}}}}"
    )
    env = {"MODELBOT_STATE_DIR": str(state_dir), "DISCORD_BOT_TOKEN": TOKEN}
    built: list[ChannelAdapter] = []

    def build(settings: DiscordChannel, chat: ChatPipeline) -> ChannelAdapter:
        built.append(DiscordAdapter(chat, settings, timings=_timings()))
        return built[-1]

    stop = asyncio.Event()
    channels = channels_with(discord=build)
    running = asyncio.create_task(serve(str(config), env=env, stop=stop, channels=channels))
    await dc.wait_for(lambda: dc.synced_commands(GUILD) or running.done())
    answer = await _ask(dc, DM_ALICE, "ping from the config")
    stop.set()
    assert await running == 0
    assert [a.name for a in built] == ["discord"]
    assert "You said: “ping from the config”" in answer
    assert [c["name"] for c in dc.synced_commands(GUILD)] == COMMANDS
    await dc.wait_for(lambda: dc.ready_sessions == 0)


async def test_sharded_client_answers_in_a_guild_on_the_second_shard(state_dir: Path) -> None:
    """shardCount runs an AutoShardedClient: both shards IDENTIFY and a guild on shard 1 is served."""
    guild, channel = 5 << 22, (5 << 22) + 1  # (id >> 22) % 2 == 1
    async with (
        _started(_make_app(state_dir)) as app,
        FakeDiscordServer(token=TOKEN, shard_count=2) as dc,
    ):
        await dc.add_guild(
            guild, channels=[{"id": channel, "name": "far"}], members=[{"id": BOB, "username": "bob"}]
        )
        async with serving(app, dc, shard_count=2):
            await dc.user_message(channel, "hello shard", author_id=BOB, guild_id=guild, mentions_bot=True)
            answer = await dc.wait_for(_latest(dc, channel, lambda t: "-#" in t))
        assert sorted(i["shard"] for i in dc.identifies) == [[0, 2], [1, 2]]
    assert "You said: “hello shard”" in answer


async def test_a_process_runs_only_its_shard_ids(state_dir: Path) -> None:
    """shardIds [1] of shardCount 2 (the other shard runs in another process): only shard 1 IDENTIFYs,
    and it serves its guild."""
    guild, channel = 5 << 22, (5 << 22) + 1  # (id >> 22) % 2 == 1
    async with (
        _started(_make_app(state_dir)) as app,
        FakeDiscordServer(token=TOKEN, shard_count=2) as dc,
    ):
        await dc.add_guild(
            guild, channels=[{"id": channel, "name": "far"}], members=[{"id": BOB, "username": "bob"}]
        )
        async with serving(app, dc, shard_count=2, shard_ids=(1,)):
            await dc.user_message(
                channel, "hello shard one", author_id=BOB, guild_id=guild, mentions_bot=True
            )
            answer = await dc.wait_for(_latest(dc, channel, lambda t: "-#" in t))
        assert [i["shard"] for i in dc.identifies] == [[1, 2]]
    assert "You said: “hello shard one”" in answer


# -- slash commands and components --------------------------------------------------------------------------


async def test_slash_model_status_is_answered_privately(app: App, dc: FakeDiscordServer) -> None:
    """/model status reaches the core as "/model status"; the answer is ephemeral and shows the profiles."""
    async with serving(app, dc):
        response = await _slash(dc, "model status")
    assert response["type"] == 4 and response["data"]["flags"] & EPHEMERAL
    assert "demo:busy" in response["data"]["content"] and "demo:main" in response["data"]["content"]


async def test_picker_select_switches_the_session_model(app: App, dc: FakeDiscordServer) -> None:
    """/model show draws a select of short tokens; picking "story" switches this channel's session."""
    async with serving(app, dc):
        show = await dc.slash_command("model show", user_id=BOB, guild_id=GUILD, channel_id=GENERAL)
        shown = await show.wait_response()
        [row] = shown["data"]["components"]
        [select] = row["components"]
        options = {o["label"]: o for o in select["options"]}
        assert show.original_message_id is not None
        picked = await dc.component(
            select["custom_id"],
            message_id=show.original_message_id,
            user_id=BOB,
            values=[options["3. story"]["value"]],
        )
        updated = await picked.wait_response()
        status = await _slash(dc, "status", user=BOB)
    assert shown["data"]["flags"] & EPHEMERAL and shown["data"]["content"].startswith(
        "Current model: demo/echo"
    )
    assert select["type"] == 3 and select["custom_id"] == "mb:pick:1"
    assert list(options) == ["1. broken", "2. echo", "3. story", "4. vision"]
    assert options["2. echo"].get("default") is True
    assert all(
        o["value"].startswith("m:") and "/" not in o["value"] and len(o["value"]) <= 100
        for o in options.values()
    )
    assert updated["type"] == 7
    assert updated["data"]["content"] == "Model set to demo/story." and updated["data"]["components"] == []
    assert "Model: demo/story (session override)" in status["data"]["content"]


async def test_picker_pages_past_25_with_previous_and_next_buttons(
    state_dir: Path, dc: FakeDiscordServer
) -> None:
    """With more families than a page, Next shows page 2 in the same message; Previous is disabled on page 1."""
    allowed = ", ".join(f'"demo/m{i:02}": {{}}' for i in range(1, 28))
    config = f'{{agents: {{defaults: {{models: {{"demo/echo": {{}}, {allowed}}}}}}}}}'
    async with _started(_make_app(state_dir, config=config)) as app, serving(app, dc):
        show = await dc.slash_command("model show", user_id=BOB, guild_id=GUILD, channel_id=GENERAL)
        first = (await show.wait_response())["data"]
        select_row, buttons_row = first["components"]
        previous, following = buttons_row["components"]
        assert show.original_message_id is not None
        paged = await dc.component(following["custom_id"], message_id=show.original_message_id, user_id=BOB)
        second = (await paged.wait_response())["data"]
    assert len(select_row["components"][0]["options"]) == 20
    assert (previous["custom_id"], previous["disabled"]) == ("mb:page:0", True)
    assert (following["custom_id"], following.get("disabled", False)) == ("mb:page:2", False)
    assert "Page 2 of 2" in second["content"] and "21) m20" in second["content"]
    page_two = second["components"][0]["components"][0]
    assert page_two["custom_id"] == "mb:pick:2" and page_two["options"][0]["label"] == "21. m20"


async def test_admin_resets_another_members_session_and_others_may_not(
    state_dir: Path, dc: FakeDiscordServer
) -> None:
    """/reset member: works for a Manage Server member, is refused for a plain member; Bob's history is cleared."""
    async with _started(_make_app(state_dir, config="{session: {scope: 'user'}}")) as app, serving(app, dc):
        await _ask(dc, GENERAL, "hello from bob", user=BOB)
        before = await _slash(dc, "status", user=BOB)
        refused = await _slash(dc, "reset", user=CAROL, options={"member": BOB})
        reset = await _slash(
            dc, "reset", user=ALICE, options={"member": BOB}, member_permissions=MANAGE_GUILD
        )
        after = await _slash(dc, "status", user=BOB)
    assert "Messages: 2" in before["data"]["content"]
    assert refused["data"]["content"] == "Only admins can reset another member's session."
    assert reset["data"]["content"] == f"Session of user:{BOB} reset."
    assert "Messages: 0" in after["data"]["content"]


async def test_strangers_are_refused_and_allow_from_matches_user_role_and_channel(
    app: App, dc: FakeDiscordServer
) -> None:
    """allowFrom lists Alice, role:FRIENDS and channel:OPEN; Carol is refused everywhere else."""
    allow = (str(ALICE), f"role:{FRIENDS}", f"channel:{OPEN}")
    async with serving(app, dc, allow_from=allow):
        refused_dm = await _ask(dc, DM_CAROL, "hi", user=CAROL)
        refused_guild = await _ask(dc, GENERAL, "hi", user=CAROL)
        refused_slash = await _slash(dc, "status", user=CAROL)
        typed = await dc.autocomplete(
            "model set",
            options={"model": ""},
            focused="model",
            user_id=CAROL,
            guild_id=GUILD,
            channel_id=GENERAL,
        )
        no_choices = await typed.wait_response()
        by_channel = await _ask(dc, OPEN, "hi from the open channel", user=CAROL)
        by_role = await _ask(dc, GENERAL, "hi as a friend", user=DAVE)
        by_id = await _ask(dc, DM_ALICE, "hi as alice")
    refusal = "Sorry, you are not allowed to use this bot here."
    assert refused_dm.startswith(refusal) and refused_guild.startswith(refusal)
    assert refused_slash["data"]["content"].startswith(refusal) and refused_slash["data"]["flags"] & EPHEMERAL
    assert no_choices == {"type": 8, "data": {"choices": []}}
    assert "hi from the open channel" in by_channel and "hi as a friend" in by_role and "hi as alice" in by_id


# -- chat ---------------------------------------------------------------------------------------------------


async def test_guild_chat_needs_a_mention_or_a_reply_and_carries_the_quiet_note(
    app: App, dc: FakeDiscordServer
) -> None:
    """Plain guild messages are ignored; a mention gets an answer with a -# fallback note; replying continues."""
    async with serving(app, dc) as adapter:
        await dc.user_message(GENERAL, "just chatting", author_id=BOB, guild_id=GUILD)
        asked = await dc.user_message(
            GENERAL, "hello there", author_id=BOB, guild_id=GUILD, mentions_bot=True
        )
        answer = await dc.wait_for(_latest(dc, GENERAL, lambda t: "\n-# " in t))
        [bot_message] = dc.bot_messages(GENERAL)
        await dc.user_message(
            GENERAL, "and more", author_id=BOB, guild_id=GUILD, reference_message_id=int(bot_message["id"])
        )
        follow_up = await dc.wait_for(_latest(dc, GENERAL, lambda t: "and more" in t))
        await _idle(adapter)
    assert "You said: “hello there”" in answer and "just chatting" not in " ".join(_texts(dc, GENERAL))
    assert answer.endswith("\n-# ↪ answered by demo/echo (demo:main) — demo:busy rate-limited")
    assert bot_message["message_reference"]["message_id"] == asked["id"]
    assert "You said: “and more”" in follow_up and len(_texts(dc, GENERAL)) == 2
    assert GENERAL in dc.typing_channels


async def test_dm_chat_and_text_commands_and_the_bot_ignores_itself(app: App, dc: FakeDiscordServer) -> None:
    """In a DM every message is handled, "/model status" as text too; the bot's own echoed posts are not."""
    async with serving(app, dc) as adapter:
        status = await _ask(dc, DM_ALICE, "/model status")
        answer = await _ask(dc, DM_ALICE, "just a DM")
        await _idle(adapter)
    assert "demo:busy" in status and "You said: “just a DM”" in answer
    # Every bot post came back as MESSAGE_CREATE; answering one would have added a third message.
    assert len(_texts(dc, DM_ALICE)) == 2


async def test_a_slow_channel_never_stalls_another_and_a_text_stop_cuts_in(
    app: App, dc: FakeDiscordServer
) -> None:
    """A channel's messages wait in their lane, so "/stop" typed in that channel must not: it reaches the hung
    turn at once; another channel is answered meanwhile."""
    gate = _Gate()
    app.clients["demo"] = gate
    async with serving(app, dc) as adapter:
        await dc.user_message(DM_ALICE, "take your time", author_id=ALICE)
        slow = await gate.next_feed()
        slow.put_nowait("Thinking")
        [streamed] = await dc.wait_for(lambda: dc.bot_messages(DM_ALICE))
        await dc.user_message(GENERAL, "quick one", author_id=BOB, guild_id=GUILD, mentions_bot=True)
        fast = await gate.next_feed()
        fast.put_nowait("done.")
        fast.put_nowait(None)
        await dc.wait_for(_latest(dc, GENERAL, lambda t: t.startswith("done.")))
        await dc.user_message(DM_ALICE, "/stop", author_id=ALICE)
        await dc.wait_for(lambda: "Stopping the current answer." in _texts(dc, DM_ALICE))
        stopped = await dc.wait_for(
            lambda: [e["content"] for e in dc.edits(int(streamed["id"])) if "Stopped" in e["content"]]
        )
        await _idle(adapter)
    assert stopped[-1] == "Thinking\n\n**⚠ Stopped. Send /retry to ask again.**"


async def test_each_thread_is_its_own_session(app: App, dc: FakeDiscordServer) -> None:
    """A model picked in a thread stays in that thread; its parent channel keeps the default."""
    async with serving(app, dc):
        switched = await _ask(dc, THREAD, "/model demo/story", thread=True)
        in_thread = await _ask(dc, THREAD, "/status", thread=True)
        in_channel = await _ask(dc, GENERAL, "/status")
    assert switched == "Model set to demo/story."
    assert (
        f"Session: discord:chat:{GENERAL}:thread:{THREAD}" in in_thread and "Model: demo/story" in in_thread
    )
    assert f"Session: discord:chat:{GENERAL}\n" in in_channel and "Model: demo/echo" in in_channel


async def test_answer_streams_into_one_message_with_throttled_edits(
    state_dir: Path, dc: FakeDiscordServer
) -> None:
    """Words arrive every 4 ms; the one reply message is edited with growing text, at most once per 50 ms."""
    interval = 0.05
    async with (
        _started(_make_app(state_dir, demo_delay_s=0.004)) as app,
        serving(app, dc, stream_interval_s=interval),
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        await dc.user_message(DM_ALICE, "stream please", author_id=ALICE)
        final = await dc.wait_for(_latest(dc, DM_ALICE, lambda t: "\n-# " in t))
        elapsed = loop.time() - started
    [message] = dc.bot_messages(DM_ALICE)
    shown = [e["content"] for e in dc.edits(int(message["id"]))]
    body = final.split("\n-# ")[0]
    assert len(shown) >= 2, "the message should grow while the answer streams"
    assert len(shown) <= elapsed / interval + 2, f"{len(shown)} edits in {elapsed:.2f}s is not throttled"
    assert all(body.startswith(text) for text in shown[:-1]) and shown[-1] == final
    assert DM_ALICE in dc.typing_channels


async def test_long_answer_is_split_without_breaking_code_blocks(app: App, dc: FakeDiscordServer) -> None:
    """A 5 500-character answer with a long code block becomes messages under 2 000, each with closed fences."""
    code = "\n".join(f"print('line {i:03}')" for i in range(200))
    text = "Intro paragraph. " * 40 + "\n\n```python\n" + code + "\n```\n\n" + "Closing words. " * 60
    scripted = ScriptedClient()
    for profile in ("demo:main", "demo:busy"):
        scripted.always("demo/echo", profile, ok(text))
    app.clients["demo"] = scripted
    async with serving(app, dc) as adapter:
        await dc.user_message(DM_ALICE, "a long one please", author_id=ALICE)
        await dc.wait_for(_latest(dc, DM_ALICE, lambda t: "Closing words." in t))
        await _idle(adapter)
    parts = _texts(dc, DM_ALICE)
    assert len(parts) == 3 and all(len(p) <= 2000 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)
    assert parts[1].startswith("```python\n"), "the code block cut by the split is reopened with its language"
    joined = "\n".join(parts)
    assert all(f"print('line {i:03}')" in joined for i in range(200))


async def test_interrupted_answer_is_marked_and_retry_button_defers_the_slow_answer(
    app: App, dc: FakeDiscordServer
) -> None:
    """A stream that breaks shows a bold ⚠ line and a Retry button; the slow retry is deferred, then edited in."""
    scripted = _SlowScripted()
    for profile in ("demo:main", "demo:busy"):
        scripted.always("demo/echo", profile, Fail(Reason.TIMEOUT, after=("Half ", "an answer")))
    app.clients["demo"] = scripted
    async with serving(app, dc, defer_after_s=0.02) as adapter:
        await dc.user_message(DM_ALICE, "tell me everything", author_id=ALICE)
        broken = await dc.wait_for(_latest(dc, DM_ALICE, lambda t: "⚠" in t))
        [message] = dc.bot_messages(DM_ALICE)
        for profile in ("demo:main", "demo:busy"):
            scripted.always("demo/echo", profile, ok("The whole answer."))
        scripted.delay_s = 0.1
        retry = await dc.component("mb:retry", message_id=int(message["id"]), user_id=ALICE)
        deferred = await retry.wait_response()
        await dc.wait_for(lambda: retry.original and "The whole answer." in retry.original["content"])
        await _idle(adapter)
    assert broken.startswith("Half an answer\n\n**⚠ The answer was interrupted")
    assert message["components"][0]["components"][0]["custom_id"] == "mb:retry"
    assert deferred["type"] == 5


async def test_image_attachment_goes_to_the_vision_model_and_other_files_are_refused(
    app: App, dc: FakeDiscordServer
) -> None:
    """A PNG reaches the core as an image (answered by demo/vision); a text file gets a short "not supported"."""
    png = {"filename": "dot.png", "content_type": "image/png", "data": PNG_1x1}
    text_file = {"filename": "notes.txt", "content_type": "text/plain", "data": b"notes"}
    async with serving(app, dc) as adapter:
        seen = await _ask(dc, DM_ALICE, "what is this?", attachments=[png])
        await _idle(adapter)
        refused = await _ask(dc, DM_ALICE, "", attachments=[text_file])
        await _idle(adapter)
    assert "[demo vision] I received 1 image: 1) image/png, 1×1 px" in seen and "what is this?" in seen
    assert refused.startswith("Sorry, I can't read notes.txt") and len(_texts(dc, DM_ALICE)) == 2


class _SlowScripted(ScriptedClient):
    """The scripted provider client, pausing ``delay_s`` before each answer."""

    delay_s = 0.0

    async def stream(self, endpoint: Any, auth: Any, request: Any) -> Any:
        await asyncio.sleep(self.delay_s)
        async for delta in super().stream(endpoint, auth, request):
            yield delta


async def test_a_wait_shows_a_status_line_that_the_answer_replaces(
    state_dir: Path, dc: FakeDiscordServer
) -> None:
    """docs/failover.md §8: both demo profiles rest for echo, one is back in 5 s: the reply is posted as the status line
    "waiting 5s for a rate limit…" and edited into the answer; typing shows meanwhile."""
    app = _make_app(state_dir, config='{agents: {defaults: {model: {primary: "demo/echo"}}}}')
    async with _started(app):
        for profile in ("demo:main", "demo:busy"):
            await app.backend("main").record_failure(
                profile, "echo", Reason.RATE_LIMIT, now_ms=app.clock.now_ms(), retry_after_ms=None
            )
        assert isinstance(app.clock, FakeClock)
        app.clock.advance(seconds=55)
        async with serving(app, dc):
            await dc.user_message(DM_ALICE, "anyone?", author_id=ALICE)
            await dc.wait_for(_latest(dc, DM_ALICE, lambda t: "You said: “anyone?”" in t))
    [message] = dc.bot_messages(DM_ALICE)
    posts = [
        c.body["content"]
        for c in dc.calls
        if c.method == "POST" and c.path == f"/channels/{DM_ALICE}/messages"
    ]
    assert posts == ["waiting 5s for a rate limit…"]
    assert "You said" in dc.edits(int(message["id"]))[-1]["content"]
    assert DM_ALICE in dc.typing_channels
