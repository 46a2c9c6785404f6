"""The plan of a turn, computed once from its session: the model, the chain (images routed), the prompt, the pin.

The rules are those of docs/failover.md §8: the session's model is its override while the allowlist still
allows it, else the agent's primary; the chain is that model, the fallbacks, the primary last; images the
model cannot see go to ``imageModel`` for this turn; an automatic pin holds until a compaction, a user pin
for the session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from bot.config.schema import Config
from bot.errors import RefError
from bot.failover.chain import plan_chain
from bot.failover.engine import Pin, TurnInput
from bot.models.agents import agent_models
from bot.models.catalog import Catalog
from bot.models.refs import ModelRef, parse_model_ref
from bot.providers.base import ChatMessage
from bot.store.types import SessionRecord

SUMMARY_HEADING = "Summary of the earlier conversation:\n"


@dataclass(frozen=True)
class SessionModels:
    """The session's effective model and the agent's chain."""

    current: ModelRef
    is_override: bool
    primary: ModelRef
    fallbacks: tuple[ModelRef, ...]
    image_primary: ModelRef | None
    image_fallbacks: tuple[ModelRef, ...]


def session_models(config: Config, catalog: Catalog, session: SessionRecord) -> SessionModels:
    """The override counts only while it is still allowed (the allowlist may have changed since)."""
    models = agent_models(config, session.agent_id)
    current, is_override = models.primary, False
    if session.model_override:
        try:
            ref = parse_model_ref(session.model_override)
        except RefError:
            ref = None
        if ref is not None and catalog.is_allowed(ref):
            current, is_override = ref, True
    return SessionModels(
        current, is_override, models.primary, models.fallbacks, models.image_primary, models.image_fallbacks
    )


def pin_for(session: SessionRecord) -> Pin | None:
    """A user pin holds for the session; an auto pin until a compaction completes."""
    if session.pin_profile is None or session.pin_source is None:
        return None
    if session.pin_source == "auto" and session.pin_compaction != session.compaction_count:
        return None
    return Pin(session.pin_profile, session.pin_source)


def system_prompt(config: Config, agent_id: str) -> str | None:
    """The agent's own ``systemPrompt``, else the defaults' one."""
    for agent in config.agents.list:
        if agent.id == agent_id and agent.system_prompt:
            return agent.system_prompt
    return config.agents.defaults.system_prompt


@dataclass(frozen=True)
class TurnPlan:
    """What one turn asks the engine for, apart from the conversation itself."""

    models: SessionModels
    chain: tuple[ModelRef, ...]
    image_routed: bool  # images the session's model cannot see: the image chain answers this turn
    system_prompt: str | None
    pin: Pin | None
    max_tokens: int | None

    def request(self, turns: Sequence[ChatMessage], summaries: Sequence[str], user: ChatMessage) -> TurnInput:
        """The engine's input: the history's turns and the new message; earlier summaries join the prompt."""
        system = [p for p in (self.system_prompt,) if p] + [SUMMARY_HEADING + s for s in summaries]
        return TurnInput(
            chain=self.chain,
            messages=[*turns, user],  # a copy of references: the serialisation is the one walk
            system="\n\n".join(system) or None,
            pin=self.pin,
            max_tokens=self.max_tokens,
        )

    def compacted(self, session: SessionRecord) -> TurnPlan:
        """The plan once ``session`` (as it is after a compaction) has a new compaction count: its auto pin
        is picked again."""
        return dataclasses.replace(self, pin=pin_for(session))


def plan_turn(config: Config, catalog: Catalog, session: SessionRecord, *, has_images: bool) -> TurnPlan:
    """The plan of the session's next turn; ``TurnStopped`` when it has images that no model can see."""
    models = session_models(config, catalog, session)
    chain = plan_chain(
        models.current if models.is_override else None,
        primary=models.primary,
        fallbacks=models.fallbacks,
        image_primary=models.image_primary,
        image_fallbacks=models.image_fallbacks,
        has_images=has_images,
        accepts_images=catalog.accepts_images,
    )
    return TurnPlan(
        models=models,
        chain=chain.chain,
        image_routed=chain.image_routed,
        system_prompt=system_prompt(config, session.agent_id),
        pin=pin_for(session),
        max_tokens=config.agents.defaults.max_output_tokens,
    )
