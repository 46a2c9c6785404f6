"""Loopback fake of Discord's REST API and gateway that the real discord.py logs in, connects and talks to."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import yarl
from aiohttp import BodyPartReader, WSMsgType, web
from aiohttp.typedefs import Middleware

JSON = dict[str, Any]
_T = TypeVar("_T")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000

# Gateway intents, flags and permission bits the fake looks at (values from Discord's developer docs).
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7
EVERYONE_PERMISSIONS = sum(1 << bit for bit in (6, 10, 11, 14, 15, 16, 31, 35, 38))

CHANNEL_TEXT, CHANNEL_DM, CHANNEL_PUBLIC_THREAD = 0, 1, 11
THREAD_TYPES = frozenset({10, 11, 12})
# Interaction type -> callback types Discord accepts for it.
_ALLOWED_CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}
_OPTION_TYPE_SUB_COMMAND, _OPTION_TYPE_GROUP = 1, 2
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
_Files = list[tuple[str, bytes]]
_BODY = web.RequestKey[Any]("body")
_FILES = web.RequestKey[_Files]("files")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly "application/json": json_response() appends a charset and discord.py then treats the body as text.
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


class _ApiError(Exception):
    """A Discord error response: HTTP status, JSON error code, message and optional field errors."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def response(self) -> web.Response:
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return _json(body, status=self.status)


def _form_error(path: str, code: str, message: str) -> _ApiError:
    """Discord's 50035 "Invalid Form Body" with the error nested under a dotted field path."""
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".")):
        errors = {part: errors}
    return _ApiError(400, 50035, "Invalid Form Body", errors)


@dataclass(frozen=True)
class Call:
    """One REST request the client made; ``path`` is relative to ``/api/v10``."""

    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    authorization: str | None
    files: tuple[str, ...] = ()


@dataclass
class _ScriptedFailure:
    method: str
    path_prefix: str
    status: int
    body: JSON
    headers: Mapping[str, str]
    performed: bool = False  # the request is carried out; only its answer is replaced


@dataclass(eq=False)
class _Connection:
    """One gateway websocket; zlib-stream connections share one compressor for their whole life."""

    ws: web.WebSocketResponse
    compressor: Any | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: _Session | None = None
    closed_with: int | None = None

    async def send(self, text: str) -> None:
        async with self.lock:
            if self.ws.closed:
                return
            with contextlib.suppress(ConnectionError):
                if self.compressor is None:
                    await self.ws.send_str(text)
                else:
                    data = self.compressor.compress(text.encode()) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        async with self.lock:
            self.closed_with = code
            await self.ws.close(code=code, message=reason.encode())


@dataclass(eq=False)
class _Session:
    """A gateway session: survives its connection so that RESUME can replay what was missed."""

    id: str
    intents: int
    shard: tuple[int, int]
    seq: int = 0
    log: list[tuple[int, str]] = field(default_factory=list)
    conn: _Connection | None = None


@dataclass
class _Guild:
    id: int
    name: str
    owner_id: int
    channels: dict[int, JSON] = field(default_factory=dict)
    threads: dict[int, JSON] = field(default_factory=dict)
    roles: dict[int, JSON] = field(default_factory=dict)
    members: dict[int, JSON] = field(default_factory=dict)

    def payload(self, *, joined: bool = False) -> JSON:
        """GUILD_CREATE data; a guild joined mid-session has no ``unavailable`` key (discord.py: guild_join)."""
        return {
            **({} if joined else {"unavailable": False}),
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "owner_id": str(self.owner_id),
            "large": False,
            "member_count": len(self.members),
            "joined_at": _now(),
            "roles": list(self.roles.values()),
            "channels": list(self.channels.values()),
            "threads": list(self.threads.values()),
            "members": list(self.members.values()),
            "emojis": [],
            "stickers": [],
            "features": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "preferred_locale": "en-US",
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "afk_timeout": 300,
            "system_channel_id": None,
        }


class FakeInteraction:
    """An interaction injected through the gateway; read what the bot answered to it."""

    def __init__(self, server: FakeDiscordServer, payload: JSON) -> None:
        self._server = server
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.channel_id = int(payload["channel_id"])
        self.responses: list[JSON] = []
        self.original_message_id: int | None = None
        self.followup_ids: list[int] = []

    @property
    def response(self) -> JSON | None:
        """The callback body (``{"type", "data"}``) the bot answered with, if any."""
        return self.responses[0] if self.responses else None

    @property
    def original(self) -> JSON | None:
        """The current state of the original response message (or the updated component message)."""
        return None if self.original_message_id is None else self._server.message(self.original_message_id)

    @property
    def followups(self) -> list[JSON]:
        """The current state of every follow-up message, oldest first."""
        return [m for m in map(self._server.message, self.followup_ids) if m is not None]

    async def wait_response(self, timeout: float = 5.0) -> JSON:  # noqa: ASYNC109 -- a test helper's deadline
        """Wait until the bot called the interaction callback endpoint; return the callback body."""
        return await self._server.wait_for(lambda: self.response, timeout=timeout)

    async def wait_followups(self, count: int = 1, timeout: float = 5.0) -> list[JSON]:  # noqa: ASYNC109
        """Wait until the bot sent ``count`` follow-ups; return them."""
        await self._server.wait_for(lambda: len(self.followup_ids) >= count, timeout=timeout)
        return self.followups


