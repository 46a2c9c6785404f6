"""The chat pipeline: a message becomes a command reply or an LLM turn (docs/failover.md §8).

``handle`` routes a message to a command or a turn, in its session; a turn is plan → compaction check → the
engine streaming to the sink → save → log. Where a message belongs comes from ``conversation/context.py``,
what its turn asks for from ``conversation/plan.py``; the sessions service (``conversation/sessions.py``)
runs one message of a session at a time, here and across processes, while different sessions run fully
concurrently. ``/stop`` is the one command that does not wait: it cancels the turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

from bot.chat import Incoming, NullSink, Reply, ReplySink
from bot.clock import Clock
from bot.config.schema import Config
from bot.conversation.compaction import Compactor
from bot.conversation.context import turn_context
from bot.conversation.history import HistoryCache, SessionHistory
from bot.conversation.plan import TurnPlan, plan_turn
from bot.conversation.replies import (
    NOTHING_TO_RETRY,
    STOPPED,
    answer_reply,
    failure_reply,
    redacted,
    stop_reply,
    unfit,
)
from bot.conversation.saving import save_turn
from bot.conversation.sessions import Sessions
from bot.conversation.streaming import AnswerStream
from bot.conversation.turn_log import TurnLog, TurnObserver
from bot.errors import CommandError, DeliveryFailed, ModelbotError, TurnError, TurnStopped
from bot.failover.engine import AttemptFailed, Engine, TurnResult
from bot.failover.policy import OVERFLOW_NOT_COMPACTED
from bot.failover.reasons import Reason
from bot.models.catalog import Catalog
from bot.providers.base import ChatMessage
from bot.store.lease import LeaseKeeper
from bot.store.protocol import SessionStore
from bot.store.types import SessionRecord

if TYPE_CHECKING:
    from bot.conversation.command_handlers import AuthOverview, CommandHandlers
    from bot.conversation.commands import Command

log = logging.getLogger("modelbot.turns")


@dataclass
class _Turn:
    """A turn's message, and its session, history and plan as they are now: a compaction changes all three."""

    msg: Incoming
    session: SessionRecord
    history: SessionHistory
    plan: TurnPlan
    result: TurnResult | None = None  # its answer
    failures: list[AttemptFailed] = field(default_factory=list)  # the attempts that failed on the way


