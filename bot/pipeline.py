"""The chat pipeline: a message becomes a command reply or an LLM turn (spec §7), one session at a time.

Adapters call ``handle``; two messages to one session never interleave (the second waits), while different
sessions run fully concurrently. ``/stop`` is the one command that does not wait: it cancels the turn.
When other processes share the session store, a lease on the session in the database orders their messages
too (spec §11.6): one process's task at a time holds the session's lock, and that task takes the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from bot import commands as c
from bot.catalog import Catalog
from bot.chat import UNDELIVERED, Incoming, NullSink, Reply, ReplySink
from bot.clock import Clock
from bot.command_handlers import AuthOverview, CommandHandlers
from bot.compaction import Compactor, estimate_tokens
from bot.config.schema import Config
from bot.conversation.context import TurnContext, turn_context
from bot.conversation.plan import TurnPlan, plan_turn
from bot.engine import AttemptFailed, Engine, TextDelta, TurnDone, TurnResult, Waiting
from bot.errors import (
    AllCandidatesFailed,
    CommandError,
    DeliveryFailed,
    ModelbotError,
    StreamInterrupted,
    TurnStopped,
)
from bot.history import HistoryCache, SessionHistory
from bot.policy import OVERFLOW_NOT_COMPACTED
from bot.providers.base import ChatMessage
from bot.reasons import Reason
from bot.refs import ModelRef
from bot.store.lease import LeaseKeeper
from bot.store.protocol import SessionStore
from bot.store.types import (
    Attachment,
    FailoverEvent,
    NewMessage,
    SessionPatch,
    SessionRecord,
)

log = logging.getLogger("modelbot.turns")

# (session key, the result or None for a failed turn, the failed attempts, latency ms, whether it was delivered)
TurnObserver = Callable[[str, TurnResult | None, list[AttemptFailed], float, bool], None]


@dataclass
class _Answered:
    """A turn that produced an answer, counted only once ``handle`` knows whether it reached the user."""

    msg: Incoming | None = None
    key: str = ""
    result: TurnResult | None = None
    failures: list[AttemptFailed] = field(default_factory=list)


# Set by ``handle`` for the turn it runs (a /retry runs inside the /retry message's own handle call).
_answered: ContextVar[_Answered | None] = ContextVar("modelbot_answered", default=None)


@dataclass
class _Inflight:
    """The task a session's turn runs in, and whether /stop has cancelled it."""

    task: asyncio.Task[Any]
    stop_requested: bool = False


