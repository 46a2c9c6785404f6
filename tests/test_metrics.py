"""Prometheus metrics: what one observed turn counts, and the endpoint scraped over loopback."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from bot.errors import AttemptRecord, ConfigError
from bot.failover.engine import AttemptFailed, TurnResult
from bot.failover.reasons import Reason
from bot.metrics import Metrics
from bot.models.refs import ModelRef

REF = ModelRef("openai", "gpt-5.2")


def result(*, fell_back: bool = False, rotated: bool = False, latency_ms: float = 1500.0) -> TurnResult:
    return TurnResult(
        text="hi",
        ref=REF,
        profile_id="openai:a",
        attempts=(),
        fell_back=fell_back,
        rotated=rotated,
        note=None,
        pin=None,
        latency_ms=latency_ms,
    )


def failure(reason: Reason, cooldown_until: int | None) -> AttemptFailed:
    return AttemptFailed(AttemptRecord(str(REF), "openai:b", reason, "x"), cooldown_until)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_turn_counts_its_outcome_attempts_cooldowns_and_latency() -> None:
    """A rotated turn: one rate-limit attempt with a cooldown, one successful attempt, its latency."""
    metrics = Metrics()
    metrics.observe("s", result(rotated=True, latency_ms=1500), [failure(Reason.RATE_LIMIT, 123)], 1500)
    assert sample(metrics, "modelbot_turns_total", outcome="rotated") == 1
    assert sample(metrics, "modelbot_attempts_total", reason="rate_limit") == 1
    assert sample(metrics, "modelbot_attempts_total", reason="ok") == 1
    assert sample(metrics, "modelbot_cooldowns_total", reason="rate_limit") == 1
    assert sample(metrics, "modelbot_turn_latency_seconds_count") == 1
    assert sample(metrics, "modelbot_turn_latency_seconds_sum") == pytest.approx(1.5)
    assert sample(metrics, "modelbot_turn_latency_seconds_bucket", le="2.0") == 1
    assert sample(metrics, "modelbot_turn_latency_seconds_bucket", le="1.0") == 0


@pytest.mark.parametrize(
    ("turn", "failures", "outcome"),
    [
        (result(), [], "ok"),
        (result(fell_back=True), [failure(Reason.SERVER, None)], "fallback"),
        (None, [failure(Reason.AUTH, 5), failure(Reason.SERVER, None)], "failed"),
    ],
)
def test_outcomes(turn: TurnResult | None, failures: list[AttemptFailed], outcome: str) -> None:
    """ok, fallback and failed turns; a server error counts as an attempt but never as a cooldown."""
    metrics = Metrics()
    metrics.observe("s", turn, failures, 0.0 if turn is None else turn.latency_ms)
    assert sample(metrics, "modelbot_turns_total", outcome=outcome) == 1
    assert sample(metrics, "modelbot_cooldowns_total", reason="server") == 0
    assert sample(metrics, "modelbot_attempts_total", reason="ok") == (0 if turn is None else 1)
    assert sample(metrics, "modelbot_turn_latency_seconds_count") == (0 if turn is None else 1)


def test_each_metrics_object_has_its_own_registry() -> None:
    """Two bots (or two tests) never share counters."""
    first, second = Metrics(), Metrics()
    first.observe("s", result(), [], 10.0)
    assert sample(first, "modelbot_turns_total", outcome="ok") == 1
    assert sample(second, "modelbot_turns_total", outcome="ok") == 0


def test_the_endpoint_serves_the_registry_over_loopback() -> None:
    """GET /metrics returns the text format with our counters; close frees the port."""
    metrics = Metrics()
    metrics.observe("s", result(rotated=True), [failure(Reason.RATE_LIMIT, 1)], 800.0)
    server = metrics.serve("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
    finally:
        server.close()
    assert 'modelbot_turns_total{outcome="rotated"} 1.0' in body
    assert 'modelbot_attempts_total{reason="rate_limit"} 1.0' in body
    assert 'modelbot_cooldowns_total{reason="rate_limit"} 1.0' in body
    assert "modelbot_turn_latency_seconds_bucket" in body
    assert "python_gc" not in body  # only our registry, not the library's global one
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0


def test_a_taken_port_is_a_clear_error() -> None:
    """Listening on a port in use raises ConfigError naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"metrics: cannot listen on 127.0.0.1:{port}"):
            Metrics().serve("127.0.0.1", port)


def test_an_undelivered_turn_is_its_own_outcome() -> None:
    """A turn whose answer the chat platform broke off counts as undelivered, never as ok or failed."""
    metrics = Metrics()
    metrics.observe("s", result(), [], 10.0, False)
    metrics.observe("s", None, [], 0.0, False)
    sample = metrics.registry.get_sample_value
    assert sample("modelbot_turns_total", {"outcome": "undelivered"}) == 2.0
    assert sample("modelbot_turns_total", {"outcome": "ok"}) is None
    assert sample("modelbot_turns_total", {"outcome": "failed"}) is None
