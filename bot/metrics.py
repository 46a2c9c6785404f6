"""Prometheus metrics of a running bot, fed by the pipeline's turn observer, on an optional HTTP endpoint.

Each ``Metrics`` has its own ``CollectorRegistry`` (never the library's global one), so two bots in one
process, or two tests, never share counters.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from bot.errors import ConfigError
from bot.failover.engine import AttemptFailed, TurnResult

LATENCY_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
_JOIN_TIMEOUT_S = 5.0


class Metrics:
    """Counters and a histogram of turns; ``observe`` is a ``TurnObserver`` (bot/conversation/turn_log.py)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self.turns = Counter(
            "modelbot_turns",
            "Turns by outcome: ok, rotated (another profile answered), fallback (another model), failed, "
            "undelivered (the chat platform broke off the delivery of the answer).",
            ["outcome"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "modelbot_attempts",
            "Provider attempts by result: ok, or the failure reason.",
            ["reason"],
            registry=self.registry,
        )
        self.cooldowns = Counter(
            "modelbot_cooldowns",
            "Cooldowns and billing disables recorded on auth profiles, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelbot_turn_latency_seconds",
            "Time from the first attempt to the complete answer of a successful turn.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    def observe(
        self,
        session_key: str,
        result: TurnResult | None,
        failures: Sequence[AttemptFailed],
        latency_ms: float,
        delivered: bool = True,
    ) -> None:
        """Count one finished turn: its outcome, every attempt, the cooldowns it caused, its latency."""
        for failure in failures:
            reason = str(failure.record.reason) if failure.record.reason else "skipped"
            self.attempts.labels(reason=reason).inc()
            if failure.cooldown_until is not None:
                self.cooldowns.labels(reason=reason).inc()
        if result is None:
            self.turns.labels(outcome="failed" if delivered else "undelivered").inc()
            return
        self.attempts.labels(reason="ok").inc()
        outcome = "fallback" if result.fell_back else "rotated" if result.rotated else "ok"
        if not delivered:
            outcome = "undelivered"
        self.turns.labels(outcome=outcome).inc()
        self.latency.observe(latency_ms / 1000)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread until ``close``."""
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError("config", "metrics", f"cannot listen on {host}:{port} ({reason})") from None
        return MetricsServer(server, thread)


class MetricsServer:
    """The running endpoint; ``close`` stops it and frees the port."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_JOIN_TIMEOUT_S)
