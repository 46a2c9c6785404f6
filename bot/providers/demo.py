"""The built-in offline demo provider (docs/configuration.md §6): deterministic, clearly labelled answers that need no keys."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from bot.config.defaults import DEMO_PROFILES
from bot.failover.classify import FailureSignal, classify
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ImagePart, ResolvedAuth

BUSY_PROFILE = DEMO_PROFILES[1]  # scripted to be rate-limited, so rotation and cooldowns show at once
BUSY_RETRY_AFTER_S = 30
_QUOTE_MAX = 200

_SETUP_HINT = (
    "To talk to a real model, set ANTHROPIC_API_KEY, OPENAI_API_KEY, OPENROUTER_API_KEY or GEMINI_API_KEY "
    "and restart, or write a config file ($MODELBOT_CONFIG, by default ~/.modelbot/config.json5)."
)


@dataclass(frozen=True)
class DemoModel:
    """One model of the demo provider."""

    id: str
    name: str
    accepts_images: bool = False


DEMO_MODELS: tuple[DemoModel, ...] = (
    DemoModel("echo", "Demo echo (offline)"),
    DemoModel("story", "Demo storyteller (offline)"),
    DemoModel("vision", "Demo vision (offline)", accepts_images=True),
    DemoModel("broken", "Demo outage (always fails)"),
)


class DemoClient:
    """Answers offline: ``echo``, ``story`` and ``vision`` work, ``broken`` and the busy profile fail."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self._delay_s = delay_s  # a pause before each word, so the console shows a stream being typed

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        reply = _REPLIES.get(request.model)
        if reply is None and request.model != "broken":
            body = {"error": {"type": "not_found_error", "message": f"demo: no model {request.model!r}"}}
            raise classify(FailureSignal(status=404, body=json.dumps(body)))
        if auth.profile_id == BUSY_PROFILE:
            # A credential's limits apply before any model runs, as with a real API.
            body = {"error": {"type": "rate_limit_error", "message": "demo: this profile is always busy"}}
            headers = {"retry-after": str(BUSY_RETRY_AFTER_S)}
            raise classify(FailureSignal(status=429, headers=headers, body=json.dumps(body)))
        if reply is None:
            raise classify(FailureSignal(status=503, body="demo: scripted outage"))
        last_user = next((m for m in reversed(request.messages) if m.role == "user"), None)
        for word in _words(reply(last_user)):
            if self._delay_s > 0:
                await asyncio.sleep(self._delay_s)
            yield word

    async def aclose(self) -> None:
        return None


def _words(text: str) -> list[str]:
    """Deltas of one word each (with the following space) that join back to ``text`` exactly."""
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def _quote(message: ChatMessage | None) -> str:
    text = " ".join(message.text.split()) if message else ""
    if len(text) > _QUOTE_MAX:
        text = text[: _QUOTE_MAX - 1].rstrip() + "…"
    return text


def _echo(message: ChatMessage | None) -> str:
    quote = _quote(message)
    said = f"You said: “{quote}”." if quote else "You sent a message without text."
    return (
        f"[demo] {said} This is modelbot's offline demo (demo/echo), not a real model. {_SETUP_HINT} "
        "Meanwhile, try /model to pick another demo model and /model status to see profiles and cooldowns."
    )


_HEROES = (
    "a lighthouse keeper",
    "a retired robot",
    "a curious fox",
    "a map maker",
    "a night-shift baker",
)
_PLACES = (
    "a town built on stilts",
    "the edge of a salt desert",
    "a library without doors",
    "an island that drifted north",
    "a train that never stopped",
)
_ENDINGS = (
    "wrote the answer on a paper boat and let the river deliver it",
    "asked the moon, who only ever answers in riddles",
    "built a small machine that hums the answer at dawn",
    "traded a button for the answer at the Thursday market",
    "decided the question was better than any answer",
)


def _pick(options: tuple[str, ...], seed: bytes, index: int) -> str:
    return options[seed[index] % len(options)]


def _story(message: ChatMessage | None) -> str:
    topic = " ".join(_quote(message).split()[:8]) or "nothing at all"
    # A digest, not hash(): the same message tells the same story in every process.
    seed = hashlib.sha256(topic.encode()).digest()
    hero, place, ending = _pick(_HEROES, seed, 0), _pick(_PLACES, seed, 1), _pick(_ENDINGS, seed, 2)
    days = 2 + seed[3] % 7
    return (
        f"[demo story] Once, in {place}, {hero} was asked about “{topic}”. "
        f"After {days} days of thinking, the {hero.split(' ', 1)[1]} {ending}. The end. "
        "(Made up offline by demo/story; no real model was involved.)"
    )


def _vision(message: ChatMessage | None) -> str:
    images = message.images if message else ()
    if not images:
        return (
            "[demo vision] No image attached. Send a photo, with or without a caption, and I will "
            "describe what its file says about it. (Offline demo: I cannot really see.)"
        )
    noun = "image" if len(images) == 1 else "images"
    described = "; ".join(f"{i}) {_describe(image)}" for i, image in enumerate(images, 1))
    quote = _quote(message)
    caption = f" Caption: “{quote}”." if quote else ""
    return (
        f"[demo vision] I received {len(images)} {noun}: {described}.{caption} "
        "(Offline demo: I read the file headers, I do not look at the picture.)"
    )


_REPLIES: dict[str, Callable[[ChatMessage | None], str]] = {"echo": _echo, "story": _story, "vision": _vision}


def _describe(image: ImagePart) -> str:
    size = _dimensions(image.data)
    pixels = f"{size[0]}×{size[1]} px, " if size else ""
    return f"{image.media_type}, {pixels}{_human_bytes(len(image.data))}"


def _human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} kB"
    return f"{count / (1024 * 1024):.1f} MB"


def _dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, GIF or JPEG header; None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"\xff\xd8":
        return _jpeg_dimensions(data)
    return None


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    # Walk the segments to the first start-of-frame marker (C0–CF, except DHT C4, JPG C8 and DAC CC).
    index = 2
    while index + 9 <= len(data) and data[index] == 0xFF:
        marker = data[index + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[index + 5 : index + 7], "big")
            width = int.from_bytes(data[index + 7 : index + 9], "big")
            return width, height
        index += 2 + int.from_bytes(data[index + 2 : index + 4], "big")
    return None
