"""Replies as Telegram messages: HTML/plain pieces under 4096 units, quiet tail lines, picker keyboards."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from adapters.common.split import split_message, utf16_len
from adapters.telegram.markdown_html import TELEGRAM_LIMIT, split_for_telegram
from bot.chat import PickerView, Reply

PAGE_PREFIX = "p:"  # a picker page button; the core's own tokens start with "m:"
INTERRUPTED_MARK = "\n\n⚠ "  # how the pipeline appends the interruption notice to the partial answer
QUIET_MAX = 300  # a tail line is one short sentence; longer ones are cut so the pieces still fit
EMPTY_ANSWER = "(The model sent an empty answer.)"
UNSUPPORTED = "Sorry, I can only read text and images (photos, or image files)."
BAD_IMAGE = "Sorry, I could not read that image: send a PNG, JPEG, WebP or GIF of at most 20 MB."
FAILED = "Sorry, something went wrong while answering. Please try again."
OLD_BUTTON = "This list is too old. Send /model to see the current one."
_LABEL_MAX = 24  # longer button labels go one per row, so Telegram does not cut them


@dataclass(frozen=True)
class Piece:
    """One message's text: Telegram HTML (None: send as plain text) and the plain fallback."""

    html: str | None
    plain: str


def answer_pieces(markdown: str, quiet: Sequence[str] = (), *, limit: int = TELEGRAM_LIMIT) -> list[Piece]:
    """A model's Markdown as HTML pieces; ``quiet`` lines go under the last piece in italics."""
    lines = [_cut(line) for line in quiet if line.strip()]
    tail_html = "".join(f"\n\n<i>{html.escape(line, quote=False)}</i>" for line in lines)
    tail_plain = "".join(f"\n\n{line}" for line in lines)
    room = limit - max(utf16_len(tail_html), utf16_len(tail_plain))
    pieces = [Piece(h, p) for h, p in split_for_telegram(markdown, room)] if markdown.strip() else []
    if not pieces:
        if not lines:
            return [Piece(None, EMPTY_ANSWER)]
        return [Piece(tail_html.removeprefix("\n\n"), tail_plain.removeprefix("\n\n"))]
    last = pieces[-1]
    assert last.html is not None
    pieces[-1] = Piece(last.html + tail_html, last.plain + tail_plain)
    return pieces


def plain_pieces(text: str, *, limit: int = TELEGRAM_LIMIT) -> list[Piece]:
    """Command replies are plain text (masked secrets and ids must not turn into formatting)."""
    pieces = [Piece(None, chunk) for chunk in split_message(text, limit) if chunk.strip()]
    return pieces or [Piece(None, "…")]


def reply_pieces(reply: Reply, *, streamed: str | None = None) -> list[Piece]:
    """The messages for one reply; ``streamed`` is the text already shown while the answer streamed.

    An answer carries the fallback note as its quiet last line; an interrupted one its warning. When text
    was streamed and the turn then ended otherwise (stopped, failed), the streamed text stays and the
    reply becomes its quiet last line, so it never looks like a finished answer.
    """
    if reply.kind == "answer":
        return answer_pieces(reply.text, [reply.note] if reply.note else [])
    if reply.kind == "interrupted":
        body, mark, warning = reply.text.rpartition(INTERRUPTED_MARK)
        if not mark:
            return answer_pieces(streamed or "", [reply.text])
        return answer_pieces(body, ["⚠ " + warning])
    if streamed:
        return answer_pieces(streamed, [reply.text])
    return plain_pieces(reply.text)


def picker_keyboard(view: PickerView) -> InlineKeyboardMarkup:
    """One button per family (callback data = the core's short token), then ‹ › page buttons."""
    buttons = []
    for entry, token in zip(view.entries, view.tokens, strict=True):
        mark = " ✓" if entry.number == view.current_number else ""
        buttons.append(InlineKeyboardButton(f"{entry.number}. {entry.family}{mark}", callback_data=token))
    wide = any(len(b.text) > _LABEL_MAX for b in buttons)
    per_row = 1 if wide else 2
    rows = [buttons[i : i + per_row] for i in range(0, len(buttons), per_row)]
    nav = []
    if view.page > 1:
        nav.append(InlineKeyboardButton("‹ Prev", callback_data=page_token(view.page - 1)))
    if view.page < view.total_pages:
        nav.append(InlineKeyboardButton("Next ›", callback_data=page_token(view.page + 1)))
    if nav:
        rows.append(nav)
    return InlineKeyboardMarkup(rows)


def page_token(page: int) -> str:
    return f"{PAGE_PREFIX}{page}"


def parse_page_token(data: str) -> int | None:
    """The page a ‹ › button asks for, or None when ``data`` is not a page button."""
    number = data.removeprefix(PAGE_PREFIX)
    if number == data or not (number.isascii() and number.isdigit()) or len(number) > 6:
        return None
    return int(number)


def short(text: str, limit: int = 200) -> str:
    """A callback answer's text (Telegram allows 200 characters)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= QUIET_MAX else line[: QUIET_MAX - 1] + "…"