class FakeDiscordServer:
    """Discord's REST API under ``rest_base`` and its gateway at ``gateway_url``, all on 127.0.0.1."""

    def __init__(
        self,
        *,
        application_id: int = 1_100_000_000_000_000_001,
        bot_user_id: int = 1_200_000_000_000_000_002,
        bot_username: str = "modelbot",
        message_content_intent_allowed: bool = True,
        token: str | None = None,
        shard_count: int = 1,
        heartbeat_interval_ms: int = 41_250,
    ) -> None:
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.message_content_intent_allowed = message_content_intent_allowed
        self.shard_count = shard_count
        self._token = token
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self.bot_user: JSON = {
            **self._user_payload(bot_user_id, bot_username),
            "bot": True,
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
        }
        self._users: dict[int, JSON] = {bot_user_id: self.bot_user}
        self._guilds: dict[int, _Guild] = {}
        self._channels: dict[int, JSON] = {}
        self._dm_by_user: dict[int, int] = {}
        self._messages: dict[int, JSON] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._edits: dict[int, list[JSON]] = {}
        self._attachment_data: dict[int, bytes] = {}
        self._commands: dict[int | None, list[JSON]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self._interactions: dict[int, FakeInteraction] = {}
        self._failures: list[_ScriptedFailure] = []
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = 0
        # Records for assertions.
        self.calls: list[Call] = []
        self.typing_channels: list[int] = []
        self.deleted_message_ids: list[int] = []
        self.identifies: list[JSON] = []
        self.resumes: list[JSON] = []
        self.gateway_connects: list[dict[str, str]] = []
        # Per ended connection: the code the fake closed with, else the one the client closed with.
        self.gateway_close_codes: list[int | None] = []
        self.heartbeats = 0

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._build_middleware()])
        self._add_routes(app.router)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self._port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(1001, "server shutting down"), 0.5)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the REST API lives under it, and so do uploaded attachments."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def rest_base(self) -> str:
        """What ``discord.http.Route.BASE`` (and the adapter's ``apiBaseUrl``) must point at."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> yarl.URL:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` (and the adapter's ``gatewayUrl``) must point at."""
        return yarl.URL(f"ws://127.0.0.1:{self._port}/gateway")

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this fake; restore both on exit."""
        from discord.gateway import DiscordWebSocket  # noqa: PLC0415 -- keep the fake importable alone
        from discord.http import Route  # noqa: PLC0415

        saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self.rest_base, self.gateway_url
        try:
            yield
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved

    # ----------------------------------------------------------------- world setup

    async def add_guild(
        self,
        guild_id: int,
        *,
        name: str = "guild",
        owner_id: int | None = None,
        channels: Sequence[Mapping[str, Any]] = (),
        roles: Sequence[Mapping[str, Any]] = (),
        members: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Create a guild (the bot is a member); sends GUILD_CREATE at once if the bot is connected.

        channels: ``{"id", "name", "type"=0, "parent_id"}`` (types 10-12 are threads and need parent_id);
        roles: ``{"id", "name", "permissions"}``; members: ``{"id", "username", "roles": [role ids]}``.
        The @everyone role (id = guild id) is added unless given.
        """
        guild = _Guild(
            id=guild_id, name=name, owner_id=owner_id if owner_id is not None else self.bot_user_id
        )
        for role in ({"id": guild_id, "name": "@everyone", "permissions": EVERYONE_PERMISSIONS}, *roles):
            guild.roles[int(role["id"])] = self._role_payload(role)
        for spec in channels:
            self._add_channel(guild, spec)
        self._guilds[guild_id] = guild
        self._ensure_member(guild, self.bot_user_id)
        for member in members:
            self._ensure_member(guild, int(member["id"]), member.get("username"), member.get("roles", ()))
        await self._dispatch(
            "GUILD_CREATE", guild.payload(joined=True), guild_id=guild_id, intent=INTENT_GUILDS
        )

    def add_dm_channel(self, channel_id: int, user_id: int, *, username: str | None = None) -> None:
        """Create the DM channel between the bot and a user."""
        user = self._ensure_user(user_id, username)
        self._channels[channel_id] = {
            "id": str(channel_id),
            "type": CHANNEL_DM,
            "recipients": [user],
            "last_message_id": None,
            "flags": 0,
        }
        self._dm_by_user[user_id] = channel_id

    # ----------------------------------------------------------------- event injection

    async def user_message(
        self,
        channel_id: int,
        content: str,
        *,
        author_id: int,
        username: str | None = None,
        guild_id: int | None = None,
        mentions_bot: bool = False,
        reference_message_id: int | None = None,
        attachments: Sequence[Mapping[str, Any]] | None = None,
        member_roles: Sequence[int] = (),
        thread: bool = False,
    ) -> JSON:
        """A user posts a message: MESSAGE_CREATE (a DM when ``guild_id`` is None); returns the payload.

        ``mentions_bot`` prefixes ``<@bot>`` unless the content already has it. ``thread=True`` makes
        ``channel_id`` a public thread (created under the guild's first text channel if unknown).
        attachments: ``{"filename", "content_type", "data": bytes}``; served by the fake at their url.
        Without the message-content intent the bot sees empty content unless it is a DM or a mention.
        """
        author = self._ensure_user(author_id, username)
        if guild_id is None:
            channel = self._channels.get(channel_id)
            if channel is None or channel["type"] != CHANNEL_DM:
                raise ValueError(f"no DM channel {channel_id}: call add_dm_channel() first")
        else:
            guild = self._guild(guild_id)
            if thread and channel_id not in guild.threads:
                await self._create_thread(guild, channel_id, author_id)
            if channel_id not in guild.channels and channel_id not in guild.threads:
                raise ValueError(f"guild {guild_id} has no channel {channel_id}")
        mention = f"<@{self.bot_user_id}>"
        if mentions_bot and mention not in content and f"<@!{self.bot_user_id}>" not in content:
            content = f"{mention} {content}"
        message = self._new_message(channel_id, author, {"content": content}, guild_id=guild_id)
        if guild_id is not None:
            member = self._ensure_member(self._guild(guild_id), author_id, username, member_roles)
            message["member"] = {k: v for k, v in member.items() if k != "user"}
        if mentions_bot:
            message["mentions"] = [self._mention(self.bot_user_id, guild_id)]
        if reference_message_id is not None:
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "message_id": str(reference_message_id),
                "channel_id": str(channel_id),
                **({"guild_id": str(guild_id)} if guild_id is not None else {}),
            }
            message["referenced_message"] = self.message(reference_message_id)
        message["attachments"] = [self._store_attachment(a["filename"], a) for a in attachments or ()]
        self._store_message(message)
        gated = guild_id is not None and not mentions_bot
        await self._dispatch_message("MESSAGE_CREATE", message, gated=gated)
        return copy.deepcopy(message)

    async def slash_command(
        self,
        name: str,
        *,
        options: Mapping[str, Any] | None = None,
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        member_permissions: str = "0",
    ) -> FakeInteraction:
        """A user runs ``/name`` (``"model status"`` = subcommand ``status`` of ``model``): type 2.

        Option types come from the synced command schema, else from the Python type of each value.
        """
        data = self._command_data(name, options or {}, guild_id=guild_id, focused=None)
        return await self._interaction(
            2,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            member_permissions=member_permissions,
        )

    async def autocomplete(
        self,
        name: str,
        *,
        options: Mapping[str, Any],
        focused: str,
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        member_permissions: str = "0",
    ) -> FakeInteraction:
        """A user types into option ``focused`` of ``/name``: an autocomplete interaction (type 4)."""
        if focused not in options:
            raise ValueError(f"focused option {focused!r} must be one of the options")
        data = self._command_data(name, options, guild_id=guild_id, focused=focused)
        return await self._interaction(
            4,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            member_permissions=member_permissions,
        )

    async def component(
        self,
        custom_id: str,
        *,
        message_id: int,
        user_id: int,
        component_type: int | None = None,
        values: Sequence[str] = (),
        member_permissions: str = "0",
    ) -> FakeInteraction:
        """A user clicks a button or picks select values on a stored message: type 3.

        ``component_type`` (2 button, 3 string select) defaults to the type found in the message.
        """
        message = self._message(message_id)
        found = next(
            (c for c in _walk_components(message["components"]) if c.get("custom_id") == custom_id), None
        )
        if found is None:
            raise ValueError(f"message {message_id} has no component with custom_id {custom_id!r}")
        if found["type"] == 3:
            allowed = {o["value"] for o in found.get("options", [])}
            if not set(values) <= allowed:
                raise ValueError(f"values {sorted(set(values) - allowed)} are not options of {custom_id!r}")
        data: JSON = {"custom_id": custom_id, "component_type": component_type or found["type"]}
        if data["component_type"] != 2:
            data["values"] = list(values)
        guild_id = int(message["guild_id"]) if "guild_id" in message else None
        return await self._interaction(
            3,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=int(message["channel_id"]),
            member_permissions=member_permissions,
            message=message,
        )

    async def modal_submit(
        self,
        custom_id: str,
        *,
        values: Mapping[str, str],
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        member_permissions: str = "0",
    ) -> FakeInteraction:
        """A user submits a modal: type 5 with one text input row per ``values`` item."""
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()
        ]
        data = {"custom_id": custom_id, "components": rows}
        return await self._interaction(
            5,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            member_permissions=member_permissions,
        )

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT on every connection: clients reconnect and RESUME."""
        for conn in list(self._connections):
            await conn.send(json.dumps({"op": 7, "d": None, "s": None, "t": None}))

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway connection with ``code`` (4000 keeps sessions resumable)."""
        for conn in list(self._connections):
            await conn.close(code, "dropped by the test")

    # ----------------------------------------------------------------- scripted failures

    def rate_limit_next(
        self, method: str, path_prefix: str, retry_after: float = 0.05, *, is_global: bool = False
    ) -> None:
        """Answer the next ``method`` request under ``path_prefix`` (e.g. ``/channels/1/messages``) with 429."""
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": is_global,
            "code": 0,
        }
        # discord.py treats a 429 as a rate limit only with a Via header (otherwise: Cloudflare ban).
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(max(1, round(retry_after))),
            "X-RateLimit-Scope": "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        self._failures.append(_ScriptedFailure(method.upper(), path_prefix, 429, body, headers))

    def fail_next(
        self, method: str, path_prefix: str, *, status: int, code: int = 0, message: str = ""
    ) -> None:
        """Answer the next matching request with ``status`` and Discord's error JSON (5xx: the client sleeps)."""
        body = {"message": message or f"{status}: fake failure", "code": code}
        self._failures.append(_ScriptedFailure(method.upper(), path_prefix, status, body, {}))

    def garble_next(self, method: str, path_prefix: str) -> None:
        """Carry out the next matching request, then answer ``200 {}``: a reply the client cannot read, so it
        cannot know whether its message was posted (a proxy or an API change gone wrong)."""
        self._failures.append(_ScriptedFailure(method.upper(), path_prefix, 200, {}, {}, performed=True))

    # ----------------------------------------------------------------- records

    def message(self, message_id: int) -> JSON | None:
        """The current state of one message, or None if unknown or deleted."""
        found = self._messages.get(message_id)
        return copy.deepcopy(found) if found is not None else None

    def messages(self, channel_id: int) -> list[JSON]:
        """Current state of every message in a channel (users' and the bot's), oldest first."""
        return [copy.deepcopy(self._messages[i]) for i in self._channel_messages.get(channel_id, [])]

    def bot_messages(self, channel_id: int) -> list[JSON]:
        """The bot's messages in a channel (ephemeral interaction replies included), oldest first."""
        return [m for m in self.messages(channel_id) if int(m["author"]["id"]) == self.bot_user_id]

    def edits(self, message_id: int) -> list[JSON]:
        """The message's state after each edit, oldest first."""
        return copy.deepcopy(self._edits.get(message_id, []))

    def interaction(self, interaction_id: int) -> FakeInteraction:
        """The handle of an injected interaction, by id."""
        return self._interactions[interaction_id]

    def interaction_responses(self, interaction_id: int) -> list[JSON]:
        """Callback bodies (``{"type", "data"}``) the bot posted for an interaction."""
        return copy.deepcopy(self._interactions[interaction_id].responses)

    def synced_commands(self, guild_id: int | None = None) -> list[JSON]:
        """The commands last PUT globally (``guild_id=None``) or for one guild, as stored (with ids)."""
        return copy.deepcopy(self._commands.get(guild_id, []))

    @property
    def ready_sessions(self) -> int:
        """Number of gateway sessions with a live connection."""
        return sum(1 for s in self._sessions.values() if s.conn is not None)

    async def wait_for(self, predicate: Callable[[], _T | None], timeout: float = 5.0) -> _T:  # noqa: ASYNC109
        """Wait until ``predicate()`` is truthy (re-checked on every change in the fake); return it."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    while not (value := predicate()):
                        await self._changed.wait()
            except TimeoutError:
                recent = ", ".join(f"{c.method} {c.path}" for c in self.calls[-8:])
                raise AssertionError(f"condition not met within {timeout}s; last calls: {recent}") from None
        return value

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ----------------------------------------------------------------- payload builders

    def _next_id(self) -> int:
        return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._ids) & 0x3FFFFF)

    @staticmethod
    def _user_payload(user_id: int, username: str) -> JSON:
        return {
            "id": str(user_id),
            "username": username,
            "discriminator": "0",
            "global_name": username,
            "avatar": None,
            "public_flags": 0,
        }

    def _ensure_user(self, user_id: int, username: str | None = None) -> JSON:
        user = self._users.get(user_id)
        if user is None or (username is not None and user["username"] != username):
            user = self._users[user_id] = self._user_payload(user_id, username or f"user{user_id}")
        return user

    def _role_payload(self, spec: Mapping[str, Any]) -> JSON:
        return {
            "id": str(spec["id"]),
            "name": spec["name"],
            "permissions": str(spec.get("permissions", 0)),
            "position": spec.get("position", 0),
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }

    def _add_channel(self, guild: _Guild, spec: Mapping[str, Any]) -> JSON:
        channel_id, ctype = int(spec["id"]), int(spec.get("type", CHANNEL_TEXT))
        channel: JSON = {
            "id": str(channel_id),
            "guild_id": str(guild.id),
            "type": ctype,
            "name": spec.get("name", f"channel-{channel_id}"),
            "position": spec.get("position", len(guild.channels)),
            "parent_id": str(spec["parent_id"]) if spec.get("parent_id") is not None else None,
            "permission_overwrites": [],
            "topic": spec.get("topic"),
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if ctype in THREAD_TYPES:
            if channel["parent_id"] is None:
                raise ValueError(f"thread {channel_id} needs a parent_id")
            channel |= {
                "owner_id": str(spec.get("owner_id", self.bot_user_id)),
                "message_count": 0,
                "member_count": 1,
                "total_message_sent": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _now(),
                    "locked": False,
                },
            }
            guild.threads[channel_id] = channel
        else:
            guild.channels[channel_id] = channel
        self._channels[channel_id] = channel
        return channel

    async def _create_thread(self, guild: _Guild, thread_id: int, owner_id: int) -> None:
        if thread_id in guild.channels:
            raise ValueError(f"channel {thread_id} is not a thread")
        parent = next((c for c in guild.channels.values() if c["type"] == CHANNEL_TEXT), None)
        if parent is None:
            raise ValueError(f"guild {guild.id} has no text channel to hold thread {thread_id}")
        spec = {
            "id": thread_id,
            "type": CHANNEL_PUBLIC_THREAD,
            "parent_id": parent["id"],
            "owner_id": owner_id,
        }
        thread = self._add_channel(guild, spec)
        await self._dispatch(
            "THREAD_CREATE", {**thread, "newly_created": True}, guild_id=guild.id, intent=INTENT_GUILDS
        )

    def _ensure_member(
        self, guild: _Guild, user_id: int, username: str | None = None, roles: Sequence[int] = ()
    ) -> JSON:
        member = guild.members.get(user_id)
        if member is None:
            member = guild.members[user_id] = {
                "roles": [],
                "joined_at": _now(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "pending": False,
                "nick": None,
                "avatar": None,
                "premium_since": None,
                "communication_disabled_until": None,
            }
        member["user"] = self._ensure_user(user_id, username)
        if roles:
            member["roles"] = [str(r) for r in roles]
        return member

    def _mention(self, user_id: int, guild_id: int | None) -> JSON:
        mention = dict(self._users[user_id])
        if guild_id is not None:
            member = self._ensure_member(self._guild(guild_id), user_id)
            mention["member"] = {k: v for k, v in member.items() if k != "user"}
        return mention

    def _guild(self, guild_id: int) -> _Guild:
        try:
            return self._guilds[guild_id]
        except KeyError:
            raise ValueError(f"unknown guild {guild_id}: call add_guild() first") from None

    def _message(self, message_id: int) -> JSON:
        try:
            return self._messages[message_id]
        except KeyError:
            raise _ApiError(404, 10008, "Unknown Message") from None

    def _channel(self, channel_id: int) -> JSON:
        try:
            return self._channels[channel_id]
        except KeyError:
            raise _ApiError(404, 10003, "Unknown Channel") from None

    def _store_attachment(self, filename: str, spec: Mapping[str, Any]) -> JSON:
        attachment_id = self._next_id()
        data: bytes = spec.get("data", b"")
        self._attachment_data[attachment_id] = data
        url = f"{self.base_url}/attachments/{attachment_id}/{filename}"
        return {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data) or int(spec.get("size", 0)),
            "url": url,
            "proxy_url": url,
            "content_type": spec.get("content_type"),
        }

    def _new_message(
        self, channel_id: int, author: JSON, body: Mapping[str, Any], *, guild_id: int | None
    ) -> JSON:
        message: JSON = {
            "id": str(self._next_id()),
            "channel_id": str(channel_id),
            "author": author,
            "content": body.get("content") or "",
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": list(body.get("embeds") or []),
            "components": list(body.get("components") or []),
            "pinned": False,
            "type": 0,
            "flags": int(body.get("flags") or 0),
        }
        if guild_id is not None:
            message["guild_id"] = str(guild_id)
        return message

    def _store_message(self, message: JSON) -> None:
        message_id, channel_id = int(message["id"]), int(message["channel_id"])
        self._messages[message_id] = message
        self._channel_messages.setdefault(channel_id, []).append(message_id)
        channel = self._channels.get(channel_id)
        if channel is not None:
            channel["last_message_id"] = message["id"]

    def _bot_message(
        self, channel_id: int, body: Mapping[str, Any], files: Sequence[tuple[str, bytes]]
    ) -> JSON:
        """A message authored by the bot (channel POST, interaction reply or follow-up), stored."""
        channel = self._channel(channel_id)
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        message = self._new_message(channel_id, self.bot_user, body, guild_id=guild_id)
        if guild_id is not None:
            member = self._ensure_member(self._guild(guild_id), self.bot_user_id)
            message["member"] = {k: v for k, v in member.items() if k != "user"}
        message["attachments"] = [self._store_attachment(name, {"data": data}) for name, data in files]
        reference = body.get("message_reference")
        if reference and reference.get("message_id"):
            message["type"] = 19
            ids = {
                k: str(v) for k, v in reference.items() if k in ("message_id", "channel_id", "guild_id") and v
            }
            message["message_reference"] = {"type": 0, "channel_id": str(channel_id), **ids}
            message["referenced_message"] = self.message(int(reference["message_id"]))
        self._store_message(message)
        return message

    def _apply_edit(self, message: JSON, body: Mapping[str, Any], files: Sequence[tuple[str, bytes]]) -> None:
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "flags" in body and body["flags"] is not None:
            message["flags"] = (message["flags"] & MESSAGE_FLAG_EPHEMERAL) | int(body["flags"])
        if "attachments" in body or files:
            kept = {str(a.get("id")) for a in body.get("attachments") or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in kept]
            message["attachments"] += [self._store_attachment(name, {"data": data}) for name, data in files]
        message["edited_timestamp"] = _now()
        self._edits.setdefault(int(message["id"]), []).append(copy.deepcopy(message))

    # ----------------------------------------------------------------- validation

    def _validate_message(
        self, body: Mapping[str, Any], files: Sequence[tuple[str, bytes]], *, create: bool, prefix: str = ""
    ) -> None:
        content = body.get("content")
        if content is not None and len(content) > 2000:
            raise _form_error(f"{prefix}content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        if len(body.get("embeds") or []) > 10:
            raise _form_error(f"{prefix}embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        self._validate_components(body.get("components") or [], f"{prefix}components")
        if create and not (
            content or body.get("embeds") or body.get("components") or files or body.get("poll")
        ):
            raise _ApiError(400, 50006, "Cannot send an empty message")

    @staticmethod
    def _validate_components(rows: Sequence[Mapping[str, Any]], path: str = "components") -> None:
        if len(rows) > 5:
            raise _form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for i, row in enumerate(rows):
            for j, component in enumerate(row.get("components") or []):
                where = f"{path}.{i}.components.{j}"
                if len(component.get("custom_id") or "") > 100:
                    raise _form_error(
                        f"{where}.custom_id", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."
                    )
                if len(component.get("options") or []) > 25:
                    raise _form_error(
                        f"{where}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                    )

    @staticmethod
    def _validate_commands(commands: Sequence[Mapping[str, Any]]) -> None:
        if len(commands) > 100:
            raise _form_error("_errors", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")

        def check(spec: Mapping[str, Any], path: str, chat_input: bool) -> None:
            name = spec.get("name", "")
            if chat_input and (not _COMMAND_NAME.match(name) or name != name.lower()):
                raise _form_error(
                    f"{path}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
                )
            if chat_input and not 1 <= len(spec.get("description", "")) <= 100:
                raise _form_error(
                    f"{path}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
                )
            if len(spec.get("choices") or []) > 25:
                raise _form_error(f"{path}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            options = spec.get("options") or []
            if len(options) > 25:
                raise _form_error(f"{path}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for k, option in enumerate(options):
                check(option, f"{path}.options.{k}", chat_input)

        for i, command in enumerate(commands):
            check(command, str(i), command.get("type", 1) == 1)

    # ----------------------------------------------------------------- interactions

    def _command_schema(self, name: str, guild_id: int | None) -> tuple[JSON | None, bool]:
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self._commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command, scope is not None
        return None, False

    def _command_data(
        self, path: str, options: Mapping[str, Any], *, guild_id: int | None, focused: str | None
    ) -> JSON:
        top, *subpath = path.split()
        command, guild_scoped = self._command_schema(top, guild_id)
        schema: list[JSON] = (command or {}).get("options") or []
        for sub in subpath:
            schema = next((o.get("options") or [] for o in schema if o["name"] == sub), [])
        resolved: JSON = {}
        leaf: list[JSON] = []
        for key, value in options.items():
            option_type = next((o["type"] for o in schema if o["name"] == key), None) or _infer_option_type(
                value
            )
            item: JSON = {"name": key, "type": option_type, "value": value}
            if option_type in (6, 7, 8, 9):
                item["value"] = str(value)
                self._resolve(int(value), option_type, guild_id, resolved)
            if key == focused:
                item |= {"focused": True, "value": str(value)}
            leaf.append(item)
        nested = leaf
        for depth, sub in reversed(list(enumerate(subpath))):
            kind = _OPTION_TYPE_SUB_COMMAND if depth == len(subpath) - 1 else _OPTION_TYPE_GROUP
            nested = [{"name": sub, "type": kind, "options": nested}]
        if command is not None:
            command_id = int(command["id"])
        else:
            command_id = self._command_ids.setdefault((None, top, 1), self._next_id())
        data: JSON = {"id": str(command_id), "name": top, "type": 1, "options": nested}
        if guild_scoped:
            data["guild_id"] = str(guild_id)
        if resolved:
            data["resolved"] = resolved
        return data

    def _resolve(self, object_id: int, option_type: int, guild_id: int | None, resolved: JSON) -> None:
        guild = self._guilds.get(guild_id) if guild_id is not None else None
        if option_type in (6, 9) and object_id in self._users:
            resolved.setdefault("users", {})[str(object_id)] = self._users[object_id]
            if guild is not None and object_id in guild.members:
                member = {k: v for k, v in guild.members[object_id].items() if k != "user"}
                resolved.setdefault("members", {})[str(object_id)] = member
        if option_type in (8, 9) and guild is not None and object_id in guild.roles:
            resolved.setdefault("roles", {})[str(object_id)] = guild.roles[object_id]
        if option_type == 7 and object_id in self._channels:
            channel = self._channels[object_id]
            resolved.setdefault("channels", {})[str(object_id)] = {**channel, "permissions": "0"}

    async def _interaction(
        self,
        itype: int,
        data: JSON,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        member_permissions: str,
        message: JSON | None = None,
    ) -> FakeInteraction:
        user = self._ensure_user(user_id)
        if channel_id is None:
            if guild_id is not None:
                raise ValueError("a guild interaction needs a channel_id")
            if user_id not in self._dm_by_user:
                self.add_dm_channel(self._next_id(), user_id)
            channel_id = self._dm_by_user[user_id]
        channel = self._channels.get(channel_id)
        if channel is None or (channel.get("guild_id") != (str(guild_id) if guild_id is not None else None)):
            raise ValueError(f"channel {channel_id} is not a channel of guild {guild_id}")
        interaction_id = self._next_id()
        payload: JSON = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": itype,
            "token": f"itoken-{secrets.token_urlsafe(24)}",
            "version": 1,
            "data": data,
            "channel_id": str(channel_id),
            "channel": channel,
            "locale": "en-US",
            "app_permissions": str(EVERYONE_PERMISSIONS),
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if guild_id is not None:
            member = self._ensure_member(self._guild(guild_id), user_id)
            payload |= {
                "guild_id": str(guild_id),
                "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "member": {**member, "permissions": member_permissions},
                "context": 0,
                "authorizing_integration_owners": {"0": str(guild_id)},
            }
        else:
            payload |= {"user": user, "context": 1, "authorizing_integration_owners": {"0": "0"}}
        if message is not None:
            payload["message"] = message
        handle = FakeInteraction(self, payload)
        self._interactions[interaction_id] = handle
        await self._dispatch("INTERACTION_CREATE", payload, guild_id=guild_id, intent=None)
        return handle

    def _interaction_metadata(self, handle: FakeInteraction) -> JSON:
        user = handle.payload.get("user") or handle.payload["member"]["user"]
        return {
            "id": str(handle.id),
            "type": handle.type,
            "user": user,
            "authorizing_integration_owners": handle.payload["authorizing_integration_owners"],
        }

    def _handle_for_webhook(self, request: web.Request) -> FakeInteraction:
        token = request.match_info["token"]
        handle = next((h for h in self._interactions.values() if h.token == token), None)
        if handle is None or int(request.match_info["app_id"]) != self.application_id:
            raise _ApiError(404, 10015, "Unknown Webhook")
        return handle

    # ----------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=1.0, compress=False, max_msg_size=0)
        await ws.prepare(request)
        self.gateway_connects.append(dict(request.query))
        compressor = zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None
        conn = _Connection(ws=ws, compressor=compressor)
        self._connections.add(conn)
        try:
            hello = {"heartbeat_interval": self._heartbeat_interval_ms, "_trace": ["fake-gateway"]}
            await conn.send(json.dumps({"op": 10, "d": hello, "s": None, "t": None}))
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_gateway_payload(conn, json.loads(msg.data))
        finally:
            self._connections.discard(conn)
            self.gateway_close_codes.append(conn.closed_with or ws.close_code)
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                # A clean close by the client ends the session, as on Discord. (After the fake's own
                # close aiohttp reports 1000 whatever the client answered, so that must not count.)
                if conn.closed_with is None and ws.close_code in (1000, 1001):
                    self._sessions.pop(session.id, None)
            await self._notify()
        return ws

    async def _on_gateway_payload(self, conn: _Connection, payload: JSON) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            self.heartbeats += 1
            await conn.send(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
        elif op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})
        elif op == 8:
            await self._request_members(conn, data or {})
        await self._notify()

    def _token_ok(self, token: str | None) -> bool:
        return bool(token) and (self._token is None or token == self._token)

    async def _identify(self, conn: _Connection, data: JSON) -> None:
        self.identifies.append({k: v for k, v in data.items() if k != "token"})
        intents = data.get("intents")
        shard_id, shard_count = data.get("shard") or (0, 1)
        if not self._token_ok(data.get("token")):
            await conn.close(4004, "Authentication failed.")
            return
        if not isinstance(intents, int):
            await conn.close(4013, "Invalid intent(s).")
            return
        if intents & INTENT_MESSAGE_CONTENT and not self.message_content_intent_allowed:
            await conn.close(4014, "Disallowed intent(s).")
            return
        if not 0 <= shard_id < shard_count:
            await conn.close(4010, "Invalid shard.")
            return
        session = _Session(
            id=secrets.token_hex(16), intents=intents, shard=(shard_id, shard_count), conn=conn
        )
        self._sessions[session.id] = session
        conn.session = session
        guilds = [g for g in self._guilds.values() if _shard_of(g.id, shard_count) == shard_id]
        ready: JSON = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": str(self.gateway_url),
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "private_channels": [],
            "relationships": [],
            "user_settings": {},
            "geo_ordered_rtc_regions": [],
        }
        if "shard" in data:
            ready["shard"] = [shard_id, shard_count]
        await self._send_dispatch(session, "READY", ready)
        if intents & INTENT_GUILDS:
            for guild in guilds:
                await self._send_dispatch(session, "GUILD_CREATE", guild.payload())

    async def _resume(self, conn: _Connection, data: JSON) -> None:
        self.resumes.append({k: v for k, v in data.items() if k != "token"})
        session = self._sessions.get(data.get("session_id") or "")
        if session is None or not self._token_ok(data.get("token")):
            await conn.send(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
            return
        session.conn, conn.session = conn, session
        for seq, frame in session.log:
            if seq > (data.get("seq") or 0):
                await conn.send(frame)
        await self._send_dispatch(session, "RESUMED", {"_trace": ["fake-gateway"]})

    async def _request_members(self, conn: _Connection, data: JSON) -> None:
        guild = self._guilds.get(int(data.get("guild_id", 0)))
        if guild is None or conn.session is None:
            return
        wanted = {int(u) for u in data.get("user_ids") or []}
        query = (data.get("query") or "").lower()
        members = [
            m
            for uid, m in guild.members.items()
            if (not wanted or uid in wanted) and m["user"]["username"].lower().startswith(query)
        ]
        chunk = {"guild_id": str(guild.id), "members": members, "chunk_index": 0, "chunk_count": 1}
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    def _application_flags(self) -> int:
        return APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED if self.message_content_intent_allowed else 0

    async def _send_dispatch(self, session: _Session, event: str, data: JSON) -> None:
        session.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
        session.log.append((session.seq, frame))
        if session.conn is not None:
            await session.conn.send(frame)

    def _sessions_for(self, guild_id: int | None, intent: int | None) -> list[_Session]:
        """Sessions whose shard owns ``guild_id`` (DMs: shard 0) and that asked for ``intent``."""
        return [
            s
            for s in self._sessions.values()
            if _shard_of(guild_id or 0, s.shard[1]) == s.shard[0] and (intent is None or s.intents & intent)
        ]

    async def _dispatch(self, event: str, data: JSON, *, guild_id: int | None, intent: int | None) -> None:
        for session in self._sessions_for(guild_id, intent):
            await self._send_dispatch(session, event, data)
        await self._notify()

    async def _dispatch_message(self, event: str, message: JSON, *, gated: bool) -> None:
        """MESSAGE_CREATE/UPDATE; if ``gated``, text is blanked for sessions without the message-content intent."""
        guild_id = int(message["guild_id"]) if "guild_id" in message else None
        intent = INTENT_DIRECT_MESSAGES if guild_id is None else INTENT_GUILD_MESSAGES
        for session in self._sessions_for(guild_id, intent):
            data = message
            if gated and not session.intents & INTENT_MESSAGE_CONTENT:
                data = {**message, "content": "", "embeds": [], "attachments": [], "components": []}
            await self._send_dispatch(session, event, data)
        await self._notify()

    # ----------------------------------------------------------------- REST plumbing

    def _build_middleware(self) -> Middleware:
        @web.middleware
        async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
            if not request.path.startswith(API_PREFIX):
                return await handler(request)
            return await self._handle_rest(request, handler)

        return middleware

    async def _handle_rest(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        path = request.path.removeprefix(API_PREFIX)
        body, files = await _read_body(request)
        request[_BODY], request[_FILES] = body, files
        authorization = request.headers.get("Authorization")
        call = Call(
            request.method, path, dict(request.query), body, authorization, tuple(n for n, _ in files)
        )
        self.calls.append(call)
        try:
            failure = next(
                (f for f in self._failures if f.method == request.method and path.startswith(f.path_prefix)),
                None,
            )
            if failure is not None:
                self._failures.remove(failure)
                if failure.performed:
                    await handler(request)
                return _json(failure.body, status=failure.status, headers=failure.headers)
            # Webhook and interaction-callback routes are authorised by their token, not the bot's.
            token_routes = path.startswith(("/webhooks/", "/interactions/"))
            if not token_routes and not self._token_ok((authorization or "").removeprefix("Bot ").strip()):
                raise _ApiError(401, 0, "401: Unauthorized")
            return await handler(request)
        except _ApiError as error:
            return error.response()
        except web.HTTPNotFound:
            return _json({"message": "404: Not Found", "code": 0}, status=404)
        except web.HTTPMethodNotAllowed:
            return _json({"message": "405: Method Not Allowed", "code": 0}, status=405)
        finally:
            await self._notify()

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        p = API_PREFIX
        router.add_get("/gateway", self._gateway)
        router.add_get("/attachments/{attachment_id}/{filename}", self._get_attachment)
        router.add_get(f"{p}/users/@me", self._get_me)
        router.add_post(f"{p}/users/@me/channels", self._create_dm)
        router.add_get(f"{p}/users/{{user_id}}", self._get_user)
        router.add_get(f"{p}/oauth2/applications/@me", self._get_application)
        router.add_get(f"{p}/gateway", self._get_gateway)
        router.add_get(f"{p}/gateway/bot", self._get_gateway_bot)
        router.add_get(f"{p}/channels/{{channel_id}}", self._get_channel)
        router.add_get(f"{p}/channels/{{channel_id}}/messages", self._list_messages)
        router.add_post(f"{p}/channels/{{channel_id}}/messages", self._post_message)
        router.add_route("*", f"{p}/channels/{{channel_id}}/messages/{{message_id}}", self._channel_message)
        router.add_post(f"{p}/channels/{{channel_id}}/typing", self._typing)
        router.add_route("*", f"{p}/applications/{{app_id}}/commands", self._commands_route)
        router.add_route(
            "*", f"{p}/applications/{{app_id}}/guilds/{{guild_id}}/commands", self._commands_route
        )
        router.add_post(f"{p}/interactions/{{interaction_id}}/{{token}}/callback", self._interaction_callback)
        router.add_post(f"{p}/webhooks/{{app_id}}/{{token}}", self._webhook_execute)
        router.add_route(
            "*", f"{p}/webhooks/{{app_id}}/{{token}}/messages/{{message_id}}", self._webhook_message
        )
        router.add_get(f"{p}/guilds/{{guild_id}}", self._get_guild)
        router.add_get(f"{p}/guilds/{{guild_id}}/channels", self._get_guild_channels)
        router.add_get(f"{p}/guilds/{{guild_id}}/roles", self._get_guild_roles)
        router.add_get(f"{p}/guilds/{{guild_id}}/members/{{user_id}}", self._get_guild_member)

    # ----------------------------------------------------------------- REST handlers

    async def _get_attachment(self, request: web.Request) -> web.Response:
        data = self._attachment_data.get(int(request.match_info["attachment_id"]))
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/octet-stream")

    async def _get_me(self, request: web.Request) -> web.Response:
        return _json(self.bot_user)

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self._users.get(int(request.match_info["user_id"]))
        if user is None:
            raise _ApiError(404, 10013, "Unknown User")
        return _json(user)

    async def _create_dm(self, request: web.Request) -> web.Response:
        user_id = int((request[_BODY] or {})["recipient_id"])
        if user_id not in self._dm_by_user:
            self.add_dm_channel(self._next_id(), user_id)
        return _json(self._channels[self._dm_by_user[user_id]])

    async def _get_application(self, request: web.Request) -> web.Response:
        owner = self._user_payload(self.bot_user_id + 1, "owner")
        return _json(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": owner,
                "team": None,
                "verify_key": "0" * 64,
                "flags": self._application_flags(),
                "bot": self.bot_user,
                "interactions_endpoint_url": None,
                "rpc_origins": [],
            }
        )

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json({"url": str(self.gateway_url)})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return _json({"url": str(self.gateway_url), "shards": self.shard_count, "session_start_limit": limit})

    async def _get_channel(self, request: web.Request) -> web.Response:
        return _json(self._channel(int(request.match_info["channel_id"])))

    async def _list_messages(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        self._channel(channel_id)
        ids = self._channel_messages.get(channel_id, [])
        before, after = request.query.get("before"), request.query.get("after")
        if before:
            ids = [i for i in ids if i < int(before)]
        if after:
            ids = [i for i in ids if i > int(after)]
        limit = int(request.query.get("limit", 50))
        return _json([self._messages[i] for i in reversed(ids)][:limit])

    async def _post_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        self._channel(channel_id)
        body, files = request[_BODY] or {}, request[_FILES]
        self._validate_message(body, files, create=True)
        message = self._bot_message(channel_id, body, files)
        await self._dispatch_message("MESSAGE_CREATE", message, gated=False)
        return _json(message)

    async def _channel_message(self, request: web.Request) -> web.Response:
        channel_id, message_id = int(request.match_info["channel_id"]), int(request.match_info["message_id"])
        message = self._message(message_id)
        if int(message["channel_id"]) != channel_id:
            raise _ApiError(404, 10008, "Unknown Message")
        if request.method == "GET":
            return _json(message)
        own = int(message["author"]["id"]) == self.bot_user_id
        if request.method == "PATCH":
            if not own:
                raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
            body, files = request[_BODY] or {}, request[_FILES]
            self._validate_message(body, files, create=False)
            self._apply_edit(message, body, files)
            await self._dispatch_message("MESSAGE_UPDATE", message, gated=False)
            return _json(message)
        if request.method == "DELETE":
            await self._delete_message(message)
            return web.Response(status=204)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PATCH", "DELETE"])

    async def _delete_message(self, message: JSON) -> None:
        message_id, channel_id = int(message["id"]), int(message["channel_id"])
        del self._messages[message_id]
        self._channel_messages[channel_id].remove(message_id)
        self.deleted_message_ids.append(message_id)
        event = {"id": message["id"], "channel_id": message["channel_id"]}
        guild_id = int(message["guild_id"]) if "guild_id" in message else None
        if guild_id is not None:
            event["guild_id"] = message["guild_id"]
        intent = INTENT_DIRECT_MESSAGES if guild_id is None else INTENT_GUILD_MESSAGES
        if not message["flags"] & MESSAGE_FLAG_EPHEMERAL:
            await self._dispatch("MESSAGE_DELETE", event, guild_id=guild_id, intent=intent)

    async def _typing(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        self._channel(channel_id)
        self.typing_channels.append(channel_id)
        return web.Response(status=204)

    async def _commands_route(self, request: web.Request) -> web.Response:
        if int(request.match_info["app_id"]) != self.application_id:
            raise _ApiError(403, 50001, "Missing Access")
        raw_guild = request.match_info.get("guild_id")
        guild_id = int(raw_guild) if raw_guild is not None else None
        if request.method == "GET":
            return _json(self._commands.get(guild_id, []))
        if request.method != "PUT":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT"])
        commands = request[_BODY] or []
        self._validate_commands(commands)
        stored = []
        for spec in commands:
            ctype = spec.get("type", 1)
            command_id = self._command_ids.setdefault((guild_id, spec["name"], ctype), self._next_id())
            command = {
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **spec,
                "id": str(command_id),
                "application_id": str(self.application_id),
                "version": str(self._next_id()),
                "type": ctype,
            }
            if guild_id is not None:
                command["guild_id"] = str(guild_id)
            stored.append(command)
        self._commands[guild_id] = stored
        return _json(stored)

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        handle = self._interactions.get(int(request.match_info["interaction_id"]))
        if handle is None or handle.token != request.match_info["token"]:
            raise _ApiError(404, 10062, "Unknown interaction")
        if handle.responses:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        body, files = request[_BODY] or {}, request[_FILES]
        rtype, data = body.get("type"), body.get("data") or {}
        if rtype not in _ALLOWED_CALLBACKS[handle.type]:
            allowed = sorted(_ALLOWED_CALLBACKS[handle.type])
            raise _form_error("type", "BASE_TYPE_CHOICES", f"Value must be one of {allowed}.")
        if rtype in (4, 7):
            self._validate_message(data, files, create=rtype == 4, prefix="data.")
        if rtype == 8 and len(data.get("choices") or []) > 25:
            raise _form_error("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if rtype == 9:
            if len(data.get("custom_id") or "") > 100:
                raise _form_error("data.custom_id", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
            self._validate_components(data.get("components") or [], "data.components")
        handle.responses.append({"type": rtype, "data": data})
        message: JSON | None = None
        if rtype in (4, 5):
            flags = int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL
            flags |= MESSAGE_FLAG_LOADING if rtype == 5 else 0
            message = self._bot_message(handle.channel_id, {**data, "flags": flags}, files)
            message["webhook_id"] = str(self.application_id)
            message["interaction_metadata"] = self._interaction_metadata(handle)
            handle.original_message_id = int(message["id"])
            if not flags & MESSAGE_FLAG_EPHEMERAL:
                await self._dispatch_message("MESSAGE_CREATE", message, gated=False)
        elif rtype in (6, 7) and "message" in handle.payload:
            # For component interactions the "original" response is the message the component is on.
            message = self._message(int(handle.payload["message"]["id"]))
            handle.original_message_id = int(message["id"])
            if rtype == 7:
                self._apply_edit(message, data, files)
                await self._dispatch_message("MESSAGE_UPDATE", message, gated=False)
            else:
                message = None
        callback: JSON = {
            "interaction": {
                "id": str(handle.id),
                "type": handle.type,
                "response_message_loading": rtype == 5,
                "response_message_ephemeral": bool(message and message["flags"] & MESSAGE_FLAG_EPHEMERAL),
            }
        }
        if message is not None:
            callback["interaction"]["response_message_id"] = message["id"]
            callback["resource"] = {"type": rtype, "message": message}
        return _json(callback)

    async def _webhook_execute(self, request: web.Request) -> web.Response:
        handle = self._handle_for_webhook(request)
        if not handle.responses:
            raise _ApiError(404, 10015, "Unknown Webhook")
        body, files = request[_BODY] or {}, request[_FILES]
        self._validate_message(body, files, create=True)
        original = self._messages.get(handle.original_message_id or 0)
        if original is not None and original["flags"] & MESSAGE_FLAG_LOADING and not handle.followup_ids:
            # Discord turns the first follow-up after a deferred reply into that reply ("thinking" ends).
            self._apply_edit(original, {**body, "flags": 0}, files)
            message, event = original, "MESSAGE_UPDATE"
        else:
            message = self._bot_message(handle.channel_id, body, files)
            message["webhook_id"] = str(self.application_id)
            message["interaction_metadata"] = self._interaction_metadata(handle)
            event = "MESSAGE_CREATE"
        handle.followup_ids.append(int(message["id"]))
        if not message["flags"] & MESSAGE_FLAG_EPHEMERAL:
            await self._dispatch_message(event, message, gated=False)
        if request.query.get("wait") in ("1", "true", "True"):
            return _json(message)
        return web.Response(status=204)

    async def _webhook_message(self, request: web.Request) -> web.Response:
        handle = self._handle_for_webhook(request)
        raw = request.match_info["message_id"]
        message_id = handle.original_message_id if raw == "@original" else int(raw)
        if message_id is None or (
            message_id != handle.original_message_id and message_id not in handle.followup_ids
        ):
            raise _ApiError(404, 10008, "Unknown Message")
        message = self._message(message_id)
        if request.method == "GET":
            return _json(message)
        if request.method == "PATCH":
            body, files = request[_BODY] or {}, request[_FILES]
            self._validate_message(body, files, create=False)
            self._apply_edit(
                message, {**body, "flags": 0} if message["flags"] & MESSAGE_FLAG_LOADING else body, files
            )
            if not message["flags"] & MESSAGE_FLAG_EPHEMERAL:
                await self._dispatch_message("MESSAGE_UPDATE", message, gated=False)
            return _json(message)
        if request.method == "DELETE":
            await self._delete_message(message)
            return web.Response(status=204)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PATCH", "DELETE"])

    async def _get_guild(self, request: web.Request) -> web.Response:
        guild = self._rest_guild(request)
        return _json(
            {k: v for k, v in guild.payload().items() if k not in ("members", "channels", "threads")}
        )

    async def _get_guild_channels(self, request: web.Request) -> web.Response:
        return _json(list(self._rest_guild(request).channels.values()))

    async def _get_guild_roles(self, request: web.Request) -> web.Response:
        return _json(list(self._rest_guild(request).roles.values()))

    async def _get_guild_member(self, request: web.Request) -> web.Response:
        member = self._rest_guild(request).members.get(int(request.match_info["user_id"]))
        if member is None:
            raise _ApiError(404, 10007, "Unknown Member")
        return _json(member)

    def _rest_guild(self, request: web.Request) -> _Guild:
        guild = self._guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise _ApiError(404, 10004, "Unknown Guild")
        return guild


def _shard_of(guild_id: int, shard_count: int) -> int:
    return (guild_id >> 22) % shard_count


def _infer_option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, str):
        return 3
    raise TypeError(f"cannot infer a Discord option type for {value!r}; sync the command schema first")


def _walk_components(components: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for component in components:
        yield component
        yield from _walk_components(component.get("components") or [])


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    """The JSON body (or multipart ``payload_json``) and any uploaded files as (filename, bytes)."""
    if request.content_type == "application/json":
        raw = await request.read()
        return (json.loads(raw) if raw else None), []
    if request.content_type != "multipart/form-data":
        return None, []
    body: Any = None
    files: list[tuple[str, bytes]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            body = json.loads(await part.text())
        else:
            files.append((part.filename or part.name or "file", bytes(await part.read())))
    return body, files
