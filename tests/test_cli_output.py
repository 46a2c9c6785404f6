"""The CLI's tables: into a pipe, plain ASCII tables are drawn without rich, exactly as rich draws them."""

from __future__ import annotations

import random
import string

import pytest

from bot.cli.output import _plain_table, _rich_table


def random_table(rng: random.Random) -> tuple[list[str], list[list[str]]]:
    alphabet = string.ascii_letters + string.digits + string.punctuation + "    "
    columns = ["".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(rng.randint(1, 6))]
    rows = [
        ["".join(rng.choices(alphabet, k=rng.choice([0, 1, 3, 8, 20, 40]))) for _ in columns]
        for _ in range(rng.randint(1, 8))
    ]
    return columns, rows


def test_plain_tables_are_what_rich_draws() -> None:
    """Five hundred random ASCII tables (spaces, punctuation, empty cells, one to six columns) come out
    byte for byte as rich renders them into a pipe."""
    rng = random.Random(15)
    for _ in range(500):
        columns, rows = random_table(rng)
        assert _plain_table(columns, rows) == _rich_table(columns, rows), (columns, rows)


@pytest.mark.parametrize(
    "cell",
    ["gr\u00fcn", "\u65e5\u672c", "tab\there", "two\nlines", "x" * 1200],
    ids=["accent", "wide", "tab", "newline", "too-wide"],
)
def test_anything_else_is_left_to_rich(cell: str) -> None:
    """Non-ASCII, control characters and tables wider than a pipe's 1000 columns go through rich."""
    assert _plain_table(["a", "b"], [["x", cell]]) is None
