"""What each chat command does: replies and session changes, with the texts users see (docs/commands.md §1, docs/failover.md §8 and §11)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from bot.chat import Incoming, PickerView, Reply
from bot.clock import Clock
from bot.config.schema import Config
from bot.conversation import commands as c
from bot.conversation.context import TurnContext
from bot.conversation.help import help_text
from bot.conversation.plan import SessionModels, session_models
from bot.conversation.sessions import Sessions
from bot.errors import CommandError, RefError
from bot.models.agents import agent_ids, agent_models, default_provider
from bot.models.catalog import Catalog
from bot.models.picker import (
    PickerEntry,
    autocomplete,
    build_picker,
    choose_from_picker,
    page,
    picker_token,
    render_picker,
    resolve_token,
)
from bot.models.refs import ModelRef, Selection
from bot.store.protocol import SessionStore
from bot.store.types import SessionPatch, SessionRecord

if TYPE_CHECKING:
    from bot.conversation.status_view import ProviderStatus

PICKER_PAGE_SIZE = 20


class AuthOverview(Protocol):
    """What commands need to know about credentials."""

    def has_usable_auth(self, provider: str, now_ms: int, model: str | None = None) -> bool:
        """A profile of the provider that is not resting (for ``model``, if given: nor its pair)."""
        ...

    def has_credentials(self, provider: str) -> bool:
        """Stored profiles, an environment key or a config key (local providers need none)."""
        ...

    def profile_provider(self, profile_id: str) -> str | None:
        """The provider of a known profile id, else None."""
        ...

    def provider_status(self, provider: str, now_ms: int, model: str | None = None) -> ProviderStatus:
        """Endpoint and credentials of the provider, in rotation order for ``model``."""
        ...


class CommandHandlers:
    """Runs parsed commands against one session; the pipeline serialises calls per session."""

    def __init__(
        self,
        *,
        config: Config,
        catalog: Catalog,
        store: SessionStore,
        auth_for: Callable[[str], AuthOverview],
        clock: Clock,
        sessions: Sessions,
    ) -> None:
        self._config = config
        self._catalog = catalog
        self._store = store
        self._auth_for = auth_for
        self._clock = clock
        self._sessions = sessions

    # -- the picker ---------------------------------------------------------------------------------------

    def picker(self, agent_id: str) -> list[PickerEntry]:
        """The numbered families: the allowlist, else models of providers that are configured or have keys."""
        auth = self._auth_for(agent_id)
        agent_refs = [m for a in self._agent_ids() for m in self._chain_refs(a)]
        providers = {r.provider for r in agent_refs}
        providers |= {key.strip().lower() for key in self._config.models.providers}
        providers |= {m.ref.provider for m in self._catalog.models() if auth.has_credentials(m.ref.provider)}
        return build_picker(
            [*self._catalog.selectable(providers), *(r for r in agent_refs if self._catalog.is_allowed(r))]
        )

    def model_choices(self, agent_id: str, typed: str, *, limit: int) -> list[str]:
        """Autocomplete of ``/model``: the agent's picker, filtered by what was typed."""
        return autocomplete(self.picker(agent_id), typed, limit=limit)

    def picker_view(self, entries: list[PickerEntry], current: ModelRef, page_number: int) -> PickerView:
        shown, total = page(entries, page_number, PICKER_PAGE_SIZE)
        current_number = next((e.number for e in entries if current in e.refs), None)
        return PickerView(
            entries=tuple(shown),
            page=max(1, min(page_number, total)),
            total_pages=total,
            current_number=current_number,
            tokens=tuple(picker_token(e) for e in shown),
        )

    # -- dispatch -----------------------------------------------------------------------------------------

    async def run(self, command: c.Command, msg: Incoming, session: SessionRecord, ctx: TurnContext) -> Reply:
        """One command's reply; ``CommandError`` and ``RefError`` become a short error reply."""
        try:
            return await self._run(command, msg, session, ctx)
        except (CommandError, RefError) as exc:
            return Reply(str(exc), kind="error")

    async def _run(
        self, command: c.Command, msg: Incoming, session: SessionRecord, ctx: TurnContext
    ) -> Reply:
        match command:
            case c.ModelShow():
                return self._show_picker(session, 1, header=True)
            case c.ModelList(page=page_number):
                return self._show_picker(session, page_number, header=False)
            case c.ModelPick(number=number):
                return await self._pick(session, number)
            case c.ModelSet(ref_text=text):
                return await self._set_model(msg, session, text)
            case c.ModelStatus():
                return Reply(self.model_status(session), ephemeral=True)
            case c.ModelDefault():
                await self._store.update(
                    session.key,
                    SessionPatch(
                        model_override=None,
                        model_source=None,
                        pin_profile=None,
                        pin_source=None,
                        pin_compaction=None,
                    ),
                    now_ms=self._clock.now_ms(),
                )
                models = agent_models(self._config, session.agent_id)
                return Reply(f"Model reset to the default: {models.primary}.")
            case c.ResetSession(target_user=None) if msg.reply_to_user_id not in (None, msg.user_id):
                # "/reset" sent as a reply to a member's message resets that member's session.
                return await self._run(
                    c.ResetSession(command.model_text, command.raw, f"user:{msg.reply_to_user_id}"),
                    msg,
                    session,
                    ctx,
                )
            case c.NewSession(model_text=text) | c.ResetSession(model_text=text, target_user=None):
                return await self._new(msg, session, text, command)
            case c.ResetSession(target_user=target) if target is not None:
                if not msg.is_admin:
                    raise CommandError("Only admins can reset another member's session.")
                return await self._reset_member(msg, ctx, target)
            case c.Status():
                return Reply(await self._status(session), ephemeral=True)
            case c.Help(topic=topic):
                return Reply(help_text(topic, is_admin=msg.is_admin), ephemeral=True)
            case c.Unknown(name=name):
                return Reply(f"Unknown command /{c.echo(name)}. Send /help for the list.", kind="error")
        raise CommandError("That command is not available here.")

    # -- /model -------------------------------------------------------------------------------------------

    def _show_picker(self, session: SessionRecord, page_number: int, *, header: bool) -> Reply:
        current = session_models(self._config, self._catalog, session).current
        entries = self.picker(session.agent_id)
        view = self.picker_view(entries, current, page_number)
        text = render_picker(list(view.entries), current)
        if view.total_pages > 1:
            text += f"\nPage {view.page} of {view.total_pages}: /model list <page>."
        if header:
            text = f"Current model: {current}\n\n{text}"
        return Reply(text, picker=view, ephemeral=True)

    async def _pick(self, session: SessionRecord, number: int) -> Reply:
        current = session_models(self._config, self._catalog, session).current
        now = self._clock.now_ms()
        auth = self._auth_for(session.agent_id)
        ref = choose_from_picker(
            self.picker(session.agent_id),
            number,
            current=current,
            has_auth=lambda ref: auth.has_usable_auth(ref.provider, now, ref.model),
        )
        return await self._apply(session, Selection(ref, None))

    async def choose_token(self, session: SessionRecord, token: str) -> Reply:
        """A picker button: stale tokens (the list changed) get a polite answer and change nothing."""
        entry = resolve_token(self.picker(session.agent_id), token)
        if entry is None:
            return Reply("That list is out of date. Send /model to see the current one.", kind="error")
        return await self._pick(session, entry.number)

    async def _set_model(self, msg: Incoming, session: SessionRecord, text: str) -> Reply:
        selection = self._catalog.resolve(text, default_provider(self._config, session.agent_id))
        if selection.profile is not None:
            if not msg.is_admin:
                raise CommandError("Only admins can pin an auth profile with @profile.")
            owner = self._auth_for(session.agent_id).profile_provider(selection.profile)
            if owner is None:
                raise CommandError(f'No auth profile "{c.echo(selection.profile)}". See /model status.')
            if owner != selection.ref.provider:
                raise CommandError(
                    f'Profile "{selection.profile}" belongs to {owner}, not {selection.ref.provider}.'
                )
        return await self._apply(session, selection)

    async def _apply(self, session: SessionRecord, selection: Selection) -> Reply:
        profile = selection.profile
        patch = SessionPatch(
            model_override=str(selection.ref),
            model_source="user",
            pin_profile=profile,
            pin_source="user" if profile else None,
            pin_compaction=session.compaction_count if profile else None,
        )
        await self._store.update(session.key, patch, now_ms=self._clock.now_ms())
        text = f"Model set to {selection.ref}."
        if profile:
            text += f" Auth profile {profile} is locked for this session."
        ref = selection.ref
        if not self._auth_for(session.agent_id).has_usable_auth(
            ref.provider, self._clock.now_ms(), ref.model
        ):
            text += f" Note: {selection.ref.provider} has no usable credentials right now."
        return Reply(text)

    def model_status(self, session: SessionRecord) -> str:
        # The status views only for the commands that show them: not on the way to a chat's first answer.
        from bot.conversation.status_view import ModelStatusView, render_model_status  # noqa: PLC0415

        now = self._clock.now_ms()
        models = session_models(self._config, self._catalog, session)
        # Each provider's rotation is shown for the first model the session would ask it for.
        providers: dict[str, str] = {}
        for ref in self._status_refs(models):
            providers.setdefault(ref.provider, ref.model)
        auth = self._auth_for(session.agent_id)
        view = ModelStatusView(
            current=str(models.current),
            current_source="session override" if models.is_override else "agent default",
            last_model=session.last_model,
            last_fallback=session.last_fallback,
            default=str(models.primary),
            fallbacks=tuple(str(r) for r in models.fallbacks),
            image_model=str(models.image_primary) if models.image_primary else None,
            image_fallbacks=tuple(str(r) for r in models.image_fallbacks),
            providers=tuple(auth.provider_status(p, now, model) for p, model in providers.items()),
            pin_profile=session.pin_profile,
            pin_source=session.pin_source,
        )
        return render_model_status(view, now_ms=now)

    @staticmethod
    def _status_refs(models: SessionModels) -> list[ModelRef]:
        image = [models.image_primary] if models.image_primary else []
        return [models.current, *models.fallbacks, models.primary, *image, *models.image_fallbacks]

    # -- sessions -----------------------------------------------------------------------------------------

    async def _reset_member(self, msg: Incoming, ctx: TurnContext, target: str) -> Reply:
        """An admin resets another member's session: by reply, ``@name`` or ``user:<id>``."""
        user_id = (
            target[5:] if target.startswith("user:") else self._sessions.user_named(msg.platform, target)
        )
        if user_id is None:
            raise CommandError(
                f"I don't know {c.echo(target)} yet. Reply to one of their messages with /reset."
            )
        # With one shared session per group chat (scope "chat"), a member's session is the chat's session.
        key = ctx.member_key(user_id)
        if await self._store.get(key) is None:
            return Reply(f"{c.echo(target)} has no session here.")
        # No second session lock: the caller holds its own, and waiting for another one could deadlock (two
        # admins resetting each other). The reset is one atomic store call; an answer the member has in
        # flight is cancelled first so it cannot write into the fresh session.
        self._sessions.stop(key)
        await self._store.reset(key, keep_model=True, now_ms=self._clock.now_ms())
        return Reply(f"Session of {c.echo(target)} reset.")

    async def _new(
        self, msg: Incoming, session: SessionRecord, text: str | None, command: c.Command
    ) -> Reply:
        override: str | None = None
        if text is not None:
            selection = self._catalog.resolve(text, default_provider(self._config, session.agent_id))
            if selection.profile is not None:
                raise CommandError(
                    "Pin a profile with /model provider/model@profile after starting the session."
                )
            override = str(selection.ref)
        record = await self._store.reset(
            session.key, keep_model=True, model_override=override, now_ms=self._clock.now_ms()
        )
        current = session_models(self._config, self._catalog, record).current
        word = "New session" if isinstance(command, c.NewSession) else "Session reset"
        return Reply(f"{word}. Model: {current}.")

    async def _status(self, session: SessionRecord) -> str:
        models = session_models(self._config, self._catalog, session)
        lines = [
            f"Session: {session.key}",
            f"Model: {models.current}" + (" (session override)" if models.is_override else ""),
            f"Messages: {session.message_count}, compactions: {session.compaction_count}",
        ]
        if session.pin_profile:
            lines.append(
                f"Auth profile: {session.pin_profile} ({'locked' if session.pin_source == 'user' else 'auto'})"
            )
        if session.last_model:
            from bot.conversation.status_view import failover_kind  # noqa: PLC0415 - see model_status

            via = f" via {session.last_profile}" if session.last_profile else ""
            kind = failover_kind(session.last_model, str(models.current)) if session.last_fallback else None
            lines.append(f"Last answer: {session.last_model}{via}" + (f" ({kind})" if kind else ""))
        return "\n".join(lines)

    # -- helpers ------------------------------------------------------------------------------------------

    def _agent_ids(self) -> list[str]:
        return list(agent_ids(self._config))

    def _chain_refs(self, agent_id: str) -> list[ModelRef]:
        models = agent_models(self._config, agent_id)
        image = [models.image_primary] if models.image_primary else []
        return [models.primary, *models.fallbacks, *image, *models.image_fallbacks]