class ChatPipeline:
    """Routes messages to commands or turns; one instance serves every adapter."""

    def __init__(
        self,
        *,
        config: Config,
        catalog: Catalog,
        engine_for: Callable[[str], Engine],
        store: SessionStore,
        auth_for: Callable[[str], AuthOverview],
        clock: Clock,
        observer: TurnObserver | None = None,
        redact: Callable[[str], str] | None = None,
        session_leases: LeaseKeeper | None = None,
    ) -> None:
        """``session_leases``: other processes share ``store``, so each session's messages also hold a lease
        in it, through this keeper (None: this process is alone on its store, its in-process lock is enough)."""
        self._config = config
        # Command and error replies (status views, failure summaries) never show a secret the process holds.
        self._redact = redact
        self._catalog = catalog
        self._engine_for = engine_for
        self._store = store
        self._clock = clock
        self._observer = observer
        self._session_leases = session_leases
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, int] = {}
        self._inflight: dict[str, _Inflight] = {}
        self._retry_text: dict[str, Incoming] = {}
        self._known_users: dict[tuple[str, str], str] = {}  # (platform, lower-case name) -> user id
        self._compactor = Compactor(
            engine_for=engine_for, store=store, catalog=catalog, clock=clock, config=config
        )
        self._history = HistoryCache(store, limit=config.session.history_limit)
        self.commands = CommandHandlers(
            config=config,
            catalog=catalog,
            store=store,
            auth_for=auth_for,
            clock=clock,
            retry=self._retry,
            reset_other=self._reset_other,
        )

    # -- entry points -------------------------------------------------------------------------------------

    def context(self, msg: Incoming) -> TurnContext:
        """Where ``msg`` belongs: its session, scope, agent, chat, sender and thread."""
        return turn_context(msg, self._config)

    def session_key(self, msg: Incoming) -> str:
        return self.context(msg).key

    async def handle(self, msg: Incoming, sink: ReplySink | None = None) -> list[Reply]:
        """Handle one message and deliver its replies through ``sink``; returns them too.

        Always at least one reply; never raises for bad input or a failed delivery (the sink handled that).
        """
        sink = sink if sink is not None else NullSink()
        answered = _Answered()
        token = _answered.set(answered)
        try:
            replies = self._redacted(await self._handle(msg, sink))
        finally:
            _answered.reset(token)
        try:
            await sink.deliver(replies)
            delivered = True
        except DeliveryFailed:
            delivered = False
        if answered.result is not None:
            if not delivered and answered.msg is not None:
                self._retry_text[answered.key] = answered.msg
            self._observe(answered.key, answered.result, answered.failures, delivered=delivered)
        return replies

    def _redacted(self, replies: list[Reply]) -> list[Reply]:
        if self._redact is None:
            return replies
        redact = self._redact
        return [
            dataclasses.replace(r, text=redact(r.text)) if r.kind in ("command", "error") else r
            for r in replies
        ]

    async def _handle(self, msg: Incoming, sink: ReplySink) -> list[Reply]:
        if msg.user_name:
            self._known_users[(msg.platform, msg.user_name.lstrip("@").lower())] = msg.user_id
        try:
            command = c.parse_command(msg.text, bot_username=msg.bot_username)
        except CommandError as exc:
            return [Reply(str(exc), kind="error")]
        ctx = self.context(msg)
        key = ctx.key
        if isinstance(command, c.Stop):
            return [self._stop(key)]
        if command is None and len(msg.text) > self._config.session.max_message_chars:
            limit = self._config.session.max_message_chars
            return [Reply(f"That message is too long (at most {limit} characters).", kind="error")]
        if command is None and not msg.text.strip() and not msg.images:
            return [Reply("Send some text or an image.", kind="error")]
        try:
            async with self._session_lock(key), self._session_lease(key):
                session = await self._session(ctx)
                if command is None:
                    return [await self._run_turn(msg, session, sink)]
                return [await self.commands.run(command, msg, session)]
        except ModelbotError as exc:
            # A broken auth file or an unreachable database: one plain sentence, never a traceback.
            log.error("message in %s failed: %s", key, exc)
            return [Reply(str(exc), kind="error")]

    async def choose(self, msg: Incoming, token: str) -> Reply:
        """A picker button was pressed."""
        ctx = self.context(msg)
        async with self._session_lock(ctx.key), self._session_lease(ctx.key):
            session = await self._session(ctx)
            return await self.commands.choose_token(session, token)

    def model_choices(self, msg: Incoming, typed: str, *, limit: int = 25) -> list[str]:
        """Models the user may pick, filtered by what was typed (autocomplete): picker order, best matches first."""
        refs = [str(ref) for entry in self.commands.picker(self.context(msg).agent_id) for ref in entry.refs]
        needle = typed.strip().lower()
        if not needle:
            return refs[:limit]
        starts = [
            r for r in refs if r.lower().startswith(needle) or r.split("/", 1)[-1].lower().startswith(needle)
        ]
        contains = [r for r in refs if needle in r.lower() and r not in starts]
        return (starts + contains)[:limit]

    # -- sessions -----------------------------------------------------------------------------------------

    def _session_lock(self, key: str) -> _SessionLock:
        return _SessionLock(self, key)

    def _session_lease(self, key: str) -> AbstractAsyncContextManager[object]:
        """The session's lease in the shared store, taken inside its lock: renewed while the message is
        handled, released at the end, taken over when its holder died. No transaction stays open meanwhile."""
        if self._session_leases is None:
            return contextlib.nullcontext()
        return self._session_leases.hold(f"session:{key}")

    async def _session(self, ctx: TurnContext) -> SessionRecord:
        return await self._store.get_or_create(
            ctx.key,
            agent_id=ctx.agent_id,
            platform=ctx.platform,
            chat_id=ctx.chat_id,
            user_id=ctx.owner,
            thread_id=ctx.thread_id,
            now_ms=self._clock.now_ms(),
        )

    async def _reset_other(self, msg: Incoming, target: str) -> str:
        """An admin resets another member's session: by reply, ``@name`` or ``user:<id>``."""
        user_id = target[5:] if target.startswith("user:") else None
        if user_id is None:
            user_id = self._known_users.get((msg.platform, target.lstrip("@").lower()))
        if user_id is None:
            raise CommandError(
                f"I don't know {c.echo(target)} yet. Reply to one of their messages with /reset."
            )
        # With one shared session per group chat (scope "chat"), a member's session is the chat's session.
        key = self.context(msg).member_key(user_id)
        if await self._store.get(key) is None:
            return f"{c.echo(target)} has no session here."
        # No second session lock: handle() holds the caller's, and waiting for another one could deadlock
        # (two admins resetting each other). The reset is one atomic store call; an answer the member has
        # in flight is cancelled first so it cannot write into the fresh session.
        self._stop(key)
        await self._store.reset(key, keep_model=True, now_ms=self._clock.now_ms())
        return f"Session of {c.echo(target)} reset."

    def _stop(self, key: str) -> Reply:
        inflight = self._inflight.get(key)
        if inflight is None or inflight.task.done():
            return Reply("Nothing to stop.")
        if not inflight.stop_requested:  # a second /stop must not leave a cancellation behind
            inflight.stop_requested = True
            inflight.task.cancel()
        return Reply("Stopping the current answer.")

    # -- turns --------------------------------------------------------------------------------------------

    async def _retry(self, msg: Incoming, session: SessionRecord) -> Reply:
        previous = self._retry_text.get(session.key)
        if previous is None:
            return Reply("There is nothing to retry.", kind="error")
        return await self._run_turn(previous, session, NullSink())

    async def _run_turn(self, msg: Incoming, session: SessionRecord, sink: ReplySink) -> Reply:
        """The turn runs in the caller's own task; ``/stop`` cancels that task and the cancellation ends here.

        A task of its own per turn would cost a loop iteration each way, and under load every turn of a
        burst would wait for the whole burst before its caller resumed (measured in bench.pipeline: p99
        latency ~10 times the turn's own cost, against ~5 times without it).
        """
        task = asyncio.current_task()
        assert task is not None
        inflight = _Inflight(task)
        self._inflight[session.key] = inflight
        try:
            return await self._turn(msg, session, sink)
        except asyncio.CancelledError:
            # uncancel() == 0: /stop was the only cancellation; a shutdown's must go on up.
            if inflight.stop_requested and task.uncancel() == 0:
                self._retry_text[session.key] = msg
                return Reply("Stopped. Send /retry to ask again.", kind="error")
            raise
        finally:
            self._inflight.pop(session.key, None)

    async def _turn(self, msg: Incoming, session: SessionRecord, sink: ReplySink) -> Reply:
        try:
            plan = plan_turn(self._config, self._catalog, session, has_images=bool(msg.images))
        except TurnStopped as exc:
            return Reply(str(exc), kind="error")
        user_message = ChatMessage("user", msg.text, msg.images)
        await sink.typing()
        history = await self._history.get(session)
        compacted = await self._compact(session, plan.chain, history, pending=msg.text)
        if compacted is not None:
            session, history = compacted
            plan = plan.compacted(session)
        for attempt in (1, 2):
            try:
                result, failures = await self._stream(session, history, plan, user_message, sink)
            except TurnStopped as exc:
                if exc.reason is Reason.CONTEXT_OVERFLOW and attempt == 1:
                    compacted = await self._compact(
                        session, plan.chain, history, pending=msg.text, force=True
                    )
                    if compacted is not None:
                        session, history = compacted
                        plan = plan.compacted(session)
                        continue
                    self._retry_text[session.key] = msg
                    return Reply(OVERFLOW_NOT_COMPACTED, kind="error")
                self._retry_text[session.key] = msg
                return Reply(str(exc), kind="error")
            except AllCandidatesFailed as exc:
                self._retry_text[session.key] = msg
                return Reply(str(exc), kind="error")
            except StreamInterrupted as exc:
                self._retry_text[session.key] = msg
                return Reply(
                    f"{exc.partial_text}\n\n⚠ {exc}",
                    kind="interrupted",
                    model=exc.ref,
                    profile=exc.profile_id,
                )
            except DeliveryFailed:
                # The chat stopped taking the streamed answer: the turn ends here (the sink told the user).
                self._retry_text[session.key] = msg
                return Reply(UNDELIVERED, kind="error")
            await self._save_turn(session, msg, result)
            self._retry_text.pop(session.key, None)
            answered = _answered.get()
            if answered is None:
                self._observe(session.key, result, failures)
            else:  # counted by handle once the answer was delivered (or not)
                answered.msg, answered.key, answered.result, answered.failures = (
                    msg,
                    session.key,
                    result,
                    failures,
                )
            note = result.note if self._config.agents.defaults.fallback_note else None
            return Reply(
                result.text, kind="answer", model=str(result.ref), profile=result.profile_id, note=note
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _compact(
        self,
        session: SessionRecord,
        chain: Sequence[ModelRef],
        history: SessionHistory,
        *,
        pending: str,
        force: bool = False,
    ) -> tuple[SessionRecord, SessionHistory] | None:
        """Compaction when the history nears the window (or ``force``): the session and its fresh history, or
        None when nothing was compacted."""
        compacted = await self._compactor.maybe_compact(
            session, chain, history.messages, tokens=history.tokens, pending=pending, force=force
        )
        if compacted is None:
            return None
        updated, messages = compacted
        return updated, self._history.fill(updated, messages)

    async def _stream(
        self,
        session: SessionRecord,
        history: SessionHistory,
        plan: TurnPlan,
        user: ChatMessage,
        sink: ReplySink,
    ) -> tuple[TurnResult, list[AttemptFailed]]:
        turn = plan.request(history.turns, history.summaries, user)
        failures: list[AttemptFailed] = []
        events = self._engine_for(session.agent_id).run(turn)
        waiting = False  # a status line is shown: the answer's first text takes it away
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    if waiting:
                        waiting = False
                        await sink.status(None)
                    await sink.delta(event.text)
                elif isinstance(event, AttemptFailed):
                    failures.append(event)
                    await self._log_failure(session.key, event)
                elif isinstance(event, Waiting):
                    waiting = True
                    await sink.typing()
                    await sink.status(event.text)
                elif isinstance(event, TurnDone):
                    return event.result, failures
        except (AllCandidatesFailed, TurnStopped, StreamInterrupted):
            self._observe(session.key, None, failures)
            raise
        except DeliveryFailed:
            self._observe(session.key, None, failures, delivered=False)
            raise
        finally:
            # When the sink gives up mid-stream, the provider's stream is closed now, not at garbage collection.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
            if waiting:  # the turn ended while waiting (/stop, or every candidate failed after the wait)
                await sink.status(None)
        raise AssertionError("the engine ended without a result")  # pragma: no cover

    async def _save_turn(self, session: SessionRecord, msg: Incoming, result: TurnResult) -> None:
        """The turn's two messages and the session's bookkeeping, in one write."""
        attachments = tuple(Attachment(i.media_type, len(i.data)) for i in msg.images)
        repin = (
            result.pin is not None
            and result.pin.source == "auto"
            and (
                result.pin.profile_id != session.pin_profile
                or session.pin_compaction != session.compaction_count
            )
        )
        patch = SessionPatch(
            last_model=str(result.ref),
            last_profile=result.profile_id,
            last_fallback=result.fell_back or result.rotated,
        )
        if repin and result.pin is not None:
            patch = dataclasses.replace(
                patch,
                pin_profile=result.pin.profile_id,
                pin_source="auto",
                pin_compaction=session.compaction_count,
            )
        now_ms = self._clock.now_ms()
        stored = await self._store.append_messages(
            session.key,
            [
                NewMessage("user", msg.text, attachments, estimate_tokens(msg.text)),
                NewMessage("assistant", result.text, (), estimate_tokens(result.text)),
            ],
            now_ms=now_ms,
            patch=patch,
        )
        self._history.appended(session, stored, now_ms=now_ms)

    async def _log_failure(self, key: str, event: AttemptFailed) -> None:
        record = event.record
        await self._store.record_event(
            FailoverEvent(
                at=self._clock.now_ms(),
                session_key=key,
                ref=record.ref,
                profile_id=record.profile_id,
                reason=str(record.reason) if record.reason else "skipped",
                cooldown_until=event.cooldown_until,
            )
        )

    def _observe(
        self,
        key: str,
        result: TurnResult | None,
        failures: list[AttemptFailed],
        *,
        delivered: bool = True,
    ) -> None:
        latency = result.latency_ms if result is not None else 0.0
        if self._observer is not None:
            self._observer(key, result, failures, latency, delivered)
        attempts = (
            ", ".join(f"{f.record.ref}@{f.record.profile_id}:{f.record.reason}" for f in failures) or "-"
        )
        if result is not None:
            log.info(
                "turn session=%s model=%s profile=%s attempts=%s latency_ms=%.1f%s",
                key,
                result.ref,
                result.profile_id,
                attempts,
                latency,
                "" if delivered else " undelivered",
            )
        else:
            outcome = "failed" if delivered else "undelivered"
            log.info("turn session=%s model=- profile=- attempts=%s %s", key, attempts, outcome)


class _SessionLock:
    """Per-session mutual exclusion; the lock object is dropped when nobody holds or awaits it."""

    def __init__(self, pipeline: ChatPipeline, key: str) -> None:
        self._pipeline = pipeline
        self._key = key

    async def __aenter__(self) -> None:
        p = self._pipeline
        lock = p._locks.setdefault(self._key, asyncio.Lock())
        p._waiters[self._key] = p._waiters.get(self._key, 0) + 1
        try:
            await lock.acquire()
        except BaseException:
            self._release_waiter()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._pipeline._locks[self._key].release()
        self._release_waiter()

    def _release_waiter(self) -> None:
        p = self._pipeline
        p._waiters[self._key] -= 1
        if p._waiters[self._key] == 0:
            del p._waiters[self._key]
            del p._locks[self._key]
