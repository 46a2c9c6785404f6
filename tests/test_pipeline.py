"""The chat pipeline wired by build_app on the demo provider: commands, rotation, pins, fallback, sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, build_app
from bot.chat import Incoming, Reply
from bot.failover.reasons import Reason
from bot.providers.base import ImagePart
from bot.store.memory import InMemorySessionStore
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001"
    "0d0a2db40000000049454e44ae426082"
)


@pytest.fixture
async def app(state_dir: Path, clock: FakeClock) -> AsyncIterator[App]:
    """The bot on the built-in default (demo provider), an in-memory session store and a fake clock."""
    async with running_app(state_dir, clock) as built:
        yield built


def msg(text: str, *, user: str = "u1", chat: str = "c1", admin: bool = False, **kw: Any) -> Incoming:
    return Incoming(platform="telegram", chat_id=chat, user_id=user, text=text, is_admin=admin, **kw)


async def say(app: App, text: str, **kw: Any) -> Reply:
    replies = await app.chat().handle(msg(text, **kw))
    assert len(replies) == 1
    return replies[0]


class Started:
    """A sink whose gate opens at the answer's first text: the turn is then running, inside its session."""

    def __init__(self) -> None:
        self._gate = asyncio.Event()

    async def typing(self) -> None:
        return None

    async def status(self, text: str | None) -> None:
        return None

    async def delta(self, text: str) -> None:
        self._gate.set()

    async def deliver(self, replies: Sequence[Reply]) -> None:
        return None

    async def wait(self) -> None:
        await asyncio.wait_for(self._gate.wait(), 5)


def usage(state_dir: Path) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, dict[str, Any]]] = json.loads(
        (state_dir / "agents/main/agent/auth-profiles.json").read_text()
    )
    return data["usageStats"]


async def test_picker_lists_families_and_marks_current(app: App) -> None:
    """/model shows the current model and a numbered family picker with buttons data."""
    reply = await say(app, "/model")
    assert reply.text.startswith("Current model: demo/echo")
    assert "2) echo — demo (current)" in reply.text
    assert reply.picker is not None and reply.picker.current_number == 2
    assert all(len(t.encode()) <= 64 and "/" not in t for t in reply.picker.tokens)


async def test_pick_by_number_and_out_of_range(app: App) -> None:
    """/model <#> switches; an out-of-range number names the valid range and changes nothing."""
    assert (await say(app, "/model 3")).text.startswith("Model set to demo/story.")
    bad = await say(app, "/model 42")
    assert bad.kind == "error" and bad.text == "Pick a number from 1 to 4."
    assert "demo/story" in (await say(app, "/status")).text


async def test_unknown_model_gets_suggestions_and_no_switch(app: App) -> None:
    """A misspelled model is never silently switched: error plus close suggestions."""
    reply = await say(app, "/model demo/stroy")
    assert reply.kind == "error"
    assert 'Unknown model "demo/stroy"' in reply.text and "demo/story" in reply.text
    assert "Model: demo/echo" in (await say(app, "/status")).text


async def test_rate_limited_profile_rotates_and_cooldown_is_persisted(
    app: App, state_dir: Path, clock: FakeClock
) -> None:
    """demo:busy is rate-limited: the turn rotates to demo:main, the note says so, the cooldown is on disk."""
    reply = await say(app, "hello")
    assert reply.kind == "answer" and reply.model == "demo/echo" and reply.profile == "demo:main"
    assert reply.note == "↪ answered by demo/echo (demo:main) — demo:busy rate-limited"
    # A rate limit cools the (profile, model) pair only (docs/failover.md §6): demo:busy's state for echo.
    stats = usage(state_dir)["demo:busy"]
    assert stats["models"]["echo"]["cooldownUntil"] == clock.now_ms() + 60_000
    assert stats["models"]["echo"]["errorCount"] == 1 and "cooldownUntil" not in stats
    status = (await say(app, "/model status")).text
    assert "demo:busy (builtin) (no key) — cooldown 1m (echo)" in status
    assert "demo:main (builtin) (no key) — pinned, next" in status
    # The pin keeps the session on demo:main: no more failed calls while busy cools down, or after.
    clock.advance(minutes=2)
    again = await say(app, "hi again")
    assert again.profile == "demo:main" and again.note is None


