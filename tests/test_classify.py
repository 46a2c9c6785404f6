"""The failure classifier against real error bodies of OpenAI, Anthropic, OpenRouter and Gemini."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from bot.failover.classify import MAX_RETRY_AFTER_MS, FailureSignal, classify
from bot.failover.reasons import Reason

NOW_MS = 1_700_000_000_000


def openai(message: str, type: str, code: str | None = None, param: str | None = None) -> str:
    return json.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def anthropic(type: str, message: str) -> str:
    return json.dumps({"type": "error", "error": {"type": type, "message": message}})


def openrouter(code: int, message: str, **metadata: Any) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata:
        error["metadata"] = metadata
    return json.dumps({"error": error})


def gemini(code: int, status: str, message: str, *details: dict[str, Any], wrap: bool = False) -> str:
    error = {"error": {"code": code, "message": message, "status": status, "details": list(details)}}
    return json.dumps([error] if wrap else error)  # the OpenAI-compatible endpoint wraps it in a list


GEMINI_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: "
    "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10, model: "
    "gemini-2.5-flash\nPlease retry in 32.49s."
)
RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "32s"}
QUOTA_FAILURE = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}],
}
KEY_INVALID = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "API_KEY_INVALID",
    "domain": "googleapis.com",
}

ROWS = [
    # --- OpenAI ---
    pytest.param(
        FailureSignal(
            status=401,
            body=openai(
                "Incorrect API key provided: sk-proj-********************abcd. You can find your API key "
                "at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            ),
        ),
        Reason.AUTH,
        id="openai-401-invalid-key",
    ),
    pytest.param(
        FailureSignal(
            status=429,
            body=openai(
                "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes.",
                "insufficient_quota",
                "insufficient_quota",
            ),
        ),
        Reason.BILLING,
        id="openai-429-insufficient-quota-is-billing",
    ),
    pytest.param(
        FailureSignal(
            status=429,
            headers={"retry-after-ms": "120", "x-ratelimit-remaining-requests": "0"},
            body=openai(
                "Rate limit reached for gpt-4o in organization org-abc on requests per min (RPM): Limit 500, "
                "Used 500, Requested 1. Please try again in 120ms.",
                "requests",
                "rate_limit_exceeded",
            ),
        ),
        Reason.RATE_LIMIT,
        id="openai-429-rpm",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=openai(
                "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "130511 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
        ),
        Reason.CONTEXT_OVERFLOW,
        id="openai-400-context-length",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=openai(
                "Your request was rejected as a result of our safety system.",
                "invalid_request_error",
                "content_policy_violation",
            ),
        ),
        Reason.CONTENT_FILTER,
        id="openai-400-content-policy",
    ),
    pytest.param(
        FailureSignal(
            status=404,
            body=openai(
                "The model `gpt-9` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                "model",
            ),
        ),
        Reason.BAD_REQUEST,
        id="openai-404-model-not-found",
    ),
    pytest.param(
        FailureSignal(
            status=500,
            body=openai(
                "The server had an error while processing your request. Sorry about that!", "server_error"
            ),
        ),
        Reason.SERVER,
        id="openai-500",
    ),
    pytest.param(
        FailureSignal(
            status=503,
            body=openai("The engine is currently overloaded, please try again later", "server_error"),
        ),
        Reason.RATE_LIMIT,
        id="openai-503-overloaded",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=openai(
                "The response was filtered due to the prompt triggering Azure OpenAI's content management "
                "policy. Please modify your prompt and retry.",
                "invalid_request_error",
                "content_filter",
                "prompt",
            ),
        ),
        Reason.CONTENT_FILTER,
        id="azure-400-content-filter",
    ),
    # --- Anthropic ---
    pytest.param(
        FailureSignal(status=401, body=anthropic("authentication_error", "invalid x-api-key")),
        Reason.AUTH,
        id="anthropic-401",
    ),
    pytest.param(
        FailureSignal(
            status=401,
            body=anthropic(
                "authentication_error",
                "OAuth token has expired. Please obtain a new token or refresh your existing token.",
            ),
        ),
        Reason.AUTH,
        id="anthropic-401-oauth-expired",
    ),
    pytest.param(
        FailureSignal(
            status=403,
            body=anthropic(
                "permission_error", "Your API key does not have permission to use the specified resource."
            ),
        ),
        Reason.AUTH,
        id="anthropic-403",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=anthropic(
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
                "to upgrade or purchase credits.",
            ),
        ),
        Reason.BILLING,
        id="anthropic-400-credit-balance",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=anthropic("invalid_request_error", "prompt is too long: 210512 tokens > 200000 maximum"),
        ),
        Reason.CONTEXT_OVERFLOW,
        id="anthropic-400-prompt-too-long",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=anthropic(
                "invalid_request_error",
                "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000, decrease input "
                "length or `max_tokens` and try again",
            ),
        ),
        Reason.CONTEXT_OVERFLOW,
        id="anthropic-400-exceed-context-limit",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=anthropic(
                "invalid_request_error",
                "This credential is only authorized for use with Claude Code and cannot be used for other "
                "API requests.",
            ),
        ),
        Reason.AUTH,
        id="anthropic-400-setup-token-not-allowed",
    ),
    pytest.param(
        FailureSignal(status=404, body=anthropic("not_found_error", "model: claude-sonnet-9 was not found")),
        Reason.BAD_REQUEST,
        id="anthropic-404",
    ),
    pytest.param(
        FailureSignal(
            status=429,
            headers={"retry-after": "17", "anthropic-ratelimit-requests-remaining": "0"},
            body=anthropic(
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 50 requests per minute.",
            ),
        ),
        Reason.RATE_LIMIT,
        id="anthropic-429",
    ),
    pytest.param(
        FailureSignal(status=500, body=anthropic("api_error", "Internal server error")),
        Reason.SERVER,
        id="anthropic-500",
    ),
    pytest.param(
        FailureSignal(status=529, body=anthropic("overloaded_error", "Overloaded")),
        Reason.RATE_LIMIT,
        id="anthropic-529",
    ),
    pytest.param(
        FailureSignal(status=200, body=anthropic("overloaded_error", "Overloaded")),
        Reason.RATE_LIMIT,
        id="anthropic-error-event-in-200-stream",
    ),
    pytest.param(
        FailureSignal(status=504, body=anthropic("timeout_error", "Request timed out")),
        Reason.TIMEOUT,
        id="anthropic-504",
    ),
    # --- OpenRouter ---
    pytest.param(
        FailureSignal(
            status=402,
            body=openrouter(
                402, "Insufficient credits. Add more using https://openrouter.ai/settings/credits"
            ),
        ),
        Reason.BILLING,
        id="openrouter-402",
    ),
    pytest.param(
        FailureSignal(
            status=402,
            body=openrouter(
                402,
                "This request requires more credits, or fewer max_tokens. You requested up to 4096 tokens, "
                "but can only afford 222. To increase, visit https://openrouter.ai/settings/credits",
            ),
        ),
        Reason.BILLING,
        id="openrouter-402-fewer-max-tokens",
    ),
    pytest.param(
        FailureSignal(status=401, body=openrouter(401, "No auth credentials found")),
        Reason.AUTH,
        id="openrouter-401",
    ),
    pytest.param(
        FailureSignal(
            status=403,
            body=openrouter(
                403,
                "anthropic/claude-sonnet-4.5 requires moderation on OpenAI. Your input was flagged for "
                '"violence".',
                reasons=["violence"],
                flagged_input="…",
            ),
        ),
        Reason.CONTENT_FILTER,
        id="openrouter-403-moderation",
    ),
    pytest.param(
        FailureSignal(
            status=429,
            body=openrouter(
                429,
                "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests "
                "per day",
            ),
        ),
        Reason.RATE_LIMIT,
        id="openrouter-429-free-per-day",
    ),
    pytest.param(
        FailureSignal(status=502, body=openrouter(502, "Provider returned error", provider_name="Chutes")),
        Reason.SERVER,
        id="openrouter-502",
    ),
    pytest.param(
        FailureSignal(status=408, body=openrouter(408, "Timed out")),
        Reason.TIMEOUT,
        id="openrouter-408",
    ),
    # --- Gemini ---
    pytest.param(
        FailureSignal(
            status=429,
            body=gemini(429, "RESOURCE_EXHAUSTED", GEMINI_QUOTA, QUOTA_FAILURE, RETRY_INFO, wrap=True),
        ),
        Reason.RATE_LIMIT,
        id="gemini-429-quota-is-a-rate-limit",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=gemini(
                400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", KEY_INVALID
            ),
        ),
        Reason.AUTH,
        id="gemini-400-bad-key",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=gemini(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ),
        ),
        Reason.CONTEXT_OVERFLOW,
        id="gemini-400-too-many-tokens",
    ),
    pytest.param(
        FailureSignal(
            status=400,
            body=gemini(400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
        ),
        Reason.BAD_REQUEST,
        id="gemini-400-location",
    ),
    pytest.param(
        FailureSignal(
            status=503, body=gemini(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        ),
        Reason.RATE_LIMIT,
        id="gemini-503-overloaded",
    ),
    pytest.param(
        FailureSignal(
            status=500,
            body=gemini(500, "INTERNAL", "An internal error has occurred. Please retry or report it."),
        ),
        Reason.SERVER,
        id="gemini-500",
    ),
    pytest.param(
        FailureSignal(
            status=504,
            body=gemini(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
        ),
        Reason.TIMEOUT,
        id="gemini-504",
    ),
    pytest.param(
        FailureSignal(body=json.dumps({"promptFeedback": {"blockReason": "SAFETY"}})),
        Reason.CONTENT_FILTER,
        id="gemini-prompt-blocked",
    ),
    # --- bare statuses, plain texts and transports ---
    pytest.param(FailureSignal(status=402, body=""), Reason.BILLING, id="bare-402"),
    pytest.param(FailureSignal(status=403, body="Forbidden"), Reason.AUTH, id="bare-403"),
    pytest.param(FailureSignal(status=422, body="Unprocessable Entity"), Reason.BAD_REQUEST, id="bare-422"),
    pytest.param(
        FailureSignal(status=502, body="<html><body><h1>502 Bad Gateway</h1></body></html>"),
        Reason.SERVER,
        id="html-502",
    ),
    pytest.param(
        FailureSignal(
            status=503,
            body="upstream connect error or disconnect/reset before headers. reset reason: connection timeout",
        ),
        Reason.TIMEOUT,
        id="envoy-503-timeout",
    ),
    pytest.param(FailureSignal(transport="timeout"), Reason.TIMEOUT, id="transport-timeout"),
    pytest.param(FailureSignal(transport="connection"), Reason.TIMEOUT, id="transport-connection"),
    pytest.param(FailureSignal(transport="stream_cut"), Reason.TIMEOUT, id="transport-stream-cut"),
    pytest.param(FailureSignal(transport="cancelled"), Reason.CANCELLED, id="transport-cancelled"),
    pytest.param(
        FailureSignal(message="finish_reason: content_filter"),
        Reason.CONTENT_FILTER,
        id="finish-content-filter",
    ),
]


@pytest.mark.parametrize(("signal", "reason"), ROWS)
def test_real_error_bodies_classify_to_the_spec_reason(signal: FailureSignal, reason: Reason) -> None:
    """Each real-world failure lands on the reason docs/failover.md §5 gives it."""
    assert classify(signal, now_ms=NOW_MS).reason is reason


# Texts alone decide here: a status that would say otherwise (400 ⇒ bad_request, none or 5xx ⇒ server) and
# no error code the table knows, as in a proxy's plain body or an error event inside a 200 stream.
TEXT_ROWS = [
    pytest.param(400, "Insufficient credits. Add more at https://openrouter.ai/settings", Reason.BILLING),
    pytest.param(400, "Your credit balance is too low to access the API.", Reason.BILLING),
    pytest.param(400, "This request requires more credits, or fewer max_tokens.", Reason.BILLING),
    pytest.param(400, "Payment required to continue.", Reason.BILLING),
    pytest.param(None, "You have reached your usage limit for this period.", Reason.RATE_LIMIT),
    pytest.param(400, "Daily quota reached for this model.", Reason.RATE_LIMIT),
    pytest.param(None, "The model is overloaded. Please try later.", Reason.RATE_LIMIT),
    pytest.param(None, "Rate limit reached for requests per minute.", Reason.RATE_LIMIT),
    pytest.param(None, "Too many requests", Reason.RATE_LIMIT),
    pytest.param(500, "The service is at capacity.", Reason.RATE_LIMIT),
    pytest.param(400, "Incorrect API key provided.", Reason.AUTH),
    pytest.param(400, "The OAuth token has expired.", Reason.AUTH),
    pytest.param(None, "read: connection reset by peer", Reason.TIMEOUT),
    pytest.param(None, "Deadline exceeded while waiting for the model.", Reason.TIMEOUT),
    pytest.param(502, "upstream request timed out", Reason.TIMEOUT),
    pytest.param(400, "This model's maximum context length is 8192 tokens.", Reason.CONTEXT_OVERFLOW),
    pytest.param(400, "prompt is too long: 210000 tokens > 200000 maximum", Reason.CONTEXT_OVERFLOW),
    pytest.param(400, "Output blocked by the content filter.", Reason.CONTENT_FILTER),
]


@pytest.mark.parametrize(("status", "text", "reason"), TEXT_ROWS)
@pytest.mark.parametrize("where", ["body", "message"])
def test_texts_decide_when_no_code_does(status: int | None, text: str, reason: Reason, where: str) -> None:
    """docs/failover.md §5's texts ("usage limit", "insufficient credits", "connection reset", …) classify on their own,
    whether the provider put them in a plain body or the client reported them, and beat a bare status."""
    signal = (
        FailureSignal(status=status, body=text)
        if where == "body"
        else FailureSignal(status=status, message=text)
    )
    assert classify(signal, now_ms=NOW_MS).reason is reason


def test_every_reason_but_empty_is_produced_by_some_row() -> None:
    """The table covers the whole vocabulary; ``empty`` is the engine's to decide, not the classifier's."""
    produced = {row.values[1] for row in ROWS}
    assert produced == set(Reason) - {Reason.EMPTY}


def test_status_is_kept_but_not_a_200_of_a_stream() -> None:
    """The HTTP status travels with the error; a 200 that carried an error event is not reported as one."""
    assert classify(FailureSignal(status=429)).status == 429
    assert (
        classify(FailureSignal(status=200, body=anthropic("overloaded_error", "Overloaded"))).status is None
    )


@pytest.mark.parametrize(
    ("signal", "expected_ms"),
    [
        pytest.param(FailureSignal(status=429, headers={"Retry-After": "30"}), 30_000, id="header-seconds"),
        pytest.param(FailureSignal(status=429, headers={"retry-after": "1.5"}), 1_500, id="header-fraction"),
        pytest.param(
            FailureSignal(status=429, headers={"Retry-After": "30", "retry-after-ms": "250"}),
            250,
            id="retry-after-ms-wins",
        ),
        pytest.param(
            FailureSignal(
                status=429,
                headers={
                    "Retry-After": format_datetime(
                        datetime.fromtimestamp(NOW_MS / 1000 + 90, UTC), usegmt=True
                    )
                },
            ),
            90_000,
            id="header-http-date",
        ),
        pytest.param(
            FailureSignal(
                status=429, body=gemini(429, "RESOURCE_EXHAUSTED", GEMINI_QUOTA, RETRY_INFO, wrap=True)
            ),
            32_000,
            id="gemini-retry-delay-beats-text",
        ),
        pytest.param(
            FailureSignal(
                status=429, body=json.dumps({"error": {"message": "slow down", "retry_after": 12}})
            ),
            12_000,
            id="body-retry-after",
        ),
        pytest.param(
            FailureSignal(status=429, body="Rate limit reached. Please try again in 1.5s."),
            1_500,
            id="text-seconds",
        ),
        pytest.param(
            FailureSignal(status=429, body="Rate limit reached on tokens per min. Please try again in 6m0s."),
            360_000,
            id="text-go-duration",
        ),
        pytest.param(
            FailureSignal(status=429, body="Too many requests, try again in 20 seconds"),
            20_000,
            id="text-words",
        ),
        pytest.param(
            FailureSignal(status=429, headers={"retry-after": "999999999"}), MAX_RETRY_AFTER_MS, id="capped"
        ),
    ],
)
def test_retry_after_is_read_from_headers_bodies_and_texts(signal: FailureSignal, expected_ms: int) -> None:
    """Retry hints in every shape providers send become milliseconds."""
    assert classify(signal, now_ms=NOW_MS).retry_after_ms == expected_ms


@pytest.mark.parametrize(
    "signal",
    [
        FailureSignal(status=429),
        FailureSignal(status=429, headers={"retry-after": "soon"}),
        FailureSignal(status=500, body="Please try again later."),
    ],
)
def test_no_retry_hint_means_none(signal: FailureSignal) -> None:
    """Without a usable hint the engine's own cooldown applies."""
    assert classify(signal, now_ms=NOW_MS).retry_after_ms is None


def test_message_is_short_and_never_echoes_a_secret() -> None:
    """The user-facing message keeps the gist of the provider's words but masks keys and cuts long bodies."""
    secret = "sk-ant-api03-" + "A1b2C3d4" * 8
    body = anthropic("authentication_error", f"invalid x-api-key {secret} " + "padding " * 100)
    error = classify(FailureSignal(status=401, body=body))
    assert secret not in str(error)
    assert "A1b2C3d4" not in str(error)
    assert len(str(error)) < 220
    assert str(error).startswith("Auth error (HTTP 401): invalid x-api-key")


def test_html_bodies_are_not_echoed() -> None:
    """An HTML error page says nothing useful to a chat user."""
    error = classify(FailureSignal(status=502, body="<html><body>502 Bad Gateway</body></html>"))
    assert "<html" not in str(error)
    assert str(error) == "Server error (HTTP 502)."
