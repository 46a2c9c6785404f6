"""Logging for ``modelbot run``: one line per record on stderr, a settable level, secrets never written.

Every logger of the code is in one tree, ``modelbot.*`` (``modelbot.turns``, ``modelbot.auth``,
``modelbot.telegram``, …), so one name filters or silences all of it. The handler sits on the root logger so
that the client libraries' records (discord.py, python-telegram-bot) pass through the same redaction.
Turns are logged by the pipeline on ``modelbot.turns`` as one structured line each
(``turn session=… model=… profile=… attempts=… latency_ms=…``) at INFO.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from bot.redaction import Redactor

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# HTTP clients log every request URL at INFO, and Telegram's URLs carry the bot token.
_CHATTY = ("httpx", "httpx2", "httpcore", "hpack", "websockets", "aiohttp.access", "asyncio")


class RedactingFormatter(logging.Formatter):
    """Replaces every secret the process holds (any length) in the finished line, tracebacks included."""

    def __init__(self, fmt: str, redactor: Redactor) -> None:
        super().__init__(fmt)
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.known(super().format(record))


def configure_logging(
    level: str, *, redactor: Redactor | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one redacting stderr handler at ``level``."""
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(RedactingFormatter(FORMAT, Redactor() if redactor is None else redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in _CHATTY:
        logging.getLogger(name).setLevel(quiet)
    return handler