async def test_broken_model_falls_back_with_a_note(app: App) -> None:
    """A model whose calls fail goes to the next model of the chain, and the reply says so quietly."""
    await say(app, "/model demo/broken")
    reply = await say(app, "tell me a story")
    assert reply.model == "demo/story"
    assert reply.note == "↪ answered by demo/story — demo server error"
    assert "(fallback)" in (await say(app, "/status")).text


async def test_profile_pin_is_admin_only_and_locks(app: App) -> None:
    """@profile needs an admin; a user pin is locked: on failure the next model answers, not another profile."""
    refused = await say(app, "/model demo/echo@demo:busy")
    assert refused.kind == "error" and "admin" in refused.text
    ok = await say(app, "/model demo/echo@demo:busy", admin=True)
    assert "locked" in ok.text
    reply = await say(app, "hello")
    assert reply.model == "demo/story" and reply.profile == "demo:main"
    assert "user-pinned" in (await say(app, "/model status")).text


async def test_unknown_profile_and_wrong_provider_are_refused(app: App) -> None:
    """A pin to a profile that does not exist changes nothing."""
    reply = await say(app, "/model demo/echo@demo:nope", admin=True)
    assert reply.kind == "error" and "demo:nope" in reply.text


async def test_new_clears_pin_keeps_user_model_and_accepts_a_model(app: App) -> None:
    """/new: fresh history, pins cleared, the user's model kept unless a model is given."""
    await say(app, "/model demo/story@demo:main", admin=True)
    await say(app, "hello")
    reply = await say(app, "/new")
    assert reply.text == "New session. Model: demo/story."
    status = (await say(app, "/status")).text
    assert "Messages: 0" in status and "Auth profile" not in status
    assert (await say(app, "/reset demo/echo")).text == "Session reset. Model: demo/echo."
    assert (await say(app, "/model default")).text == "Model reset to the default: demo/echo."


async def test_allowlist_exact_text(state_dir: Path, clock: FakeClock) -> None:
    """Outside agents.defaults.models, /model answers with the exact sentence of docs/failover.md §2."""
    config = (
        '{agents: {defaults: {model: {primary: "demo/echo", fallbacks: ["demo/story"]},'
        ' models: {"demo/echo": {alias: "Echo"}, "demo/story": {}}}}}'
    )
    async with running_app(state_dir, clock, config=config) as built:
        reply = await say(built, "/model demo/vision")
        assert reply.text == 'Model "demo/vision" is not allowed. Use /model to list available models.'
        assert (await say(built, "/model echo")).text.startswith("Model set to demo/echo.")
        picker = (await say(built, "/model list")).text
        assert "vision" not in picker and "broken" not in picker


async def test_image_goes_to_the_image_model(app: App) -> None:
    """demo/echo cannot see images: the turn goes to imageModel (demo/vision) for that turn only."""
    image = ImagePart("image/png", PNG_1x1)
    replies = await app.chat().handle(msg("what is this?", images=(image,)))
    assert replies[0].model == "demo/vision"
    assert "1×1" in replies[0].text or "1x1" in replies[0].text
    assert (await say(app, "plain text")).model == "demo/echo"


async def test_same_session_is_serialised_other_sessions_are_not(state_dir: Path, clock: FakeClock) -> None:
    """Two messages to one session never interleave; other sessions proceed meanwhile."""
    built = build_app(
        env={"MODELBOT_STATE_DIR": str(state_dir)},
        clock=clock,
        store=InMemorySessionStore(),
        demo_delay_s=0.002,
    )
    await built.start()
    try:
        pipeline = built.chat()
        started = Started()
        first = asyncio.create_task(pipeline.handle(msg("first message here"), started))
        await started.wait()
        second = asyncio.create_task(pipeline.handle(msg("second")))
        other = asyncio.create_task(pipeline.handle(msg("/status", chat="c2")))
        done, _ = await asyncio.wait({first, second, other}, return_when=asyncio.FIRST_COMPLETED)
        assert other in done and first not in done
        await asyncio.gather(first, second)
        history = await built.store.history(pipeline.session_key(msg("x")))
        assert [m.content for m in history if m.role == "user"] == ["first message here", "second"]
    finally:
        await built.stop()


