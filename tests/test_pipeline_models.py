"""Model selection through the chat pipeline (docs/failover.md §1, §2, §8; docs/commands.md §1): /model default, picks, status, allowlist, pins."""

from __future__ import annotations

import json
from pathlib import Path

from bot.app import App
from bot.failover.reasons import Reason
from bot.store.memory import InMemorySessionStore
from bot.store.types import SessionRecord
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock
from tests.test_pipeline import msg, say

# Two fallbacks and an image model with a fallback, so /model status has something to list on each line.
STATUS_CONFIG = (
    '{agents: {defaults: {model: {primary: "demo/echo", fallbacks: ["demo/story", "demo/vision"]},'
    ' imageModel: {primary: "demo/vision", fallbacks: ["demo/story"]}}}}'
)
# claude-sonnet-4-5 is one picker family offered by anthropic and by openrouter (anthropic first).
SONNET = "claude-sonnet-4-5"
TWO_PROVIDER_CONFIG = (
    '{agents: {defaults: {model: {primary: "demo/echo", fallbacks: ["demo/story"]},'
    ' models: {"demo/echo": {}, "demo/story": {}, "anthropic/claude-sonnet-4-5": {},'
    ' "openrouter/anthropic/claude-sonnet-4-5": {}}}}}'
)


async def stored_session(app: App, user: str = "u1") -> SessionRecord:
    """The session record as the store holds it, for the default test chat."""
    record = await app.store.get(app.chat().session_key(msg("x", user=user)))
    assert record is not None
    return record


async def test_model_default_clears_an_override_that_differs_from_the_primary(
    state_dir: Path, clock: FakeClock
) -> None:
    """docs/failover.md §8: /model default clears the stored override; the next turn is answered by the primary again."""
    async with running_app(state_dir, clock) as app:
        assert (await say(app, "/model demo/story")).text.startswith("Model set to demo/story.")
        assert (await say(app, "what now")).model == "demo/story"
        assert (await stored_session(app)).model_override == "demo/story"

        assert (await say(app, "/model default")).text == "Model reset to the default: demo/echo."
        session = await stored_session(app)
        assert session.model_override is None and session.model_source is None
        assert (await say(app, "and now")).model == "demo/echo"
        assert "Current: demo/echo (agent default)" in (await say(app, "/model status")).text


async def test_pick_by_number_takes_the_first_provider_with_usable_auth(
    state_dir: Path, clock: FakeClock
) -> None:
    """docs/failover.md §2: /model <#> on a family the current provider lacks picks the first provider with usable auth.

    anthropic comes first in the picker but its only key is cooling down; openrouter has a key. Once the
    cooldown is over, the same pick lands on anthropic.
    """
    auth_file = state_dir / "agents/main/agent/auth-profiles.json"
    auth_file.parent.mkdir(parents=True)
    auth_file.write_text(
        json.dumps(
            {
                "version": 1,
                "profiles": {
                    "anthropic:work": {"type": "api_key", "provider": "anthropic", "key": "sk-ant-test-1"}
                },
            }
        )
    )
    env = {"OPENROUTER_API_KEY": "sk-or-test-1"}
    async with running_app(state_dir, clock, config=TWO_PROVIDER_CONFIG, env=env) as app:
        await app.backend("main").record_failure(
            "anthropic:work",
            "claude-sonnet-4-5",
            Reason.RATE_LIMIT,
            now_ms=clock.now_ms(),
            retry_after_ms=None,
        )
        entry = next(e for e in app.chat().commands.picker("main") if e.family == SONNET)
        assert entry.providers == ("anthropic", "openrouter")

        picked = await say(app, f"/model {entry.number}")
        assert picked.text.startswith("Model set to openrouter/anthropic/claude-sonnet-4-5.")
        assert (await stored_session(app)).model_override == "openrouter/anthropic/claude-sonnet-4-5"

        clock.advance(minutes=2)  # anthropic:work is usable again
        await say(app, "/model default")
        assert (await say(app, f"/model {entry.number}")).text.startswith(
            "Model set to anthropic/claude-sonnet-4-5."
        )
        assert (await stored_session(app)).model_override == "anthropic/claude-sonnet-4-5"


