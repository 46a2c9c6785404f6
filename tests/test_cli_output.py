"""The CLI's tables: into a pipe, tables of one-cell characters are drawn without rich, exactly as rich would."""

from __future__ import annotations

import random
import string

import pytest

from cli.output import _plain_table, _rich_table


def random_table(rng: random.Random) -> tuple[list[str], list[list[str]]]:
    # ASCII, and the narrow non-ASCII text the CLI prints (×2, —, …, ↪, accents, Cyrillic).
    alphabet = string.ascii_letters + string.digits + string.punctuation + "    " + "×—…↪→·éüßЖ"
    columns = ["".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(rng.randint(1, 6))]
    rows = [
        ["".join(rng.choices(alphabet, k=rng.choice([0, 1, 3, 8, 20, 40]))) for _ in columns]
        for _ in range(rng.randint(1, 8))
    ]
    return columns, rows


def test_plain_tables_are_what_rich_draws() -> None:
    """Five hundred random tables (spaces, punctuation, narrow symbols, empty cells, one to six columns) come out
    byte for byte as rich renders them into a pipe."""
    rng = random.Random(15)
    for _ in range(500):
        columns, rows = random_table(rng)
        assert _plain_table(columns, rows) == _rich_table(columns, rows), (columns, rows)


@pytest.mark.parametrize(
    "cell",
    ["\u65e5\u672c", "e\u0301", "zero\u200bwidth", "tab\there", "two\nlines", "x" * 1200],
    ids=["wide", "combining", "zero-width", "tab", "newline", "too-wide"],
)
def test_anything_else_is_left_to_rich(cell: str) -> None:
    """Wide and combining characters, control characters and tables wider than a pipe's 1000 columns go
    through rich."""
    assert _plain_table(["a", "b"], [["x", cell]]) is None
