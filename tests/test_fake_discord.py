"""The loopback Discord fake, proven with the real discord.py over real sockets (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests import log_guard
from tests.fakes.discord_server import FakeDiscordServer

TOKEN = "fake-bot-token"
APP_ID = 1_100_000_000_000_000_001
BOT_ID = 1_200_000_000_000_000_002
GUILD = 900_000_000_000_000_001
GENERAL = 900_000_000_000_000_010
THREAD = 900_000_000_000_000_011
ADMIN_ROLE = 900_000_000_000_000_020
OWNER = 700_000_000_000_000_001
ALICE = 700_000_000_000_000_002
DM = 800_000_000_000_000_001
LATE_GUILD = 900_000_000_000_000_100


@pytest.fixture(autouse=True)
def fail_on_discord_errors() -> Iterator[None]:
    """discord.py only logs exceptions raised in handlers: turn such log records into test failures."""
    with log_guard.fail_on_error_logs(["discord"]):
        yield


async def _populate(dc: FakeDiscordServer) -> None:
    await dc.add_guild(
        GUILD,
        name="lab",
        owner_id=OWNER,
        channels=[
            {"id": GENERAL, "name": "general"},
            {"id": THREAD, "name": "ideas", "type": 11, "parent_id": GENERAL},
        ],
        roles=[{"id": ADMIN_ROLE, "name": "admins", "permissions": 8}],
        members=[
            {"id": OWNER, "username": "owner"},
            {"id": ALICE, "username": "alice", "roles": [ADMIN_ROLE]},
        ],
    )
    dc.add_dm_channel(DM, ALICE, username="alice")


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscordServer]:
    """A fake with one guild (a text channel, a thread, an admin role) and a DM with Alice."""
    async with FakeDiscordServer(token=TOKEN, application_id=APP_ID, bot_user_id=BOT_ID) as server:
        await _populate(server)
        with server.patch_discord():
            yield server


def _intents(*, message_content: bool = True) -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = message_content
    return intents


def _bot(*, message_content: bool = True) -> commands.Bot:
    return commands.Bot(
        command_prefix="!", intents=_intents(message_content=message_content), guild_ready_timeout=0.05
    )


@contextlib.asynccontextmanager
async def running(client: discord.Client) -> AsyncIterator[discord.Client]:
    """The lifecycle production uses: login, connect in a task, wait for READY; close and await on exit."""
    await client.login(TOKEN)
    task = asyncio.create_task(client.connect(reconnect=False))
    try:
        await asyncio.wait_for(client.wait_until_ready(), 5)
        yield client
    finally:
        await client.close()
        await task


def _message_queue(bot: commands.Bot) -> asyncio.Queue[discord.Message]:
    queue: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_message(message: discord.Message) -> None:
        await queue.put(message)

    bot.add_listener(on_message)
    return queue


async def _next(queue: asyncio.Queue[discord.Message]) -> discord.Message:
    return await asyncio.wait_for(queue.get(), 2)


async def test_handshake_ready_and_guild_available(dc: FakeDiscordServer) -> None:
    """READY then GUILD_CREATE fill the cache (channels, thread, roles, members); a later guild is joined."""
    bot = _bot()
    async with running(bot):
        guild = bot.get_guild(GUILD)
        assert bot.user is not None and bot.user.id == BOT_ID
        assert bot.application_id == APP_ID
        assert guild is not None and guild.name == "lab" and guild.owner_id == OWNER and not guild.unavailable
        assert [c.id for c in guild.text_channels] == [GENERAL]
        thread = guild.get_thread(THREAD)
        assert thread is not None and thread.parent_id == GENERAL
        assert guild.me is not None and guild.me.id == BOT_ID
        assert guild.get_role(ADMIN_ROLE) is not None
        assert guild.default_role.permissions.send_messages
        assert dc.identifies[0]["intents"] == _intents().value
        assert dc.ready_sessions == 1
        await dc.wait_for(lambda: dc.heartbeats >= 1)
        joined = asyncio.create_task(bot.wait_for("guild_join", timeout=2))
        await dc.add_guild(LATE_GUILD, name="late", channels=[{"id": LATE_GUILD + 1, "name": "lobby"}])
        late = await joined
        assert late.id == LATE_GUILD and bot.get_channel(LATE_GUILD + 1) is not None
    await dc.wait_for(lambda: dc.ready_sessions == 0)


async def test_on_message_for_mention_in_guild_thread_and_dm(dc: FakeDiscordServer) -> None:
    """A mention in a guild thread and a DM with an attachment both reach on_message with their content."""
    bot = _bot()
    queue = _message_queue(bot)
    async with running(bot):
        await dc.user_message(
            THREAD,
            "hello bot",
            author_id=ALICE,
            username="alice",
            guild_id=GUILD,
            mentions_bot=True,
            thread=True,
        )
        guild_message = await _next(queue)
        attachment = {"filename": "notes.txt", "content_type": "text/plain", "data": b"some notes"}
        await dc.user_message(DM, "in private", author_id=ALICE, attachments=[attachment])
        dm_message = await _next(queue)
        data = await dm_message.attachments[0].read()
    assert guild_message.content == f"<@{BOT_ID}> hello bot"
    assert bot.user in guild_message.mentions
    assert isinstance(guild_message.channel, discord.Thread)
    assert isinstance(guild_message.author, discord.Member) and ADMIN_ROLE in guild_message.author._roles
    assert isinstance(dm_message.channel, discord.DMChannel) and dm_message.content == "in private"
    assert data == b"some notes"


async def test_bot_ignores_its_own_echoed_message(dc: FakeDiscordServer) -> None:
    """The bot's reply is echoed back as MESSAGE_CREATE; commands.Bot ignores it instead of looping."""
    bot = _bot()
    queue = _message_queue(bot)

    @bot.command()
    async def ping(ctx: commands.Context[commands.Bot]) -> None:
        await ctx.reply("!ping again")  # would trigger the command again if the bot did not ignore itself

    async with running(bot):
        first = await dc.user_message(GENERAL, "!ping", author_id=ALICE, guild_id=GUILD)
        await _next(queue)
        echo = await _next(queue)
        second = await dc.user_message(GENERAL, "!ping", author_id=ALICE, guild_id=GUILD)
        await dc.wait_for(lambda: len(dc.bot_messages(GENERAL)) >= 2)
    assert echo.author.id == BOT_ID and echo.content == "!ping again"
    replies = dc.bot_messages(GENERAL)
    assert [m["content"] for m in replies] == ["!ping again", "!ping again"]
    assert [m["message_reference"]["message_id"] for m in replies] == [first["id"], second["id"]]


