"""The one place where a provider failure (status, headers, body, transport) becomes a classified reason."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from bot.errors import ProviderError
from bot.failover.reasons import Reason
from bot.redaction import mask_key_shaped

Transport = Literal["timeout", "connection", "cancelled", "stream_cut"]

# A provider cannot park a profile for longer than a day, whatever its Retry-After says.
MAX_RETRY_AFTER_MS = 24 * 3_600_000
_MAX_DETAIL = 160


@dataclass(frozen=True)
class FailureSignal:
    """Everything a client saw of one failed call, before anyone interprets it."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""  # the raw body text, JSON or not
    transport: Transport | None = None
    message: str = ""  # the client's own words (an in-stream error's message, a stop reason)


# Exact ``type``/``code``/``status``/``reason`` values of the providers' JSON errors. They win over the
# message text, which wins over the bare HTTP status: OpenAI's ``insufficient_quota`` is a 429 about billing,
# Gemini's ``RESOURCE_EXHAUSTED`` mentions billing in its text but is a per-minute limit.
# fmt: off
_CODE_GROUPS: tuple[tuple[Reason, tuple[str, ...]], ...] = (
    (Reason.BILLING, ("insufficient_quota", "insufficient_credits", "billing_error",
                      "billing_hard_limit_reached", "billing_not_active", "payment_required")),
    (Reason.RATE_LIMIT, ("rate_limit_error", "rate_limit_exceeded", "overloaded_error", "resource_exhausted",
                         "too_many_requests")),
    (Reason.AUTH, ("authentication_error", "permission_error", "invalid_api_key", "api_key_invalid",
                   "api_key_expired", "unauthenticated", "permission_denied",
                   "auth_error")),  # LiteLLM proxy, whose bad-key answers may be 400s
    (Reason.CONTEXT_OVERFLOW, ("context_length_exceeded",
                               "exceed_context_size_error")),  # llama.cpp server
    (Reason.CONTENT_FILTER, ("content_filter", "content_policy_violation", "invalid_prompt")),
    (Reason.BAD_REQUEST, ("model_not_found",)),
    (Reason.TIMEOUT, ("timeout_error", "deadline_exceeded")),
)

# Message texts, checked in this order when no exact code decided: the most specific first.
_TEXTS: tuple[tuple[Reason, tuple[str, ...]], ...] = (
    # OpenAI, Azure, OpenRouter, vLLM, DeepSeek, Mistral: "maximum context length"; Anthropic: "prompt is too
    # long", "exceed context limit"; LiteLLM: ContextWindowExceededError; llama.cpp: "exceeds the available
    # context size"; Ollama, LM Studio: "exceeds (the) context length"; xAI: "maximum prompt length"; Gemini:
    # "exceeds the maximum number of tokens"; Bedrock: "input is too long".
    (Reason.CONTEXT_OVERFLOW, ("context_length_exceeded", "maximum context length", "prompt is too long",
                               "input is too long", "exceed context limit", "exceeds the context window",
                               "context_window_exceeded", "contextwindowexceeded", "context window exceeded",
                               "exceeds the maximum number of tokens", "exceeds the available context size",
                               "exceeds the context length", "exceeds context length", "maximum prompt length")),
    (Reason.CONTENT_FILTER, ("content_filter", "content filter", "content_policy", "content management policy",
                             "safety system", "blocked for safety", "blockreason", "requires moderation",
                             "was flagged")),
    (Reason.BILLING, ("insufficient_quota", "insufficient credits", "insufficient balance", "credit balance",
                      "requires more credits", "exceeded your current quota", "payment required", "billing")),
    (Reason.AUTH, ("invalid x-api-key", "invalid api key", "incorrect api key", "api key not valid",
                   "invalid_api_key", "invalid authentication", "invalid bearer token", "authentication_error",
                   "permission_error", "no auth credentials", "oauth token has expired", "token has expired",
                   "token expired", "key has expired", "has been revoked",
                   "only authorized for use with claude code", "unauthorized",
                   # gateways that answer a bad key with a 400 (LiteLLM, Azure behind it, Gemini, HF-style)
                   "authentication error", "malformed api key", "api key expired", "invalid subscription key",
                   "invalid credentials", "invalid proxy server token")),
    (Reason.RATE_LIMIT, ("rate limit", "rate_limit", "ratelimit", "too many requests", "overloaded",
                         "resource_exhausted", "resource exhausted", "quota", "usage limit", "at capacity",
                         "over capacity")),
)
# fmt: on
_CODES: dict[str, Reason] = {code: reason for reason, codes in _CODE_GROUPS for code in codes}

_TIMEOUT_TEXTS = ("timed out", "timeout", "deadline exceeded", "connection reset")

_TRANSPORT: dict[Transport, tuple[Reason, str]] = {
    "timeout": (Reason.TIMEOUT, "The provider did not answer in time."),
    "connection": (Reason.TIMEOUT, "Could not reach the provider."),
    "stream_cut": (Reason.TIMEOUT, "The provider's stream ended before the answer was complete."),
    "cancelled": (Reason.CANCELLED, "Cancelled."),
}

