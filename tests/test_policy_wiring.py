"""The config drives the rules via build_app: auth.order before auth.profiles, auth.cooldowns (docs/failover.md §4–§6)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.auth.rotation import order_profiles
from bot.auth.types import AuthProfiles, Credential
from bot.chat import Incoming
from bot.clock import HOUR_MS, MINUTE_MS
from bot.failover.reasons import Reason
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock
from tests.fakes.scripted import Fail, ScriptedClient

PRIMARY = "openai/gpt-5.2"

# Every auth.cooldowns key away from its default (5, {}, 24, 24), so a default policy shows at once.
COOLDOWNS: dict[str, Any] = {
    "billingBackoffHours": 2,
    "billingBackoffHoursByProvider": {"anthropic": 0.5},
    "billingMaxHours": 5,
    "failureWindowHours": 3,
}


def config(auth: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Two agents on openai; ``auth`` defaults to the non-default cooldowns above."""
    return {
        "agents": {
            "defaults": {"model": {"primary": PRIMARY}},
            "list": [{"id": "main", "default": True}, {"id": "work"}],
        },
        "auth": dict(auth) if auth is not None else {"cooldowns": COOLDOWNS},
    }


def running(
    state_dir: Path, clock: FakeClock, cfg: Mapping[str, Any], profiles: Sequence[str] = ()
) -> AbstractAsyncContextManager[App]:
    """The app on ``cfg`` with an api-key credential for each of ``profiles`` in both agents' stores."""
    creds = {pid: Credential(type="api_key", provider=pid.split(":")[0], secret="sk-x") for pid in profiles}
    return running_app(state_dir, clock, config=cfg, profiles=creds, agents=("main", "work"))


def usage(state_dir: Path, profile_id: str, agent_id: str = "main") -> dict[str, Any]:
    """One profile's ``usageStats`` as written to the agent's auth-profiles.json."""
    path = state_dir / "agents" / agent_id / "agent" / "auth-profiles.json"
    stats: dict[str, Any] = json.loads(path.read_text())["usageStats"][profile_id]
    return stats


async def fail(
    app: App, profile_id: str, reason: Reason, clock: FakeClock, agent_id: str = "main"
) -> int | None:
    """A failure of a call to the primary model (rate limits cool that (profile, model) pair, docs/failover.md §6)."""
    return await app.backend(agent_id).record_failure(
        profile_id, PRIMARY.split("/")[1], reason, now_ms=clock.now_ms(), retry_after_ms=None
    )


# -- docs/failover.md §4: the base list --------------------------------------------------------------


@pytest.mark.parametrize(
    ("store_order", "config_order", "config_profiles", "expected"),
    [
        pytest.param(["a:3", "a:1"], ["a:2", "a:1"], ["a:1", "a:4"], ["a:3", "a:1"], id="store-order"),
        pytest.param(None, ["a:2", "a:1"], ["a:1", "a:4"], ["a:2", "a:1"], id="config-order"),
        pytest.param(None, None, ["a:4", "a:1"], ["a:1", "a:4"], id="config-profiles"),
        pytest.param(None, None, [], ["a:1", "a:2", "a:3", "a:4"], id="every-stored"),
    ],
)
def test_base_list_precedence(
    store_order: list[str] | None,
    config_order: list[str] | None,
    config_profiles: list[str],
    expected: list[str],
) -> None:
    """Store order, else ``auth.order``, else ``auth.profiles`` (round robin), else every stored profile."""
    doc = AuthProfiles(
        profiles={
            pid: Credential(type="api_key", provider="a", secret="sk-x")
            for pid in ("a:1", "a:2", "a:3", "a:4")
        },
        order={"a": store_order} if store_order is not None else {},
    )
    got = order_profiles(
        doc, "a", now_ms=FakeClock().now_ms(), config_order=config_order, config_profile_ids=config_profiles
    )
    assert got == expected