async def test_without_message_content_intent_text_is_empty_except_dms_and_mentions(
    dc: FakeDiscordServer,
) -> None:
    """Like Discord: a plain guild message arrives without text; mentions and DMs keep theirs."""
    bot = _bot(message_content=False)
    queue = _message_queue(bot)
    async with running(bot):
        await dc.user_message(GENERAL, "secret", author_id=ALICE, guild_id=GUILD)
        plain = await _next(queue)
        await dc.user_message(GENERAL, "hi", author_id=ALICE, guild_id=GUILD, mentions_bot=True)
        mention = await _next(queue)
        await dc.user_message(DM, "dm text", author_id=ALICE)
        direct = await _next(queue)
    assert (plain.content, mention.content, direct.content) == ("", f"<@{BOT_ID}> hi", "dm text")


async def test_disallowed_message_content_intent_closes_with_4014() -> None:
    """If the portal has not enabled the intent the gateway closes 4014 and discord.py raises."""
    async with FakeDiscordServer(token=TOKEN, message_content_intent_allowed=False) as dc:
        bot = _bot()
        with dc.patch_discord():
            await bot.login(TOKEN)
            try:
                with pytest.raises(discord.PrivilegedIntentsRequired):
                    await asyncio.wait_for(bot.connect(reconnect=True), 5)
            finally:
                await bot.close()
        assert dc.gateway_close_codes == [4014]
        assert not bot.application_flags.gateway_message_content_limited


async def test_bad_token_fails_login() -> None:
    """A wrong token gets 401 from GET /users/@me, which discord.py turns into LoginFailure."""
    async with FakeDiscordServer(token=TOKEN) as dc:
        bot = _bot()
        with dc.patch_discord():
            try:
                with pytest.raises(discord.LoginFailure):
                    await bot.login("wrong-token")
            finally:
                await bot.close()
        assert [(c.method, c.path, c.authorization) for c in dc.calls] == [
            ("GET", "/users/@me", "Bot wrong-token")
        ]