@dataclass
class _Answered:
    """The turn that answered a message, counted only once ``handle`` knows whether it reached the user."""

    turn: _Turn | None = None


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
        """``session_leases``: other processes share ``store``; each session's messages also hold its lease."""
        self._config = config
        self._max_chars = config.session.max_message_chars
        self._redact = redact
        self._catalog = catalog
        self._engine_for = engine_for
        self._store = store
        self._clock = clock
        self.sessions = Sessions(store, clock=clock, leases=session_leases)
        self._log = TurnLog(store, clock=clock, observer=observer)
        self._history = HistoryCache(store, limit=config.session.history_limit)
        self._compactor = Compactor(
            engine_for=engine_for, store=store, catalog=catalog, clock=clock, config=config
        )
        self._auth_for = auth_for
        self._commands: CommandHandlers | None = None

    @property
    def commands(self) -> CommandHandlers:
        """The command handlers, made (and their modules imported) by the first command: a chat that has
        only talked so far has not paid for them (``modelbot chat``'s first answer)."""
        if self._commands is None:
            from bot.conversation.command_handlers import CommandHandlers  # noqa: PLC0415 - see above

            self._commands = CommandHandlers(
                config=self._config,
                catalog=self._catalog,
                store=self._store,
                auth_for=self._auth_for,
                clock=self._clock,
                sessions=self.sessions,
            )
        return self._commands

    # -- entry points -------------------------------------------------------------------------------------

    def session_key(self, msg: Incoming) -> str:
        return turn_context(msg, self._config).key

    async def handle(self, msg: Incoming, sink: ReplySink | None = None) -> list[Reply]:
        """Handle one message and deliver its replies through ``sink``; returns them too.

        Always at least one reply; never raises for bad input or a failed delivery (the sink handled that).
        """
        sink = sink if sink is not None else NullSink()
        answered = _Answered()  # filled in when the message ran a turn that answered
        replies = redacted(await self._route(msg, sink, answered), self._redact)
        try:
            await sink.deliver(replies)
            delivered = True
        except DeliveryFailed:
            delivered = False
        if (turn := answered.turn) is not None:
            if not delivered:
                self.sessions.remember_retry(turn.session.key, turn.msg)
            self._log.turn(turn.session.key, turn.result, turn.failures, delivered=delivered)
        return replies

    async def choose(self, msg: Incoming, token: str) -> Reply:
        """A picker button was pressed."""
        ctx = turn_context(msg, self._config)
        async with self.sessions.open(ctx) as session:
            return await self.commands.choose_token(session, token)

    def model_choices(self, msg: Incoming, typed: str, *, limit: int = 25) -> list[str]:
        """Models the user may pick, filtered by what was typed (autocomplete): picker order, best matches first."""
        return self.commands.model_choices(turn_context(msg, self._config).agent_id, typed, limit=limit)

    # -- route --------------------------------------------------------------------------------------------

    async def _route(self, msg: Incoming, sink: ReplySink, answered: _Answered) -> list[Reply]:
        """A command or a turn, in the message's session."""
        self.sessions.saw(msg)
        try:
            command = _command_in(msg)
        except CommandError as exc:
            return [Reply(str(exc), kind="error")]
        ctx = turn_context(msg, self._config)
        if command is None:
            if (refusal := unfit(msg, max_chars=self._max_chars)) is not None:
                return [refusal]
        elif isinstance(command, _commands().Stop):  # never waits for the session: it ends what holds it
            return [stop_reply(self.sessions.stop(ctx.key))]
        try:
            async with self.sessions.open(ctx) as session:
                if command is None:
                    return [await self._run_turn(msg, session, sink, answered)]
                if isinstance(command, _commands().Retry):
                    return [await self._retry(session, answered)]
                return [await self.commands.run(command, msg, session, ctx)]
        except ModelbotError as exc:
            # A broken auth file or an unreachable database: one plain sentence, never a traceback.
            log.error("message in %s failed: %s", ctx.key, exc)
            return [Reply(str(exc), kind="error")]

    async def _retry(self, session: SessionRecord, answered: _Answered) -> Reply:
        """``/retry``: the session's last message that got no complete answer, once more."""
        previous = self.sessions.retry_message(session.key)
        if previous is None:
            return NOTHING_TO_RETRY
        return await self._run_turn(previous, session, NullSink(), answered)

    # -- turn -----------------------------------------------------------------------------------------------

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
        self.sessions.remember_retry(session.key, msg)  # /stop ended it
        return STOPPED

    async def _turn(
        self, msg: Incoming, session: SessionRecord, sink: ReplySink, answered: _Answered
    ) -> Reply:
        """Plan → compaction check → the engine streaming to the sink → save → log."""
        try:
            plan = plan_turn(self._config, self._catalog, session, has_images=bool(msg.images))
        except TurnStopped as exc:  # images, and no model of the session can see them
            return Reply(str(exc), kind="error")
        await sink.typing()
        turn = _Turn(msg, session, await self._history.get(session), plan)
        await self._compact(turn)
        try:
            result = await self._answer(turn, sink)
        except (TurnError, DeliveryFailed) as exc:
            self.sessions.remember_retry(turn.session.key, msg)
            return failure_reply(exc)
        await save_turn(self.sessions, self._history, turn.session, msg, result, now_ms=self._clock.now_ms())
        self.sessions.forget_retry(turn.session.key)
        answered.turn = turn  # logged by handle, once it knows whether the answer was delivered
        return answer_reply(result, fallback_note=self._config.agents.defaults.fallback_note)

    async def _answer(self, turn: _Turn, sink: ReplySink) -> TurnResult:
        """The engine's answer; a context overflow compacts the session once, whatever the threshold, and
        asks again."""
        try:
            return await self._stream(turn, sink)
        except TurnStopped as exc:
            if exc.reason is not Reason.CONTEXT_OVERFLOW:
                raise
            if not await self._compact(turn, force=True):
                raise TurnStopped(Reason.CONTEXT_OVERFLOW, OVERFLOW_NOT_COMPACTED) from exc
            return await self._stream(turn, sink)

    async def _stream(self, turn: _Turn, sink: ReplySink) -> TurnResult:
        """One pass of the engine, streamed to the sink."""
        history = turn.history
        user = ChatMessage("user", turn.msg.text, turn.msg.images)
        request = turn.plan.request(history.turns, history.summaries, user)
        stream = AnswerStream(sink, self._log, turn.session.key)
        try:
            turn.result = await stream.run(self._engine_for(turn.session.agent_id).run(request))
        finally:
            turn.failures = stream.failures
        return turn.result

    async def _compact(self, turn: _Turn, *, force: bool = False) -> bool:
        """Compaction when the history nears the model's window (or ``force``); it re-picks the auto pin."""
        session, history = turn.session, turn.history
        compacted = await self._compactor.maybe_compact(
            session,
            turn.plan.chain,
            history.messages,
            tokens=history.tokens,
            pending=turn.msg.text,
            force=force,
        )
        if compacted is None:
            return False
        turn.session, messages = compacted
        turn.history = self._history.fill(turn.session, messages)
        turn.plan = turn.plan.compacted(turn.session)
        return True


def _command_in(msg: Incoming) -> Command | None:
    """The command ``msg`` holds, or None for plain chat, which needs no parser: every command starts with a
    ``/`` (``commands.parse_command``), so the command modules load with the first message that may be one."""
    if not msg.text.lstrip().startswith("/"):
        return None
    from bot.conversation.commands import parse_command  # noqa: PLC0415 - see the docstring

    return parse_command(msg.text, bot_username=msg.bot_username)


def _commands() -> ModuleType:
    """``bot.conversation.commands``, loaded by the first command (see ``_command_in``)."""
    from bot.conversation import commands  # noqa: PLC0415

    return commands
