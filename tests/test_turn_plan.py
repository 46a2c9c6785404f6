"""The plan of a turn (bot/conversation/plan.py): pure tables of sessions and configs, no store, no engine."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bot.config.schema import Config
from bot.conversation.plan import pin_for, plan_turn, session_models, system_prompt
from bot.errors import TurnStopped
from bot.failover.chain import NO_VISION_MESSAGE
from bot.failover.engine import Pin
from bot.models.catalog import Catalog
from bot.models.refs import ModelRef
from bot.providers.base import ChatMessage
from bot.store.types import SessionRecord

ECHO, STORY, VISION = ModelRef("demo", "echo"), ModelRef("demo", "story"), ModelRef("demo", "vision")
DEFAULTS: dict[str, Any] = {
    "model": {"primary": "demo/echo", "fallbacks": ["demo/story"]},
    "imageModel": {"primary": "demo/vision"},
}
BLANK = SessionRecord(
    key="telegram:chat:c1",
    agent_id="main",
    platform="telegram",
    chat_id="c1",
    user_id="u1",
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
    created_at=0,
    updated_at=0,
    message_count=0,
)


def _config(**defaults: Any) -> Config:
    return Config.model_validate({"agents": {"defaults": {**DEFAULTS, **defaults}}})


def _session(**changes: Any) -> SessionRecord:
    return dataclasses.replace(BLANK, **changes)


@pytest.mark.parametrize(
    ("override", "defaults", "images", "expected"),
    [
        (None, {}, False, ((ECHO, STORY), ECHO, False)),
        ("demo/story", {}, False, ((STORY, ECHO), STORY, False)),  # the session's model first, primary last
        ("demo/vision", {}, False, ((VISION, STORY, ECHO), VISION, False)),
        ("demo/story", {"models": {"demo/echo": {}}}, False, ((ECHO, STORY), ECHO, False)),  # not allowed now
        ("not a model", {}, False, ((ECHO, STORY), ECHO, False)),  # a stored override that does not parse
        (None, {}, True, ((VISION,), ECHO, True)),  # echo cannot see: the image model, for this turn
        ("demo/vision", {}, True, ((VISION, STORY, ECHO), VISION, False)),  # vision can: its own chain
        (
            None,
            {"imageModel": {"primary": "demo/vision", "fallbacks": ["demo/story"]}},
            True,
            ((VISION, STORY), ECHO, True),
        ),
    ],
)
def test_the_chain_of_a_turn(
    override: str | None,
    defaults: dict[str, Any],
    images: bool,
    expected: tuple[tuple[ModelRef, ...], ModelRef, bool],
) -> None:
    """The session's model (an allowed override, else the primary), the fallbacks, the primary last; images
    the model cannot see go to the image chain."""
    config = _config(**defaults)
    plan = plan_turn(
        config, Catalog.from_config(config), _session(model_override=override), has_images=images
    )
    assert (plan.chain, plan.models.current, plan.image_routed) == expected
    assert plan.models == session_models(
        config, Catalog.from_config(config), _session(model_override=override)
    )


def test_images_no_model_can_see_stop_the_turn() -> None:
    """No image model configured: the turn stops with the sentence that says what to do."""
    config = Config.model_validate({"agents": {"defaults": {"model": {"primary": "demo/echo"}}}})
    with pytest.raises(TurnStopped) as stopped:
        plan_turn(config, Catalog.from_config(config), BLANK, has_images=True)
    assert str(stopped.value) == NO_VISION_MESSAGE


@pytest.mark.parametrize(
    ("pin", "expected"),
    [
        ({}, None),
        (
            {"pin_profile": "demo:main", "pin_source": "auto", "pin_compaction": 2, "compaction_count": 2},
            Pin("demo:main", "auto"),
        ),
        (
            {"pin_profile": "demo:main", "pin_source": "auto", "pin_compaction": 1, "compaction_count": 2},
            None,
        ),
        (
            {"pin_profile": "demo:busy", "pin_source": "user", "pin_compaction": 0, "compaction_count": 3},
            Pin("demo:busy", "user"),
        ),
        ({"pin_profile": "demo:main"}, None),  # a profile without a source is no pin
    ],
)
def test_the_pin(pin: dict[str, Any], expected: Pin | None) -> None:
    """An auto pin holds until a compaction; a user pin for the session."""
    session = _session(**pin)
    assert pin_for(session) == expected
    assert plan_turn(_config(), Catalog.from_config(_config()), session, has_images=False).pin == expected


def test_a_compaction_repicks_the_auto_pin_and_keeps_a_user_pin() -> None:
    """After a compaction (the count grew) the plan's auto pin goes; a user pin stays."""
    config = _config()
    catalog = Catalog.from_config(config)
    auto = _session(pin_profile="demo:main", pin_source="auto", pin_compaction=0)
    user = _session(pin_profile="demo:busy", pin_source="user", pin_compaction=0)
    for session, kept in ((auto, None), (user, Pin("demo:busy", "user"))):
        plan = plan_turn(config, catalog, session, has_images=False)
        assert plan.pin is not None
        compacted = plan.compacted(dataclasses.replace(session, compaction_count=1))
        assert compacted.pin == kept and compacted.chain == plan.chain


def test_the_system_prompt_is_the_agents_own_else_the_defaults() -> None:
    """An agent's ``systemPrompt`` wins; without one, the defaults'; without both, none."""
    config = Config.model_validate(
        {
            "agents": {
                "defaults": {**DEFAULTS, "systemPrompt": "Be brief."},
                "list": [{"id": "main"}, {"id": "poet", "systemPrompt": "Rhyme."}],
            }
        }
    )
    assert (system_prompt(config, "main"), system_prompt(config, "poet")) == ("Be brief.", "Rhyme.")
    assert system_prompt(_config(), "main") is None
    plan = plan_turn(config, Catalog.from_config(config), _session(agent_id="poet"), has_images=False)
    assert plan.system_prompt == "Rhyme."


def test_the_request_carries_the_plan_and_the_conversation() -> None:
    """The engine's input: chain, pin and output limit from the plan; the turns and the new message; earlier
    summaries after the prompt; no system text when there is neither."""
    config = _config(systemPrompt="Be brief.", maxOutputTokens=500)
    session = _session(pin_profile="demo:main", pin_source="user")
    plan = plan_turn(config, Catalog.from_config(config), session, has_images=False)
    turns = [ChatMessage("user", "hi"), ChatMessage("assistant", "hello")]
    user = ChatMessage("user", "and now?")
    request = plan.request(turns, ["They said hi."], user)
    assert list(request.messages) == [*turns, user] and list(request.chain) == [ECHO, STORY]
    assert request.system == "Be brief.\n\nSummary of the earlier conversation:\nThey said hi."
    assert (request.pin, request.max_tokens) == (Pin("demo:main", "user"), 500)
    bare = plan_turn(_config(), Catalog.from_config(_config()), BLANK, has_images=False)
    assert bare.request([], [], user).system is None
    assert bare.request([], ["Earlier."], user).system == "Summary of the earlier conversation:\nEarlier."
