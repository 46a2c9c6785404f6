"""Context-window and auth failures as the servers people put in front of models phrase them (docs/failover.md §5).

Each body is the server's own shape and wording (OpenAI, Azure, Anthropic, OpenRouter, LiteLLM, vLLM,
llama.cpp, Ollama, LM Studio, xAI, Gemini): a context overflow must compact and retry, never end the turn as
"invalid request"; a bad key answered with a 400 must rotate to the next profile.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.failover.classify import FailureSignal, classify
from bot.failover.reasons import Reason


def body(**fields: Any) -> str:
    return json.dumps(fields)


def openai_error(message: str, type: str | None, code: str | int | None, **extra: Any) -> str:
    return body(error={"message": message, "type": type, "param": None, "code": code, **extra})


CONTEXT_ROWS = [
    pytest.param(
        400,
        openai_error(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130012 "
            "tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
        ),
        id="openai-chat",
    ),
    pytest.param(
        400,
        openai_error(
            "Your input exceeds the context window of this model. Please adjust your input and try again.",
            "invalid_request_error",
            None,
        ),
        id="openai-responses-without-code",
    ),
    pytest.param(
        400,
        openai_error(
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 "
            "tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            None,
            status=400,
        ),
        id="azure-openai-without-code",
    ),
    pytest.param(
        400,
        body(
            type="error",
            error={"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"},
        ),
        id="anthropic-prompt-too-long",
    ),
    pytest.param(
        400,
        body(
            type="error",
            error={
                "type": "invalid_request_error",
                "message": "input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000, "
                "decrease input length or `max_tokens` and try again",
            },
        ),
        id="anthropic-input-plus-max-tokens",
    ),
    pytest.param(
        400,
        body(
            error={
                "message": "This endpoint's maximum context length is 200000 tokens. However, you requested about "
                '250000 tokens (250000 of text input). Please reduce the length of either one, or use the "middle-out" '
                "transform to compress your prompt automatically.",
                "code": 400,
            }
        ),
        id="openrouter",
    ),
    pytest.param(
        400,
        openai_error(
            "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: "
            "OpenAIException - context window exceeded",
            None,
            "400",
        ),
        id="litellm-proxy-context-window-exceeded",
    ),
    pytest.param(
        400,
        openai_error(
            "litellm.BadRequestError: ContextWindowExceededError: Context Window exceeded for this deployment",
            "None",
            "400",
        ),
        id="litellm-proxy-class-name-only",
    ),
    pytest.param(
        400,
        body(
            object="error",
            message="This model's maximum context length is 8192 tokens. However, you requested 8203 tokens "
            "(7691 in the messages, 512 in the completion). Please reduce the length of the messages or completion.",
            type="BadRequestError",
            param=None,
            code=400,
        ),
        id="vllm",
    ),
    pytest.param(
        400,
        openai_error(
            "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length is "
            "4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778). None",
            "BadRequestError",
            400,
        ),
        id="vllm-max-tokens",
    ),
    pytest.param(
        400,
        body(
            error={
                "code": 400,
                "message": "request (4476 tokens) exceeds the available context size (4096 tokens)",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 4476,
                "n_ctx": 4096,
            }
        ),
        id="llama.cpp",
    ),
    pytest.param(
        400,
        body(error={"code": 400, "message": "the request exceeds the available context size, try increasing it",
                    "type": "invalid_request_error"}),
        id="llama.cpp-older",
    ),
    pytest.param(400, body(error="the input length exceeds the context length"), id="ollama-native"),
    pytest.param(
        400,
        openai_error("the input length exceeds the context length", "invalid_request_error", None),
        id="ollama-openai-compatible",
    ),
    pytest.param(400, body(error="Input length 6491 exceeds context length 1500"), id="lm-studio"),
    pytest.param(
        400,
        body(code="Client specified an invalid argument",
             error="This model's maximum prompt length is 131072 but the request contains 150000 tokens."),
        id="xai",
    ),
    pytest.param(
        400,
        body(error={"code": 400, "status": "INVALID_ARGUMENT",
                    "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."}),
        id="gemini",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("status", "text"), CONTEXT_ROWS)
def test_context_window_phrasings_are_context_overflow(status: int, text: str) -> None:
    """Every gateway's way of saying "too long for the context window" compacts instead of stopping."""
    assert classify(FailureSignal(status=status, body=text)).reason is Reason.CONTEXT_OVERFLOW


AUTH_ROWS = [
    pytest.param(
        body(error={"code": 400, "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}),
        id="gemini-api-key-invalid",
    ),
    pytest.param(
        body(error={"code": 400, "message": "API key expired. Please renew the API key.", "status": "INVALID_ARGUMENT",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_EXPIRED"}]}),
        id="gemini-api-key-expired",
    ),
    pytest.param(
        openai_error("Authentication Error, Invalid proxy server token passed. Received API Key = sk-...abcd",
                     "auth_error", "400"),
        id="litellm-proxy-virtual-key",
    ),
    pytest.param(
        openai_error("Malformed API Key passed in. Ensure Key has `Bearer ` prefix.", "auth_error", "400"),
        id="litellm-proxy-malformed-key",
    ),
    pytest.param(
        openai_error("litellm.AuthenticationError: AzureException - Access denied due to invalid subscription key "
                     "or wrong API endpoint.", None, "400"),
        id="litellm-azure-subscription-key",
    ),
    pytest.param(
        body(error="Invalid credentials in Authorization header"),
        id="huggingface-style-credentials",
    ),
]  # fmt: skip


@pytest.mark.parametrize("text", AUTH_ROWS)
def test_auth_failures_answered_as_400_are_auth(text: str) -> None:
    """A gateway that answers a bad key with a 400 still means "this key": rotate, do not stop the turn."""
    assert classify(FailureSignal(status=400, body=text)).reason is Reason.AUTH


@pytest.mark.parametrize(
    "text",
    [
        openai_error("Invalid value for 'temperature': expected a number at most 2.", "invalid_request_error", None),
        body(error="model 'llama9' not found, try pulling it first"),
        openai_error("Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 50000.",
                     "tokens", "rate_limit_exceeded"),
    ],
)  # fmt: skip
def test_the_new_phrasings_do_not_swallow_other_failures(text: str) -> None:
    """Plain invalid requests stay ``bad_request``; a per-minute token limit stays ``rate_limit``."""
    reason = classify(FailureSignal(status=400 if "rate_limit" not in text else 429, body=text)).reason
    assert reason is (Reason.RATE_LIMIT if "rate_limit" in text else Reason.BAD_REQUEST)
