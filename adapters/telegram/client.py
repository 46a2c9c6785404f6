"""Building python-telegram-bot's Application from ``channels.telegram``, the adapter's timings, setup errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application

from adapters.common.jobs import STOP_GRACE_S
from adapters.telegram.settings import TelegramChannel
from bot.errors import ModelbotError

PTBApplication = Application[Any, Any, Any, Any, Any, Any]
ALLOWED_UPDATES = ["message", "callback_query"]


class TelegramSetupError(ModelbotError):
    """The Telegram channel cannot start: no token, a rejected token, an unreachable Bot API server."""


@dataclass(frozen=True)
class Timings:
    """How often the adapter may do things; production uses the defaults, tests shorten them."""

    edit_interval_s: float = 1.0  # between edits of a streamed answer, private chats
    group_edit_interval_s: float = 3.0  # in groups Telegram allows about 20 messages a minute
    typing_interval_s: float = 4.0  # Telegram shows "typing…" for about 5 s per action
    poll_timeout_s: int = 30  # long polling: how long one getUpdates may wait for news
    send_attempts: int = 4  # network errors: tries per call
    retry_backoff_s: float = 0.5  # first wait after a network error, doubled each time
    admin_cache_s: float = 60.0  # how long a group's administrator list is trusted
    stop_grace_s: float = STOP_GRACE_S  # on stop, answers in progress get this long, then are cancelled


def build_application(settings: TelegramChannel) -> PTBApplication:
    """PTB pointed at ``apiBaseUrl`` (``{root}/bot<token>/<method>``, ``{root}/file/bot<token>/<path>``)."""
    if not settings.bot_token:
        raise TelegramSetupError("channels.telegram.botToken is not set.")
    root = settings.api_base_url.rstrip("/")
    return (
        Application.builder()
        .token(settings.bot_token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .job_queue(None)
        .build()
    )


def webhook_path(url: str) -> str:
    """The local path PTB's webhook server listens on: the path of the public URL Telegram posts to."""
    return urlsplit(url).path.strip("/")


def setup_error(exc: BaseException, settings: TelegramChannel) -> TelegramSetupError | None:
    """A start-up failure as a sentence for the operator (never with the token in it)."""
    if isinstance(exc, InvalidToken):
        return TelegramSetupError(
            "Telegram rejected the bot token (channels.telegram.botToken): check it with @BotFather."
        )
    if isinstance(exc, NetworkError):
        return TelegramSetupError(
            f"Cannot reach the Telegram Bot API at {settings.api_base_url} "
            f"(channels.telegram.apiBaseUrl): {exc}"
        )
    if isinstance(exc, TelegramError):
        return TelegramSetupError(f"Telegram refused to start the bot: {exc}")
    if isinstance(exc, RuntimeError) and "webhook" in str(exc).lower():
        return TelegramSetupError(
            f"Webhook mode needs python-telegram-bot's webhook extra (pip install "
            f"'python-telegram-bot[webhooks]'): {exc}"
        )
    if isinstance(exc, OSError) and settings.webhook is not None:
        return TelegramSetupError(
            f"Cannot listen for the webhook on {settings.webhook.listen}:{settings.webhook.port}: {exc}"
        )
    return None
