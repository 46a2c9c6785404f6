"""How replies look on Discord: message text with a quiet fallback note, 2000-character chunks, picker menus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import discord

from adapters.common.split import closes_fence, fence_opening, split_message
from bot.chat import PickerView, Reply

MESSAGE_LIMIT = 2000  # Discord's limit on message content
SELECT_LIMIT = 25  # options in one select menu
LABEL_LIMIT = 100  # select option labels and descriptions, choice names and values, custom ids
WARNING = "⚠ "

# Component custom ids: "mb:" + what to do. Picker options carry the core's short tokens, never model ids.
PICK_ID = "mb:pick:{page}"  # the select menu; its values are picker tokens
PAGE_ID = "mb:page:{page}"  # previous/next page buttons
RETRY_ID = "mb:retry"  # the button under an interrupted answer


@dataclass(frozen=True)
class ComponentAction:
    """What a clicked component asks for, parsed from its custom id."""

    kind: Literal["pick", "page", "retry"]
    page: int = 1


def parse_custom_id(custom_id: str) -> ComponentAction | None:
    """The action behind one of our custom ids; None for ids this adapter did not draw."""
    parts = custom_id.split(":")
    if custom_id == RETRY_ID:
        return ComponentAction("retry")
    if len(parts) != 3 or parts[0] != "mb" or not (parts[2].isascii() and parts[2].isdigit()):
        return None
    if parts[1] in ("pick", "page") and len(parts[2]) <= 6:
        return ComponentAction("pick" if parts[1] == "pick" else "page", int(parts[2]))
    return None


def reply_text(reply: Reply, *, streamed: str = "") -> str:
    """The message text: an answer with its note as small subtext; broken-off answers clearly marked.

    ``streamed`` is what the user already saw of this turn; when the turn ended without an answer
    (stopped, failed), that text stays visible but is marked as unfinished.
    """
    if reply.kind == "interrupted":
        partial, sep, warning = reply.text.rpartition(WARNING)
        text = mark_unfinished(partial.rstrip(), warning.strip()) if sep else reply.text
    elif reply.kind != "answer" and streamed.strip():
        text = mark_unfinished(streamed.rstrip(), reply.text.strip())
    else:
        text = reply.text
    if reply.kind == "answer" and reply.note:
        text = f"{text}\n-# {' '.join(reply.note.split())}"
    return text


def mark_unfinished(partial: str, warning: str) -> str:
    """Partial text, its code block closed if it broke off inside one, then a bold warning line."""
    return f"{close_open_fence(partial)}\n\n**{WARNING}{warning}**"


def close_open_fence(text: str) -> str:
    """Close a fenced code block left open at the end of ``text`` (a stream can break off inside one)."""
    fence = None
    for line in text.split("\n"):
        if fence is None:
            fence = fence_opening(line)
        elif closes_fence(line, fence):
            fence = None
    return text if fence is None else f"{text}\n{fence.marker}"


def chunks(text: str) -> list[str]:
    """Message-sized pieces that never break a code block; at least one, never blank."""
    pieces = [piece for piece in split_message(text, MESSAGE_LIMIT) if piece.strip()]
    return pieces or ["…"]


def _clip(text: str, limit: int = LABEL_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def picker_view(picker: PickerView) -> discord.ui.View:
    """The picker page as a select menu (values are the core's tokens) with page buttons when needed."""
    view = discord.ui.View(timeout=None)
    options = [
        discord.SelectOption(
            label=_clip(f"{entry.number}. {entry.family}"),
            value=token,
            description=_clip(", ".join(entry.providers)),
            default=entry.number == picker.current_number,
        )
        for entry, token in zip(picker.entries, picker.tokens, strict=True)
    ][:SELECT_LIMIT]
    if options:
        view.add_item(
            discord.ui.Select(
                custom_id=PICK_ID.format(page=picker.page), placeholder="Pick a model", options=options
            )
        )
    if picker.total_pages > 1:
        pages = (("◀ Previous", picker.page - 1), ("Next ▶", picker.page + 1))
        for label, target in pages:
            view.add_item(
                discord.ui.Button(
                    label=label,
                    custom_id=PAGE_ID.format(page=target),
                    style=discord.ButtonStyle.secondary,
                    disabled=not 1 <= target <= picker.total_pages,
                    row=1,
                )
            )
    return _inert(view)


def retry_view() -> discord.ui.View:
    """A Retry button under an interrupted answer."""
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Retry", custom_id=RETRY_ID, style=discord.ButtonStyle.primary))
    return _inert(view)


def view_for(reply: Reply) -> discord.ui.View | None:
    """The components under a reply: the picker, a Retry button, or none."""
    if reply.picker is not None:
        return picker_view(reply.picker)
    if reply.kind == "interrupted":
        return retry_view()
    return None


def _inert(view: discord.ui.View) -> discord.ui.View:
    # Rendering only: a stopped view is never put in discord.py's view store. The adapter answers every
    # "mb:" custom id itself, so buttons keep working after a restart and nothing times out.
    view.stop()
    return view