@pytest.fixture
async def slow_app(state_dir: Path, clock: FakeClock) -> AsyncIterator[App]:
    """The demo answering word by word with a pause, so that a turn is still running when /stop comes."""
    built = build_app(
        env={"MODELBOT_STATE_DIR": str(state_dir)},
        clock=clock,
        store=InMemorySessionStore(),
        demo_delay_s=0.01,
    )
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


async def test_stop_cancels_the_answer_and_retry_resends(slow_app: App) -> None:
    """/stop cancels the turn in progress without waiting for it; /retry asks again."""
    pipeline = slow_app.chat()
    started = Started()
    turn = asyncio.create_task(pipeline.handle(msg("a long question"), started))
    await started.wait()
    stop = await pipeline.handle(msg("/stop"))
    assert stop[0].text == "Stopping the current answer."
    stopped = await turn
    assert stopped[0].text == "Stopped. Send /retry to ask again."
    retried = await pipeline.handle(msg("/retry"))
    assert retried[0].kind == "answer" and "a long question" in retried[0].text
    assert (await pipeline.handle(msg("/retry")))[0].text == "There is nothing to retry."


async def test_stop_leaves_the_callers_task_running(slow_app: App) -> None:
    """The turn runs in the adapter's own task: after /stop that task goes on as if never cancelled."""
    pipeline = slow_app.chat()

    started = Started()

    async def adapter_task() -> tuple[str, int]:
        replies = await pipeline.handle(msg("a long question"), started)
        await asyncio.sleep(0)  # a cancellation left behind would surface here
        task = asyncio.current_task()
        assert task is not None
        return replies[0].text, task.cancelling()

    turn = asyncio.create_task(adapter_task())
    await started.wait()
    await pipeline.handle(msg("/stop"))
    assert (await pipeline.handle(msg("/stop")))[0].text == "Stopping the current answer."  # twice
    assert await turn == ("Stopped. Send /retry to ask again.", 0)


async def test_shutdown_cancels_a_turn_even_after_stop(slow_app: App) -> None:
    """A cancellation from outside (shutdown) is never taken for /stop: it reaches the caller."""
    pipeline = slow_app.chat()
    for also_stop in (False, True):
        started = Started()
        turn = asyncio.create_task(pipeline.handle(msg("a long question"), started))
        await started.wait()
        if also_stop:
            await pipeline.handle(msg("/stop"))
        turn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await turn
    assert (await pipeline.handle(msg("/stop")))[0].text == "Nothing to stop."


async def test_bad_input_gets_a_short_reply_and_changes_nothing(app: App) -> None:
    """Unknown commands, junk arguments and over-long messages: clear reply, no state change."""
    assert (await say(app, "/frobnicate")).text == "Unknown command /frobnicate. Send /help for the list."
    junk = await say(app, "/model ../../etc/passwd")
    assert junk.kind == "error" and len(junk.text) < 200
    huge = await say(app, "x" * 20_000)
    assert huge.kind == "error" and "too long" in huge.text
    ten_kb = await say(app, "/model " + "a" * 10_240)
    assert ten_kb.kind == "error" and len(ten_kb.text) < 200
    assert "Messages: 0" in (await say(app, "/status")).text


async def test_admin_resets_another_members_session(state_dir: Path, clock: FakeClock) -> None:
    """In per-user group sessions an admin resets a member by @name; others may not."""
    async with running_app(state_dir, clock, config='{session: {scope: "user"}}') as built:
        pipeline = built.chat()
        await pipeline.handle(msg("hello", user="42", user_name="alice", is_group=True))
        alice_key = pipeline.session_key(msg("x", user="42", is_group=True))
        assert (await built.store.get(alice_key)).message_count == 2  # type: ignore[union-attr]
        refused = await pipeline.handle(msg("/reset @alice", user="7", is_group=True))
        assert refused[0].kind == "error"
        done = await pipeline.handle(msg("/reset @alice", user="7", is_group=True, admin=True))
        assert done[0].text == "Session of @alice reset."
        assert (await built.store.get(alice_key)).message_count == 0  # type: ignore[union-attr]
        await pipeline.handle(msg("hello again", user="42", user_name="alice", is_group=True))
        by_reply = await pipeline.handle(
            msg("/reset", user="7", is_group=True, admin=True, reply_to_user_id="42")
        )
        assert by_reply[0].text == "Session of user:42 reset."
        assert (await built.store.get(alice_key)).message_count == 0  # type: ignore[union-attr]
        own = await pipeline.handle(msg("/reset", user="42", is_group=True, reply_to_user_id="42"))
        assert own[0].text.startswith("Session reset.")