async def test_model_status_shows_fallbacks_image_model_and_the_fallback_marker(
    state_dir: Path, clock: FakeClock
) -> None:
    """docs/commands.md §1: /model status lists current, default, fallbacks and image model, and marks a fallback answer."""
    async with running_app(state_dir, clock, config=STATUS_CONFIG) as app:
        await say(app, "/model demo/broken")
        answer = await say(app, "tell me a story")
        assert answer.model == "demo/story"

        lines = (await say(app, "/model status")).text.splitlines()
        assert lines[:5] == [
            "Current: demo/broken (session override)",
            "Last answer: demo/story (fallback)",
            "Default: demo/echo",
            "Fallbacks: demo/story, demo/vision",
            "Image model: demo/vision (fallbacks: demo/story)",
        ]

        # An answer from the session's own model, on the pinned profile, carries no fallback marker.
        await say(app, "/model demo/story")
        assert (await say(app, "again")).note is None
        status = (await say(app, "/model status")).text
        assert "Last answer" not in status and "(fallback)" not in status


async def test_stored_override_outside_a_changed_allowlist_is_not_used(
    state_dir: Path, clock: FakeClock
) -> None:
    """docs/failover.md §2: the allowlist applies to a stored override too: once the config drops the model, turns ignore it."""
    store = InMemorySessionStore()
    async with running_app(state_dir, clock, store=store) as app:
        await say(app, "/model demo/vision")
        assert (await say(app, "hello")).model == "demo/vision"

    narrowed = (
        '{agents: {defaults: {model: {primary: "demo/echo", fallbacks: ["demo/story"]},'
        ' models: {"demo/echo": {}, "demo/story": {}}}}}'
    )
    async with running_app(state_dir, clock, config=narrowed, store=store) as app:
        assert (await stored_session(app)).model_override == "demo/vision"  # still stored, but not allowed
        reply = await say(app, "hello again")
        assert reply.kind == "answer" and reply.model == "demo/echo"
        assert "Current: demo/echo (agent default)" in (await say(app, "/model status")).text


async def test_profile_of_another_provider_is_refused_and_changes_nothing(
    state_dir: Path, clock: FakeClock
) -> None:
    """docs/failover.md §1: /model provider/model@profile with another provider's profile is refused; nothing changes."""
    async with running_app(state_dir, clock) as app:
        await say(app, "/model demo/story")
        before = await stored_session(app)
        reply = await say(app, "/model openai/gpt-5@demo:main", admin=True)
        assert reply.kind == "error"
        assert reply.text == 'Profile "demo:main" belongs to demo, not openai.'
        after = await stored_session(app)
        assert after == before and after.model_override == "demo/story" and after.pin_profile is None
        assert (await say(app, "hello")).model == "demo/story"


async def test_model_without_profile_clears_a_user_pin(state_dir: Path, clock: FakeClock) -> None:
    """docs/failover.md §8: /model ref without @ clears the user pin; the stored session loses it and rotation resumes."""
    async with running_app(state_dir, clock) as app:
        locked = await say(app, "/model demo/echo@demo:busy", admin=True)
        assert "Auth profile demo:busy is locked" in locked.text
        session = await stored_session(app)
        assert (session.pin_profile, session.pin_source) == ("demo:busy", "user")
        # Locked to the rate-limited profile: the next model answers, not demo:main.
        assert (await say(app, "hello")).model == "demo/story"

        assert (await say(app, "/model demo/echo")).text.startswith("Model set to demo/echo.")
        session = await stored_session(app)
        assert session.model_override == "demo/echo"
        assert (session.pin_profile, session.pin_source, session.pin_compaction) == (None, None, None)
        assert "user-pinned" not in (await say(app, "/model status")).text
        reply = await say(app, "hello again")
        assert (reply.model, reply.profile) == ("demo/echo", "demo:main")


async def test_status_tells_a_rotation_from_a_model_fallback(state_dir: Path, clock: FakeClock) -> None:
    """docs/commands.md §1: "Last answer" says whether another model answered (fallback) or another profile of the same one."""
    async with running_app(state_dir, clock) as app:
        rotated = await say(app, "hello")  # the built-in demo: demo:busy is rate-limited, demo:main answers
        assert (rotated.model, rotated.profile) == ("demo/echo", "demo:main") and rotated.note
        status = (await say(app, "/model status")).text
        assert "Last answer: demo/echo (another profile, after a failure)" in status.splitlines()
        assert (
            "Last answer: demo/echo via demo:main (another profile, after a failure)"
            in (await say(app, "/status")).text.splitlines()
        )