_DURATION_PART_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|h)(?![a-z])", re.IGNORECASE
)
_RETRY_TEXT_RE = re.compile(
    r"(?:try again|retry)\s+(?:in|after)\s+((?:\d+(?:\.\d+)?\s*[a-z]+\s*)+)", re.IGNORECASE
)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def classify(signal: FailureSignal, *, now_ms: int | None = None) -> ProviderError:
    """The classified error for one failed call (docs/failover.md §5); ``now_ms`` only matters for HTTP-date Retry-After."""
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    retry_after_ms = _retry_after_ms(signal, now_ms)
    if signal.transport is not None:
        reason, text = _TRANSPORT[signal.transport]
        return ProviderError(reason, text, status=signal.status, retry_after_ms=retry_after_ms)
    parsed = _parse_json(signal.body)
    reason = _reason(signal, parsed)
    return ProviderError(
        reason, _message(reason, signal, parsed), status=_status(signal), retry_after_ms=retry_after_ms
    )


def _status(signal: FailureSignal) -> int | None:
    # An error event inside a 200 stream carries the stream's status, which says nothing about the error.
    if signal.status is None or signal.status < 400:
        return None
    return signal.status


def _reason(signal: FailureSignal, parsed: object) -> Reason:
    for code in _codes(parsed):
        if code in _CODES:
            return _CODES[code]
    text = f"{signal.body}\n{signal.message}".lower()
    for reason, needles in _TEXTS:
        if any(needle in text for needle in needles):
            return reason
    status = _status(signal)
    if (status is None or status >= 500) and any(needle in text for needle in _TIMEOUT_TEXTS):
        return Reason.TIMEOUT
    return _by_status(status)


def _by_status(status: int | None) -> Reason:
    if status is None:
        return Reason.SERVER  # an error event with nothing recognisable in it
    if status in (401, 403):
        return Reason.AUTH
    if status == 402:
        return Reason.BILLING
    if status in (408, 504):
        return Reason.TIMEOUT
    if status in (429, 529):
        return Reason.RATE_LIMIT
    if status >= 500:
        return Reason.SERVER
    return Reason.BAD_REQUEST


def _parse_json(body: str) -> object:
    try:
        return json.loads(body) if body.strip() else None
    except ValueError:
        return None


def _walk(value: object) -> Iterator[tuple[str, object]]:
    """Every (key, value) pair of a parsed JSON document, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key), item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _codes(parsed: object) -> Iterator[str]:
    for key, value in _walk(parsed):
        if key in ("type", "code", "status", "reason") and isinstance(value, str):
            yield value.lower()


def _message(reason: Reason, signal: FailureSignal, parsed: object) -> str:
    where = f" (HTTP {signal.status})" if _status(signal) is not None else ""
    detail = _detail(signal, parsed)
    return f"{reason.label.capitalize()}{where}" + (f": {detail}" if detail else ".")


def _detail(signal: FailureSignal, parsed: object) -> str:
    """The provider's own error message, shortened and with anything key-like masked."""
    text = next((v for k, v in _walk(parsed) if k == "message" and isinstance(v, str) and v.strip()), "")
    if not text and parsed is None and not signal.body.lstrip().startswith("<"):
        text = signal.body  # plain text bodies; HTML error pages say nothing useful
    # Key shapes here; the credentials the process holds are cut by the engine's redactor (bot.redaction).
    text = mask_key_shaped(" ".join(text.split()))
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1].rstrip() + "…"


def _retry_after_ms(signal: FailureSignal, now_ms: int) -> int | None:
    headers = {name.lower(): value.strip() for name, value in signal.headers.items()}
    found = _number(headers.get("retry-after-ms"), 1)
    if found is None and "retry-after" in headers:
        found = _number(headers["retry-after"], 1000)
        if found is None:
            found = _http_date_ms(headers["retry-after"], now_ms)
    if found is None:
        found = _body_retry_ms(_parse_json(signal.body))
    if found is None:
        match = _RETRY_TEXT_RE.search(f"{signal.body}\n{signal.message}")
        found = _duration_ms(match.group(1)) if match else None
    if found is None:
        return None
    return max(0, min(MAX_RETRY_AFTER_MS, round(found)))


def _body_retry_ms(parsed: object) -> float | None:
    for key, value in _walk(parsed):
        lowered = key.lower().replace("-", "_")
        if lowered == "retry_after_ms":
            return _number(value, 1)
        if lowered == "retry_after":
            return _number(value, 1000)
        if lowered == "retrydelay" and isinstance(value, str):  # Gemini's RetryInfo: "32s", "1.5s"
            return _duration_ms(value)
    return None


def _number(value: object, unit_ms: float) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        return None
    return number * unit_ms if math.isfinite(number) and number >= 0 else None


def _http_date_ms(value: str, now_ms: int) -> float | None:
    # email.utils (sockets, charsets …) only for a Retry-After given as a date: not at start-up.
    from email.utils import parsedate_to_datetime  # noqa: PLC0415

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() * 1000 - now_ms)


def _duration_ms(text: str) -> float | None:
    """Go-style and spoken durations: "32s", "1.5s", "6m0s", "120ms", "20 seconds", "1 minute"."""
    total = 0.0
    found = False
    for amount, raw_unit in _DURATION_PART_RE.findall(text):
        unit = raw_unit.lower()
        key = "ms" if unit.startswith("milli") or unit == "ms" else unit[0]
        total += float(amount) * _UNIT_MS[key]
        found = True
    return total if found else None
