"""What a compaction keeps verbatim and when one is due (docs/failover.md §8), as pure functions of the history."""

from __future__ import annotations

from bot.conversation.compaction import KEEP_LAST, compactable, kept_count, message_tokens, over_threshold
from bot.store.types import MessageRole, StoredMessage

WINDOW = 1_000
THRESHOLD = 0.8  # compaction at 800 tokens; what stays verbatim must fit in 400


def history(*sizes: int, summary_first: bool = False) -> list[StoredMessage]:
    """Messages of the given token sizes, alternating user and assistant (after an optional summary)."""
    roles: list[MessageRole] = ["user", "assistant"]
    messages = [
        StoredMessage(i, "k", roles[i % 2], "x", (), tokens, 0) for i, tokens in enumerate(sizes, start=1)
    ]
    if summary_first:
        messages.insert(0, StoredMessage(0, "k", "summary", "earlier", (), 50, 0))
    return messages


def due(history: list[StoredMessage], pending: str, *, window: int, threshold: float) -> bool:
    """The Compactor's two checks: over the threshold, with something a compaction could fold into its summary."""
    tokens = sum(message_tokens(m) for m in history)
    return over_threshold(tokens, pending, window=window, threshold=threshold) and compactable(
        history, kept_count(history, window=window, threshold=threshold)
    )


def test_small_messages_keep_the_newest_four() -> None:
    assert KEEP_LAST == 4
    assert kept_count(history(*[50] * 10), window=WINDOW, threshold=THRESHOLD) == 4
    assert kept_count(history(50, 50), window=WINDOW, threshold=THRESHOLD) == 2


def test_only_the_newest_messages_that_leave_room_are_kept() -> None:
    """Kept messages must fit in half the threshold: a large one stops the count, newer ones stay."""
    assert kept_count(history(50, 50, 300, 50, 50), window=WINDOW, threshold=THRESHOLD) == 3  # 50+50+300
    assert kept_count(history(50, 50, 360, 50), window=WINDOW, threshold=THRESHOLD) == 1  # 50+360 > 400
    assert kept_count(history(50, 50, 500), window=WINDOW, threshold=THRESHOLD) == 0  # the paste goes too


def test_compaction_is_due_at_the_threshold_with_something_to_fold() -> None:
    assert not due(history(100, 100, 100, 100, 100), "x" * 1_000, window=WINDOW, threshold=THRESHOLD)
    assert due(history(100, 100, 100, 100, 100), "x" * 1_600, window=WINDOW, threshold=THRESHOLD)
    # Over the threshold, but all of it fits in what a compaction keeps: nothing to summarise.
    assert not due(history(100, 100), "x" * 4_000, window=WINDOW, threshold=THRESHOLD)


def test_an_earlier_summary_alone_is_never_summarised_again() -> None:
    """A huge pending message over a history of just the summary would otherwise re-summarise it every turn."""
    only_summary = history(summary_first=True)
    assert not compactable(only_summary, kept_count(only_summary, window=WINDOW, threshold=THRESHOLD))
    assert not due(only_summary, "x" * 8_000, window=WINDOW, threshold=THRESHOLD)
    with_paste = history(900, summary_first=True)
    assert due(with_paste, "next", window=WINDOW, threshold=THRESHOLD)  # the paste is folded
