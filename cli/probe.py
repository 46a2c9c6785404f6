"""``models status --probe``: one tiny request per auth profile, straight through the provider clients.

Probes go around the engine on purpose: a failing probe is reported, never booked as a cooldown or a
billing disable (that bookkeeping lives in the engine's failure path, which a probe never enters).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bot.auth.resolver import CredentialResolver
from bot.clock import Clock
from bot.config.schema import Config
from bot.errors import ModelbotError, ProviderError
from bot.failover.reasons import Reason
from bot.models.refs import ModelRef
from bot.providers.base import ChatMessage, ChatRequest, ProviderClient
from bot.providers.registry import endpoint_for
from bot.redaction import mask_key_shaped

PROBE_PROMPT = "Reply with the single word OK."
PROBE_MAX_TOKENS = 16
_DETAIL_MAX = 160


@dataclass(frozen=True)
class ProbeResult:
    """How one profile answered: ``reason`` is None on success."""

    provider: str
    profile_id: str
    model: str
    reason: Reason | None
    latency_ms: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None

    def as_json(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "profile": self.profile_id,
            "model": self.model,
            "ok": self.ok,
            "reason": None if self.reason is None else self.reason.value,
            "latencyMs": round(self.latency_ms, 1),
            "detail": self.detail,
        }


async def probe_profile(
    resolver: CredentialResolver,
    clients: Mapping[str, ProviderClient],
    config: Config,
    ref: ModelRef,
    profile_id: str,
    *,
    clock: Clock,
    timeout_s: float,
    redact: Callable[[str], str] = mask_key_shaped,
) -> ProbeResult:
    """Send one short request with this profile; every outcome is classified, none is recorded.

    ``redact`` cleans the provider's words (a 401 may quote the key it was given) before they are kept.
    """
    started = time.perf_counter()
    reason: Reason | None = None
    detail = ""
    try:
        auth = await resolver.resolve(profile_id, now_ms=clock.now_ms())
        endpoint = endpoint_for(ref.provider, config, timeout_s=timeout_s)
        client = clients.get(endpoint.api)
        if client is None:
            raise ProviderError(Reason.BAD_REQUEST, f'No client for API mode "{endpoint.api}".')
        request = ChatRequest(
            model=ref.model, messages=[ChatMessage("user", PROBE_PROMPT)], max_tokens=PROBE_MAX_TOKENS
        )
        stream = client.stream(endpoint, auth, request)
        try:
            async with asyncio.timeout(timeout_s):
                text = "".join([delta async for delta in stream])
        finally:
            aclose = getattr(stream, "aclose", None)  # a generator cut short by the timeout closes now
            if aclose is not None:
                await aclose()
        if not text.strip():
            reason, detail = Reason.EMPTY, "The model sent an empty reply."
    except ProviderError as exc:
        reason, detail = exc.reason, str(exc)
    except TimeoutError:
        reason, detail = Reason.TIMEOUT, f"No answer within {timeout_s:g}s."
    except ModelbotError as exc:
        reason, detail = Reason.BAD_REQUEST, str(exc)
    latency = (time.perf_counter() - started) * 1000
    return ProbeResult(ref.provider, profile_id, str(ref), reason, latency, redact(detail)[:_DETAIL_MAX])


async def probe_all(
    resolver: CredentialResolver,
    clients: Mapping[str, ProviderClient],
    config: Config,
    targets: Sequence[tuple[ModelRef, str]],
    *,
    clock: Clock,
    timeout_s: float,
    redact: Callable[[str], str] = mask_key_shaped,
) -> list[ProbeResult]:
    """Probe every (model, profile) pair concurrently; results in the order given."""
    return list(
        await asyncio.gather(
            *(
                probe_profile(
                    resolver, clients, config, ref, pid, clock=clock, timeout_s=timeout_s, redact=redact
                )
                for ref, pid in targets
            )
        )
    )
