"""The offline demo provider: labelled, deterministic answers and its scripted failures."""

from __future__ import annotations

import struct
import time

import pytest

from bot.config.defaults import DEMO_MODELS as DEFAULT_DEMO_REFS
from bot.config.defaults import DEMO_PROFILES
from bot.errors import ProviderError
from bot.failover.reasons import Reason
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ImagePart, ResolvedAuth
from bot.providers.demo import BUSY_PROFILE, DEMO_MODELS, DemoClient

ENDPOINT = Endpoint(provider="demo", base_url="demo://offline", api="demo")
MAIN = ResolvedAuth(profile_id="demo:main", type="none", secret="")
BUSY = ResolvedAuth(profile_id=BUSY_PROFILE, type="none", secret="")


def png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + b"\x00" * 4


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 10


async def reply(
    model: str, *messages: ChatMessage, auth: ResolvedAuth = MAIN, client: DemoClient | None = None
) -> list[str]:
    client = client or DemoClient()
    request = ChatRequest(model=model, messages=list(messages))
    return [delta async for delta in client.stream(ENDPOINT, auth, request)]


def user(text: str, *images: ImagePart) -> ChatMessage:
    return ChatMessage("user", text, images=images)


async def test_echo_quotes_the_last_user_message_and_says_how_to_configure() -> None:
    """Echo repeats what the user said, says it is the offline demo and names the env vars to set."""
    deltas = await reply("echo", user("first"), ChatMessage("assistant", "ok"), user("What is   2+2?"))
    text = "".join(deltas)
    assert text.startswith("[demo] ")
    assert "“What is 2+2?”" in text
    assert "first" not in text
    assert "offline demo" in text
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "config"):
        assert name in text


async def test_deltas_are_words_that_join_to_a_deterministic_reply() -> None:
    """Output streams word by word and is the same every time."""
    first = await reply("echo", user("hello there"))
    second = await reply("echo", user("hello there"))
    assert first == second
    assert len(first) > 10
    assert all(delta.count(" ") <= 1 for delta in first)


async def test_long_messages_are_quoted_shortened() -> None:
    """A 10 kB message is not echoed back whole."""
    text = "".join(await reply("echo", user("x" * 10_000)))
    assert len(text) < 1_000
    assert "…" in text


async def test_story_is_deterministic_and_differs_from_echo() -> None:
    """The storyteller makes up a stable story about the message, in words unlike echo's."""
    story = "".join(await reply("story", user("Why is the sky blue?")))
    assert story == "".join(await reply("story", user("Why is the sky blue?")))
    assert story.startswith("[demo story] ")
    assert "“Why is the sky blue?”" in story
    assert story != "".join(await reply("echo", user("Why is the sky blue?")))
    assert story != "".join(await reply("story", user("Tell me about tides")))


async def test_vision_describes_each_attached_image() -> None:
    """Vision reports how many images came, their type, pixel size and byte size."""
    images = (
        ImagePart("image/png", png(640, 480)),
        ImagePart("image/jpeg", jpeg(1024, 768)),
        ImagePart("image/gif", gif(32, 16)),
        ImagePart("image/webp", b"RIFF\x00\x00\x00\x00WEBP" + b"\x00" * 2000),
    )
    text = "".join(await reply("vision", user("look", *images)))
    assert text.startswith("[demo vision] I received 4 images:")
    assert "1) image/png, 640×480 px, 33 bytes" in text
    assert "2) image/jpeg, 1024×768 px" in text
    assert "3) image/gif, 32×16 px" in text
    assert "4) image/webp, 2.0 kB" in text
    assert "Caption: “look”" in text


async def test_vision_without_an_image_asks_for_one() -> None:
    """With no image attached, vision says what to send."""
    text = "".join(await reply("vision", user("hi")))
    assert "No image attached" in text


async def test_broken_model_is_a_server_outage() -> None:
    """``broken`` always fails with a 503, which the engine treats as a server error."""
    with pytest.raises(ProviderError) as caught:
        await reply("broken", user("hi"))
    assert caught.value.reason is Reason.SERVER
    assert caught.value.status == 503


@pytest.mark.parametrize("model", ["echo", "story", "vision", "broken"])
async def test_busy_profile_is_always_rate_limited_for_30_seconds(model: str) -> None:
    """``demo:busy`` fails every model as rate-limited with a Retry-After of 30 s."""
    with pytest.raises(ProviderError) as caught:
        await reply(model, user("hi"), auth=BUSY)
    assert caught.value.reason is Reason.RATE_LIMIT
    assert caught.value.status == 429
    assert caught.value.retry_after_ms == 30_000


async def test_main_profile_answers() -> None:
    """``demo:main`` is the working profile."""
    assert await reply("echo", user("hi"), auth=MAIN)


async def test_unknown_model_is_a_bad_request() -> None:
    """A model the demo does not have is a 404, whatever the profile."""
    for auth in (MAIN, BUSY):
        with pytest.raises(ProviderError) as caught:
            await reply("gpt-9", user("hi"), auth=auth)
        assert caught.value.reason is Reason.BAD_REQUEST
        assert caught.value.status == 404


async def test_delay_paces_the_words() -> None:
    """With a delay, each word waits before it is sent (the console shows typing)."""
    words = len(await reply("echo", user("hi")))
    started = time.monotonic()
    await reply("echo", user("hi"), client=DemoClient(delay_s=0.002))
    assert time.monotonic() - started >= words * 0.002


def test_the_built_in_default_only_names_demo_models_and_profiles_that_exist() -> None:
    """The default config's demo refs and profiles match what the client serves."""
    served = {model.id for model in DEMO_MODELS}
    assert {ref.split("/", 1)[1] for ref in DEFAULT_DEMO_REFS} == served
    assert BUSY_PROFILE in DEMO_PROFILES
    assert [m.id for m in DEMO_MODELS if m.accepts_images] == ["vision"]
