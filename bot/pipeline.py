"""The chat pipeline: a message becomes a command reply or an LLM turn (spec §7), one session at a time.

Adapters call ``handle``; the sessions service (``bot/conversation/sessions.py``) runs one message of a
session at a time, here and across processes, while different sessions run fully concurrently. ``/stop`` is
the one command that does not wait: it cancels the turn.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot import commands as c
from bot.catalog import Catalog
from bot.chat import UNDELIVERED, Incoming, NullSink, Reply, ReplySink
from bot.clock import Clock
from bot.command_handlers import AuthOverview, CommandHandlers
from bot.compaction import Compactor, estimate_tokens
from bot.config.schema import Config
from bot.conversation.context import TurnContext, turn_context
from bot.conversation.plan import TurnPlan, plan_turn
from bot.conversation.sessions import Sessions
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
        self.sessions = Sessions(store, clock=clock, leases=session_leases)
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
            sessions=self.sessions,
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
        answered = _Answered()  # filled in when the message ran a turn that answered
        replies = self._redacted(await self._route(msg, sink, answered))
        try:
            await sink.deliver(replies)
            delivered = True
        except DeliveryFailed:
            delivered = False
        if answered.result is not None:
            if not delivered and answered.msg is not None:
                self.sessions.remember_retry(answered.key, answered.msg)
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

    async def _route(self, msg: Incoming, sink: ReplySink, answered: _Answered) -> list[Reply]:
        """A command or a turn, in the message's session."""
        self.sessions.saw(msg)
        try:
            command = c.parse_command(msg.text, bot_username=msg.bot_username)
        except CommandError as exc:
            return [Reply(str(exc), kind="error")]
        ctx = self.context(msg)
        if isinstance(command, c.Stop):
            return [self._stop(ctx.key)]
        if command is None and len(msg.text) > self._config.session.max_message_chars:
            limit = self._config.session.max_message_chars
            return [Reply(f"That message is too long (at most {limit} characters).", kind="error")]
        if command is None and not msg.text.strip() and not msg.images:
            return [Reply("Send some text or an image.", kind="error")]
        try:
            async with self.sessions.hold(ctx.key):
                session = await self.sessions.open(ctx)
                if command is None:
                    return [await self._run_turn(msg, session, sink, answered)]
                if isinstance(command, c.Retry):
                    return [await self._retry(session, answered)]
                return [await self.commands.run(command, msg, session, ctx)]
        except ModelbotError as exc:
            # A broken auth file or an unreachable database: one plain sentence, never a traceback.
            log.error("message in %s failed: %s", ctx.key, exc)
            return [Reply(str(exc), kind="error")]

    async def choose(self, msg: Incoming, token: str) -> Reply:
        """A picker button was pressed."""
        ctx = self.context(msg)
        async with self.sessions.hold(ctx.key):
            session = await self.sessions.open(ctx)
            return await self.commands.choose_token(session, token)

    def model_choices(self, msg: Incoming, typed: str, *, limit: int = 25) -> list[str]:
        """Models the user may pick, filtered by what was typed (autocomplete): picker order, best matches first."""
        return self.commands.model_choices(self.context(msg).agent_id, typed, limit=limit)

    # -- turns --------------------------------------------------------------------------------------------

    def _stop(self, key: str) -> Reply:
        if self.sessions.stop(key):
            return Reply("Stopping the current answer.")
        return Reply("Nothing to stop.")

    async def _retry(self, session: SessionRecord, answered: _Answered) -> Reply:
        """``/retry``: the session's last message that got no complete answer, once more."""
        previous = self.sessions.retry_message(session.key)
        if previous is None:
            return Reply("There is nothing to retry.", kind="error")
        return await self._run_turn(previous, session, NullSink(), answered)

    async def _run_turn(
        self, msg: Incoming, session: SessionRecord, sink: ReplySink, answered: _Answered
    ) -> Reply:
        """The turn runs in the caller's own task; ``/stop`` cancels that task and the cancellation ends here.

        A task of its own per turn would cost a loop iteration each way, and under load every turn of a
        burst would wait for the whole burst before its caller resumed (measured in bench.pipeline: p99
        latency ~10 times the turn's own cost, against ~5 times without it).
        """
        with self.sessions.in_flight(session.key):
            return await self._turn(msg, session, sink, answered)
        self.sessions.remember_retry(session.key, msg)  # /stop ended the turn
        return Reply("Stopped. Send /retry to ask again.", kind="error")

    async def _turn(
        self, msg: Incoming, session: SessionRecord, sink: ReplySink, answered: _Answered
    ) -> Reply:
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
                    self.sessions.remember_retry(session.key, msg)
                    return Reply(OVERFLOW_NOT_COMPACTED, kind="error")
                self.sessions.remember_retry(session.key, msg)
                return Reply(str(exc), kind="error")
            except AllCandidatesFailed as exc:
                self.sessions.remember_retry(session.key, msg)
                return Reply(str(exc), kind="error")
            except StreamInterrupted as exc:
                self.sessions.remember_retry(session.key, msg)
                return Reply(
                    f"{exc.partial_text}\n\n⚠ {exc}",
                    kind="interrupted",
                    model=exc.ref,
                    profile=exc.profile_id,
                )
            except DeliveryFailed:
                # The chat stopped taking the streamed answer: the turn ends here (the sink told the user).
                self.sessions.remember_retry(session.key, msg)
                return Reply(UNDELIVERED, kind="error")
            await self._save_turn(session, msg, result)
            self.sessions.forget_retry(session.key)
            # counted by handle once the answer was delivered (or not)
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
