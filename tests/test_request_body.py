"""The request bodies, built from encoded messages: byte for byte what ``json.dumps`` writes for the API's dict."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bot.providers import anthropic_client, openai_client
from bot.providers.base import ChatMessage, ChatRequest, ImagePart
from bot.providers.http import text_message

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
CONVERSATION = [
    ChatMessage("system", "Extra rule."),
    ChatMessage("user", 'Quotes " and \\ backslashes, tabs\t, a newline\n, ünïcödé and 🙂'),
    ChatMessage("assistant", ""),
    ChatMessage("assistant", "Reply </script> \u2028"),
    ChatMessage("user", "", images=(ImagePart("image/png", PNG),)),
    ChatMessage("user", "What is this?", images=(ImagePart("image/png", PNG),)),
]


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("ascii")


@pytest.mark.parametrize("max_tokens", [None, 77])
@pytest.mark.parametrize("system", [None, "Be brief."])
@pytest.mark.parametrize("max_completion_tokens", [False, True])
def test_openai_body_is_json_dumps_of_the_api_dict(
    system: str | None, max_tokens: int | None, max_completion_tokens: bool
) -> None:
    """System first (system-role messages folded in), then the conversation; the token limit's name per host."""
    request = ChatRequest("m/odel", CONVERSATION, max_tokens=max_tokens, system=system)
    image = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "\n\n".join(p for p in (system, "Extra rule.") if p)},
        {"role": "user", "content": CONVERSATION[1].text},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": CONVERSATION[3].text},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": image}},
            ],
        },
    ]
    expected: dict[str, Any] = {"model": "m/odel", "messages": messages, "stream": True}
    if max_tokens is not None:
        expected["max_completion_tokens" if max_completion_tokens else "max_tokens"] = max_tokens
    body = openai_client.request_body(request, max_completion_tokens=max_completion_tokens)
    assert body == _dumps(expected)


@pytest.mark.parametrize("max_tokens", [None, 77])
@pytest.mark.parametrize("system", [None, "Be brief."])
def test_anthropic_body_is_json_dumps_of_the_api_dict(system: str | None, max_tokens: int | None) -> None:
    """Empty turns left out, images before the text, the system prompt as a top-level field."""
    request = ChatRequest("claude-x", CONVERSATION, max_tokens=max_tokens, system=system)
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()},
    }
    expected: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 4096 if max_tokens is None else max_tokens,
        "messages": [
            {"role": "user", "content": CONVERSATION[1].text},
            {"role": "assistant", "content": CONVERSATION[3].text},
            {"role": "user", "content": [image]},
            {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]},
        ],
        "stream": True,
        "system": "\n\n".join(p for p in (system, "Extra rule.") if p),
    }
    assert anthropic_client.request_body(request) == _dumps(expected)


def test_without_a_system_prompt_there_is_none() -> None:
    """No system message (OpenAI) and no system field (Anthropic) when there is nothing to say."""
    request = ChatRequest("m", [ChatMessage("user", "hi")])
    assert json.loads(openai_client.request_body(request))["messages"] == [{"role": "user", "content": "hi"}]
    assert "system" not in json.loads(anthropic_client.request_body(request))


def test_a_message_is_encoded_once_over_the_turns() -> None:
    """The next turn's body reuses the encodings of the history it resends: only new messages are encoded."""
    history = [ChatMessage("user", f"encoded once {n}") for n in range(50)]
    openai_client.request_body(ChatRequest("m", history))
    before = text_message.cache_info()
    history.append(ChatMessage("user", "encoded once, the newest"))
    openai_client.request_body(ChatRequest("m", history))
    after = text_message.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (50, 1)