def _model_group(calls: list[str]) -> app_commands.Group:
    group = app_commands.Group(name="model", description="Model controls")

    @group.command(name="status", description="Show the current model")
    async def status(interaction: discord.Interaction, verbose: bool = False) -> None:
        calls.append(f"status verbose={verbose}")
        await interaction.response.send_message(f"using gpt-x (verbose={verbose})")

    @group.command(name="use", description="Switch model")
    async def use(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(f"now {name}", ephemeral=True)

    @use.autocomplete("name")
    async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        models = ["gpt-x", "gpt-y", "claude-z"]
        return [app_commands.Choice(name=m, value=m) for m in models if m.startswith(current)]

    return group


async def test_tree_sync_per_guild_and_globally_is_recorded(dc: FakeDiscordServer) -> None:
    """tree.sync PUTs the command JSON per scope; the fake stores it and returns ids discord.py parses."""
    bot = _bot()
    bot.tree.add_command(_model_group([]), guild=discord.Object(GUILD))

    @bot.tree.command(name="help", description="How to use the bot")
    async def help_(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("help")

    async with running(bot):
        guild_synced = await bot.tree.sync(guild=discord.Object(GUILD))
        global_synced = await bot.tree.sync()
    [model] = dc.synced_commands(GUILD)
    assert model["name"] == "model" and model["guild_id"] == str(GUILD)
    assert [(o["name"], o["type"]) for o in model["options"]] == [("status", 1), ("use", 1)]
    assert [c["name"] for c in dc.synced_commands()] == ["help"]
    assert [c.id for c in guild_synced] == [int(model["id"])]
    assert global_synced[0].name == "help"
    paths = [c.path for c in dc.calls if c.method == "PUT"]
    assert paths == [f"/applications/{APP_ID}/guilds/{GUILD}/commands", f"/applications/{APP_ID}/commands"]


async def test_slash_subcommand_is_answered_through_the_callback(dc: FakeDiscordServer) -> None:
    """/model status verbose:true reaches the app_commands subcommand; its reply becomes the original message."""
    calls: list[str] = []
    bot = _bot()
    bot.tree.add_command(_model_group(calls), guild=discord.Object(GUILD))
    async with running(bot):
        await bot.tree.sync(guild=discord.Object(GUILD))
        handle = await dc.slash_command(
            "model status", options={"verbose": True}, user_id=ALICE, guild_id=GUILD, channel_id=GENERAL
        )
        response = await handle.wait_response()
    [option] = handle.payload["data"]["options"]
    assert option == {"name": "status", "type": 1, "options": [{"name": "verbose", "type": 5, "value": True}]}
    assert calls == ["status verbose=True"]
    assert response["type"] == 4 and response["data"]["content"] == "using gpt-x (verbose=True)"
    assert dc.interaction_responses(handle.id) == [response]
    assert handle.original is not None and handle.original["content"] == "using gpt-x (verbose=True)"
    assert dc.bot_messages(GENERAL)[-1]["id"] == handle.original["id"]


async def test_autocomplete_returns_choices(dc: FakeDiscordServer) -> None:
    """Typing in /model use name: gets an autocomplete result (type 8) with the matching choices."""
    bot = _bot()
    bot.tree.add_command(_model_group([]), guild=discord.Object(GUILD))
    async with running(bot):
        await bot.tree.sync(guild=discord.Object(GUILD))
        handle = await dc.autocomplete(
            "model use",
            options={"name": "gpt"},
            focused="name",
            user_id=ALICE,
            guild_id=GUILD,
            channel_id=GENERAL,
        )
        response = await handle.wait_response()
    assert response == {
        "type": 8,
        "data": {"choices": [{"name": "gpt-x", "value": "gpt-x"}, {"name": "gpt-y", "value": "gpt-y"}]},
    }


class _Picker(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.select(
        custom_id="picker:model",
        options=[
            discord.SelectOption(label="gpt-x", value="gpt-x"),
            discord.SelectOption(label="z", value="z"),
        ],
    )
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select[_Picker]) -> None:
        await interaction.response.edit_message(content=f"picked {select.values[0]}")

    @discord.ui.button(label="Done", custom_id="picker:done")
    async def done(self, interaction: discord.Interaction, button: discord.ui.Button[_Picker]) -> None:
        await interaction.response.edit_message(content="done", view=None)


async def test_select_and_button_round_trip_edits_the_message(dc: FakeDiscordServer) -> None:
    """A select pick and a button click reach the View callbacks, whose type-7 updates edit the message."""
    bot = _bot()
    async with running(bot):
        channel = bot.get_channel(GENERAL)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("choose a model", view=_Picker())
        picked = await dc.component("picker:model", message_id=sent.id, values=["z"], user_id=ALICE)
        assert (await picked.wait_response())["type"] == 7
        clicked = await dc.component("picker:done", message_id=sent.id, user_id=ALICE)
        await clicked.wait_response()
    assert picked.payload["data"] == {"custom_id": "picker:model", "component_type": 3, "values": ["z"]}
    assert [e["content"] for e in dc.edits(sent.id)] == ["picked z", "done"]
    final = dc.message(sent.id)
    assert final is not None and final["content"] == "done" and final["components"] == []


async def test_deferred_reply_then_followups_via_webhook(dc: FakeDiscordServer) -> None:
    """defer(thinking) then follow-ups: the first fills the deferred reply, later ones are new messages."""
    bot = _bot()

    @bot.tree.command(name="slow", description="A slow answer")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("answer", wait=True)
        await interaction.followup.send("extra", ephemeral=True, wait=True)
        await interaction.edit_original_response(content="answer (edited)")

    async with running(bot):
        await bot.tree.sync()
        handle = await dc.slash_command("slow", user_id=ALICE, guild_id=GUILD, channel_id=GENERAL)
        await handle.wait_followups(2)
        await dc.wait_for(lambda: handle.original and handle.original["content"] == "answer (edited)")
    assert handle.responses[0]["type"] == 5
    first, extra = handle.followups
    assert first["id"] == str(handle.original_message_id) and first["flags"] == 0
    assert extra["content"] == "extra" and extra["flags"] & 64
    token_calls = [c for c in dc.calls if c.path.startswith(("/webhooks/", "/interactions/"))]
    assert len(token_calls) == 4 and all(c.authorization is None for c in token_calls)


async def test_rate_limit_429_is_retried_by_the_library(dc: FakeDiscordServer) -> None:
    """A 429 with Via and retry_after makes discord.py wait and resend; one message is stored."""
    dc.rate_limit_next("POST", f"/channels/{GENERAL}/messages", retry_after=0.05)
    bot = _bot()
    async with running(bot):
        channel = bot.get_channel(GENERAL)
        assert isinstance(channel, discord.TextChannel)
        await channel.send("after the limit")
    posts = [c for c in dc.calls if c.method == "POST" and c.path == f"/channels/{GENERAL}/messages"]
    assert len(posts) == 2
    assert [m["content"] for m in dc.bot_messages(GENERAL)] == ["after the limit"]


async def test_rejected_sends_surface_as_discord_exceptions(dc: FakeDiscordServer) -> None:
    """Content over 2000 chars gets 400 / 50035 naming the field; a scripted 403 becomes Forbidden."""
    bot = _bot()
    async with running(bot):
        channel = bot.get_channel(GENERAL)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        dc.fail_next(
            "POST", f"/channels/{GENERAL}/messages", status=403, code=50013, message="Missing Permissions"
        )
        with pytest.raises(discord.Forbidden) as forbidden:
            await channel.send("not allowed")
        await channel.typing()
    assert too_long.value.status == 400 and too_long.value.code == 50035
    assert "In content: Must be 2000 or fewer in length." in too_long.value.text
    assert forbidden.value.code == 50013
    assert dc.bot_messages(GENERAL) == []
    assert dc.typing_channels == [GENERAL]


@pytest.mark.parametrize(
    ("response", "error_path"),
    [
        ({"type": 8, "data": {"choices": [{"name": str(i), "value": str(i)} for i in range(26)]}}, "choices"),
        ({"type": 4, "data": {"content": "y" * 2001}}, "content"),
        (
            {
                "type": 4,
                "data": {
                    "content": "pick",
                    "components": [
                        {
                            "type": 1,
                            "components": [
                                {
                                    "type": 3,
                                    "custom_id": "s",
                                    "options": [{"label": "o", "value": str(i)} for i in range(26)],
                                }
                            ],
                        }
                    ],
                },
            },
            "options",
        ),
        (
            {
                "type": 4,
                "data": {
                    "content": "c",
                    "components": [{"type": 1, "components": [{"type": 2, "custom_id": "c" * 101}]}],
                },
            },
            "custom_id",
        ),
    ],
)
async def test_callback_limits_are_validated(response: dict[str, Any], error_path: str) -> None:
    """Raw callbacks over Discord's limits get 400 / 50035 naming the field, with exactly application/json."""
    async with FakeDiscordServer() as dc:
        await _populate(dc)
        kind = "autocomplete" if response["type"] == 8 else "slash"
        if kind == "autocomplete":
            handle = await dc.autocomplete(
                "model use",
                options={"name": ""},
                focused="name",
                user_id=ALICE,
                guild_id=GUILD,
                channel_id=GENERAL,
            )
        else:
            handle = await dc.slash_command("model status", user_id=ALICE, guild_id=GUILD, channel_id=GENERAL)
        url = f"{dc.rest_base}/interactions/{handle.id}/{handle.token}/callback"
        async with aiohttp.ClientSession() as session, session.post(url, json=response) as reply:
            body = await reply.json()
            content_type = reply.headers["Content-Type"]
    assert reply.status == 400 and body["code"] == 50035
    assert error_path in json.dumps(body["errors"])
    assert content_type == "application/json"
    assert handle.responses == []


async def test_zlib_stream_frames_and_heartbeat_ack() -> None:
    """With compress=zlib-stream every frame is a Z_SYNC_FLUSH chunk of one stream; heartbeats get op 11."""
    async with FakeDiscordServer() as dc, aiohttp.ClientSession() as session:
        url = dc.gateway_url.with_query(v="10", encoding="json", compress="zlib-stream")
        async with session.ws_connect(url) as ws:
            inflator = zlib.decompressobj()

            async def receive() -> dict[str, Any]:
                frame = await ws.receive_bytes(timeout=2)
                assert frame.endswith(b"\x00\x00\xff\xff")
                payload: dict[str, Any] = json.loads(inflator.decompress(frame))
                return payload

            hello = await receive()
            await ws.send_json({"op": 1, "d": None})
            ack = await receive()
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
    assert ack["op"] == 11
    assert dc.gateway_connects == [{"v": "10", "encoding": "json", "compress": "zlib-stream"}]


@pytest.mark.parametrize("trigger", ["op7_reconnect", "server_close_4000"])
async def test_discord_py_uses_zlib_stream_and_resumes(dc: FakeDiscordServer, trigger: str) -> None:
    """discord.py asks for zlib-stream; after op 7 or a 4000 close it RESUMEs and receives events again."""
    bot = _bot()
    queue = _message_queue(bot)
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    bot.add_listener(on_resumed)
    async with running(bot):
        assert bot.ws is not None
        session_id = bot.ws.session_id
        if trigger == "op7_reconnect":
            await dc.request_reconnect()
        else:
            await dc.drop_connections(4000)
        await asyncio.wait_for(resumed.wait(), 2)
        await dc.user_message(GENERAL, "after resume", author_id=ALICE, guild_id=GUILD)
        assert (await _next(queue)).content == "after resume"
    assert all(q.get("compress") == "zlib-stream" for q in dc.gateway_connects)
    assert len(dc.gateway_connects) == 2 and len(dc.identifies) == 1
    assert dc.resumes[0]["session_id"] == session_id


class _QuickShards(discord.AutoShardedClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Skip discord.py's 5 s pause between shard IDENTIFYs."""


async def test_sharded_client_gets_shard_count_and_guilds_per_shard() -> None:
    """AutoShardedClient reads shards from /gateway/bot; each shard IDENTIFYs and gets only its guilds."""
    guild_a, guild_b = 4 << 22, 5 << 22  # (id >> 22) % 2 puts them on shards 0 and 1
    async with FakeDiscordServer(token=TOKEN, shard_count=2) as dc:
        await dc.add_guild(guild_a, name="a", channels=[{"id": 11, "name": "a"}])
        await dc.add_guild(guild_b, name="b", channels=[{"id": 12, "name": "b"}])
        client = _QuickShards(intents=_intents(), guild_ready_timeout=0.05)
        with dc.patch_discord():
            async with running(client):
                guilds = {g.id: g.shard_id for g in client.guilds}
        assert sorted(i["shard"] for i in dc.identifies) == [[0, 2], [1, 2]]
        assert guilds == {guild_a: 0, guild_b: 1}


class _AskName(discord.ui.Modal, title="Your name"):
    name: discord.ui.TextInput[_AskName] = discord.ui.TextInput(label="Name", custom_id="ask:name")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"hello {self.name.value}")


async def test_modal_is_recorded_and_its_submit_reaches_on_submit(dc: FakeDiscordServer) -> None:
    """send_modal is a type-9 callback; submitting it (type 5) runs the Modal's on_submit."""
    bot = _bot()

    @bot.tree.command(name="name", description="Ask for a name")
    async def name(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(_AskName(custom_id="ask"))

    async with running(bot):
        opened = await dc.slash_command("name", user_id=ALICE, guild_id=GUILD, channel_id=GENERAL)
        modal = await opened.wait_response()
        submitted = await dc.modal_submit(
            "ask", values={"ask:name": "Alice"}, user_id=ALICE, guild_id=GUILD, channel_id=GENERAL
        )
        reply = await submitted.wait_response()
    assert (
        modal["type"] == 9 and modal["data"]["custom_id"] == "ask" and modal["data"]["title"] == "Your name"
    )
    assert reply["type"] == 4 and reply["data"]["content"] == "hello Alice"


async def test_member_option_is_resolved(dc: FakeDiscordServer) -> None:
    """A synced USER-typed option is sent as a snowflake with resolved user and member data."""
    bot = _bot()

    @bot.tree.command(name="whois", description="Describe a member")
    async def whois(interaction: discord.Interaction, who: discord.Member) -> None:
        await interaction.response.send_message(f"{who.name} admin={who.get_role(ADMIN_ROLE) is not None}")

    async with running(bot):
        await bot.tree.sync()
        handle = await dc.slash_command(
            "whois", options={"who": ALICE}, user_id=OWNER, guild_id=GUILD, channel_id=GENERAL
        )
        response = await handle.wait_response()
    assert handle.payload["data"]["options"] == [{"name": "who", "type": 6, "value": str(ALICE)}]
    assert response["data"]["content"] == "alice admin=True"


async def test_rest_reads_dm_creation_and_deletes(dc: FakeDiscordServer) -> None:
    """fetch_* calls, history, create_dm (reusing the DM channel), delete and file uploads work over REST."""
    bot = _bot()
    async with running(bot):
        first = await dc.user_message(GENERAL, "first", author_id=ALICE, guild_id=GUILD)
        channel = await bot.fetch_channel(GENERAL)
        assert isinstance(channel, discord.TextChannel)
        history = [m.content async for m in channel.history(limit=10)]
        fetched = await channel.fetch_message(int(first["id"]))
        guild = bot.get_guild(GUILD)
        assert guild is not None
        member = await guild.fetch_member(ALICE)
        roles = await guild.fetch_roles()
        user = await bot.fetch_user(ALICE)
        dm = await user.create_dm()
        sent = await dm.send("in private")
        await sent.delete()
        report = await dm.send("report", file=discord.File(io.BytesIO(b"numbers"), filename="report.txt"))
        uploaded = await report.attachments[0].read()
        with pytest.raises(discord.NotFound):
            await guild.fetch_member(123)
    assert history == ["first"] and fetched.content == "first"
    assert [r.id for r in member.roles if not r.is_default()] == [ADMIN_ROLE]
    assert {r.id for r in roles} == {GUILD, ADMIN_ROLE}
    assert user.name == "alice" and dm.id == DM
    assert dc.deleted_message_ids == [sent.id]
    assert [m["content"] for m in dc.messages(DM)] == ["report"]
    assert uploaded == b"numbers"
    assert [(c.path, c.files) for c in dc.calls if c.files] == [(f"/channels/{DM}/messages", ("report.txt",))]


async def test_members_intent_chunks_guilds_on_request(dc: FakeDiscordServer) -> None:
    """With the members intent discord.py requests chunks (op 8); GUILD_MEMBERS_CHUNK fills the cache."""
    intents = _intents()
    intents.members = True
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
    async with running(bot):
        guild = bot.get_guild(GUILD)
        assert guild is not None
        assert guild.chunked
        assert sorted(m.id for m in guild.members) == sorted([OWNER, ALICE, BOT_ID])