async def test_auth_order_beats_auth_profiles_in_the_app(state_dir: Path, clock: FakeClock) -> None:
    """With both set, ``auth.order`` is the base list (its ids, its order), not ``auth.profiles``."""
    auth = {
        "order": {"openai": ["openai:b", "openai:a"]},
        "profiles": {"openai:c": {"provider": "openai"}, "openai:a": {"provider": "openai"}},
    }
    async with running(state_dir, clock, config(auth), ["openai:a", "openai:b", "openai:c"]) as app:
        assert app.backend("main").rotation("openai", clock.now_ms()) == ["openai:b", "openai:a"]
        scripted = ScriptedClient()
        app.clients["openai-completions"] = scripted
        replies = await app.chat().handle(
            Incoming(platform="telegram", chat_id="c1", user_id="u1", text="hi")
        )
        assert [r.profile for r in replies] == ["openai:b"]
        assert scripted.calls == [(PRIMARY, "openai:b")]


# -- docs/failover.md §5: auth.cooldowns from the config file ------------------------------------------


@pytest.mark.parametrize("agent_id", ["main", "work"])
async def test_billing_disable_uses_the_configured_backoff_and_cap(
    state_dir: Path, clock: FakeClock, agent_id: str
) -> None:
    """billingBackoffHours=2, billingMaxHours=5: billing disables 2h, 4h, then 5h (capped), in any agent."""
    # A window longer than the disables, so that each failure after a disable has ended still counts.
    cooldowns = {**COOLDOWNS, "failureWindowHours": 12}
    async with running(state_dir, clock, config({"cooldowns": cooldowns}), ["openai:a"]) as app:
        for n, hours in enumerate([2, 4, 5, 5], start=1):
            until = await fail(app, "openai:a", Reason.BILLING, clock, agent_id)
            stats = usage(state_dir, "openai:a", agent_id)
            assert stats["disabledUntil"] == until == clock.now_ms() + hours * HOUR_MS
            assert stats["disabledReason"] == "billing"
            assert stats["failureCounts"] == {"billing": n}
            clock.advance(hours=1)  # still disabled: the same incident, never escalated (docs/failover.md §6)
            assert await fail(app, "openai:a", Reason.BILLING, clock, agent_id) == until
            assert usage(state_dir, "openai:a", agent_id)["failureCounts"] == {"billing": n}
            clock.set(until)  # the disable has ended: the next failure escalates


async def test_billing_backoff_by_provider_replaces_the_base(state_dir: Path, clock: FakeClock) -> None:
    """billingBackoffHoursByProvider.anthropic=0.5: anthropic starts at 30m and doubles; openai keeps 2h."""
    cooldowns = {**COOLDOWNS, "failureWindowHours": 12}
    async with running(
        state_dir, clock, config({"cooldowns": cooldowns}), ["openai:a", "anthropic:a"]
    ) as app:
        for minutes in [30, 60, 120, 240, 300]:  # 0.5h × 2^(n−1), capped at billingMaxHours=5
            await fail(app, "anthropic:a", Reason.BILLING, clock)
            assert usage(state_dir, "anthropic:a")["disabledUntil"] == clock.now_ms() + minutes * MINUTE_MS
            clock.advance(minutes=minutes)
        await fail(app, "openai:a", Reason.BILLING, clock)
        assert usage(state_dir, "openai:a")["disabledUntil"] == clock.now_ms() + 2 * HOUR_MS