async def test_all_models_failing_gives_one_summary(app: App, clock: FakeClock) -> None:
    """Everything failing: one short summary with the attempts and when a profile is back; /retry later works."""
    await say(app, "/model demo/broken@demo:busy", admin=True)
    # An auth failure cools the whole of demo:main, so the fallbacks have nothing either.
    backend = app.backend("main")
    await backend.record_failure("demo:main", "echo", Reason.AUTH, now_ms=clock.now_ms(), retry_after_ms=None)
    reply = await say(app, "anyone there?")
    assert reply.kind == "error"
    assert reply.text.startswith("All models failed: demo/broken (")
    assert "The first profile is available again in 1m." in reply.text
    clock.advance(minutes=2)
    assert (await say(app, "/retry")).kind == "answer"


async def test_compaction_summarises_and_repins(state_dir: Path, clock: FakeClock) -> None:
    """Near the context window, older turns become one summary and the compaction count grows."""
    config = (
        '{agents: {defaults: {model: {primary: "demo/echo"}}},'
        ' models: {providers: {demo: {models: [{id: "echo", contextWindow: 600}]}}}}'
    )
    async with running_app(state_dir, clock, config=config) as built:
        pipeline = built.chat()
        for i in range(4):
            await pipeline.handle(msg(f"message number {i} " + "words " * 20))
        key = pipeline.session_key(msg("x"))
        session = await built.store.get(key)
        assert session is not None and session.compaction_count >= 1
        history = await built.store.history(key)
        assert history[0].role == "summary"


async def test_model_choices_filter_for_autocomplete(app: App) -> None:
    """Autocomplete offers allowed models matching what was typed, prefix matches first, at most the limit."""
    pipeline = app.chat()
    assert pipeline.model_choices(msg(""), "") == ["demo/broken", "demo/echo", "demo/story", "demo/vision"]
    assert pipeline.model_choices(msg(""), "st") == ["demo/story"]
    assert (
        pipeline.model_choices(msg(""), "o") == ["demo/broken", "demo/echo", "demo/story", "demo/vision"][:4]
    )
    assert pipeline.model_choices(msg(""), "", limit=2) == ["demo/broken", "demo/echo"]


async def test_corrupt_auth_file_is_reported_and_kept(app: App, state_dir: Path) -> None:
    """A corrupt auth-profiles.json gets a plain reply; the file is left as it was and a backup is kept."""
    path = state_dir / "agents/main/agent/auth-profiles.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '{"version": 1, "profiles": {"openai:work": {"type": "api_key", "provider": "openai", "key": '
    )
    reply = await say(app, "hello")
    assert reply.kind == "error"
    assert "not a valid auth store" in reply.text and "Traceback" not in reply.text
    assert path.read_text().endswith('"key": ')
    assert list(path.parent.glob("auth-profiles.json.corrupt-*"))


async def test_two_admins_resetting_each_other_do_not_deadlock(state_dir: Path, clock: FakeClock) -> None:
    """Per-user sessions: simultaneous cross resets both complete (no lock-ordering deadlock)."""
    async with running_app(state_dir, clock, config='{session: {scope: "user"}}') as built:
        pipeline = built.chat()
        await pipeline.handle(msg("hi", user="1", user_name="ann", is_group=True))
        await pipeline.handle(msg("hi", user="2", user_name="bob", is_group=True))
        both = asyncio.gather(
            pipeline.handle(msg("/reset @bob", user="1", is_group=True, admin=True)),
            pipeline.handle(msg("/reset @ann", user="2", is_group=True, admin=True)),
        )
        first, second = await asyncio.wait_for(both, timeout=5)
        assert first[0].text == "Session of @bob reset."
        assert second[0].text == "Session of @ann reset."


async def test_a_command_may_follow_blanks_and_a_slash_later_in_the_text_is_chat(app: App) -> None:
    """Only a message whose first non-blank character is ``/`` is a command (the parser is loaded for those)."""
    assert (await say(app, " \t\n/model 3")).text.startswith("Model set to demo/story.")
    chat = await say(app, "what does /model 1 do?")
    assert chat.kind != "error" and not chat.text.startswith("Model set")
    assert "demo/story" in (await say(app, "  /status")).text