async def test_failure_window_resets_counters_after_the_configured_hours(
    state_dir: Path, clock: FakeClock
) -> None:
    """failureWindowHours=3: a failure 3h after the last one starts the counters over; sooner, they grow."""
    async with running(state_dir, clock, config(), ["openai:a", "openai:b"]) as app:
        await fail(app, "openai:a", Reason.BILLING, clock)
        await fail(app, "openai:b", Reason.RATE_LIMIT, clock)
        clock.advance(minutes=179)  # just inside the 3h window
        await fail(app, "openai:a", Reason.BILLING, clock)
        await fail(app, "openai:b", Reason.RATE_LIMIT, clock)
        assert usage(state_dir, "openai:a")["failureCounts"] == {"billing": 2}
        assert usage(state_dir, "openai:b")["models"]["gpt-5.2"]["errorCount"] == 2
        clock.advance(hours=4)  # the 4h disable has ended, more than a whole window after the last failure
        await fail(app, "openai:a", Reason.BILLING, clock)
        await fail(app, "openai:b", Reason.RATE_LIMIT, clock)
        billing, rate_limit = usage(state_dir, "openai:a"), usage(state_dir, "openai:b")["models"]["gpt-5.2"]
        assert billing["failureCounts"] == {"billing": 1}
        assert billing["disabledUntil"] == clock.now_ms() + 2 * HOUR_MS
        assert rate_limit == {
            "cooldownUntil": clock.now_ms() + MINUTE_MS,
            "errorCount": 1,
            "lastFailureAt": clock.now_ms(),
        }


async def test_a_billing_failure_in_a_turn_disables_for_the_configured_hours(
    state_dir: Path, clock: FakeClock
) -> None:
    """A real turn: billing moves to the next profile and disables the first for billingBackoffHours."""
    auth = {"order": {"openai": ["openai:a", "openai:b"]}, "cooldowns": COOLDOWNS}
    async with running(state_dir, clock, config(auth), ["openai:a", "openai:b"]) as app:
        scripted = ScriptedClient()
        scripted.script(PRIMARY, "openai:a", Fail(Reason.BILLING))
        app.clients["openai-completions"] = scripted
        replies = await app.chat().handle(
            Incoming(platform="telegram", chat_id="c1", user_id="u1", text="hi")
        )
        assert [r.profile for r in replies] == ["openai:b"]
    stats = usage(state_dir, "openai:a")
    assert stats["disabledUntil"] == clock.now_ms() + 2 * HOUR_MS
    assert stats["disabledReason"] == "billing"


# -- docs/failover.md §6: auth.cooldowns.scope and backoffMinutes from the config file -------------------


async def test_the_configured_ladder_drives_pair_cooldowns(state_dir: Path, clock: FakeClock) -> None:
    """backoffMinutes [2, 10]: a rate limit rests the (profile, model) pair 2 minutes, then 10, then 10."""
    auth = {"cooldowns": {**COOLDOWNS, "backoffMinutes": [2, 10]}}
    async with running(state_dir, clock, config(auth), ["openai:a"]) as app:
        for n, minutes in enumerate([2, 10, 10], start=1):
            until = await fail(app, "openai:a", Reason.RATE_LIMIT, clock)
            pair = usage(state_dir, "openai:a")["models"]["gpt-5.2"]
            assert pair["cooldownUntil"] == until == clock.now_ms() + minutes * MINUTE_MS
            assert pair["errorCount"] == n
            clock.advance(minutes=minutes)


@pytest.mark.parametrize(("scope", "answers_mini"), [("profile", "openai:b"), ("model", "openai:a")])
async def test_scope_decides_what_a_rate_limit_in_a_turn_rests(
    state_dir: Path, clock: FakeClock, scope: str, answers_mini: str
) -> None:
    """scope "profile": a 429 in a real turn on gpt-5.2 rests openai:a for every model, as the seed did;
    scope "model" (the default) leaves it usable for gpt-5-mini."""
    auth = {"order": {"openai": ["openai:a", "openai:b"]}, "cooldowns": {"scope": scope}}
    async with running(state_dir, clock, config(auth), ["openai:a", "openai:b"]) as app:
        scripted = ScriptedClient()
        scripted.script(PRIMARY, "openai:a", Fail(Reason.RATE_LIMIT))
        app.clients["openai-completions"] = scripted
        chat = app.chat()

        async def say(text: str) -> str | None:
            [reply] = await chat.handle(Incoming(platform="telegram", chat_id="c1", user_id="u1", text=text))
            return reply.profile

        assert await say("hi") == "openai:b"
        await say("/model openai/gpt-5-mini")
        await say("/new")  # drops the auto pin on openai:b
        assert await say("hi") == answers_mini
