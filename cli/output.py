"""How the CLI prints: rich tables for people, JSON for scripts, one value per line with ``--plain``."""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# Piped output is not cut to 80 columns: a table keeps its natural width (rich never pads it out).
_PIPE_WIDTH = 1000


def _console() -> Console:
    # Created per call, on the sys.stdout of that moment, so redirections (and pytest's capsys) are honoured.
    from rich.console import Console  # noqa: PLC0415 - rich loads only when a table is printed

    out = sys.stdout
    width = None if out.isatty() else _PIPE_WIDTH
    return Console(file=out, width=width, highlight=False, markup=False, emoji=False, soft_wrap=True)


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None, empty: str = "(none)"
) -> None:
    """A table for people; cell text is shown literally (no rich markup)."""
    if title:
        print(title)
    if not rows:
        print(f"  {empty}")
        return
    plain = _plain_table(columns, rows)
    print(plain if plain is not None else _rich_table(columns, rows))


def _rich_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    from rich import box  # noqa: PLC0415 - rich loads only for terminals and unusual text (~50 ms of start-up)
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console = _console()
    with console.capture() as captured:
        console.print(table)
    # rich pads every cell to its column's width; trailing blanks only get in the way of copy and paste.
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def _plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str | None:
    """The table exactly as rich renders it into a pipe (no colour, no folding), for the common case of
    plain ASCII cells: scripts reading ``modelbot … | …`` need not import rich. None: let rich do it."""
    if sys.stdout.isatty():
        return None
    table = [list(columns), *(list(row) for row in rows)]
    if any(len(row) != len(columns) for row in table) or not all(
        _one_cell_per_char(cell) for row in table for cell in row
    ):
        return None
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    width = sum(widths) + 3 * (len(widths) - 1)
    if width > _PIPE_WIDTH:
        return None

    def line(cells: Sequence[str]) -> str:
        return "   ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(columns), "\u2500" * width, *(line(row) for row in table[1:])])


def _one_cell_per_char(text: str) -> bool:
    """Whether every character of ``text`` takes exactly one terminal cell (ASCII, and the narrow symbols the
    CLI uses such as ``×``, ``—`` or ``…``), so ``len`` is its width as rich measures it."""
    if text.isascii():
        return text.isprintable()
    return all(
        ch.isprintable()
        and (ord(ch) < 0x1100 or 0x2000 <= ord(ch) < 0x2600)  # Latin to Cyrillic; punctuation, arrows, shapes
        and unicodedata.east_asian_width(ch) in _NOT_WIDE
        and unicodedata.category(ch) not in _NO_CELL_OF_THEIR_OWN
        for ch in text
    )


_NOT_WIDE = frozenset({"Na", "N", "H", "A"})  # rich counts East Asian "ambiguous" characters as one cell
_NO_CELL_OF_THEIR_OWN = frozenset({"Mn", "Mc", "Me", "Cf"})  # combining marks, format characters


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def print_lines(values: Sequence[str]) -> None:
    for value in values:
        print(value)


def print_pairs(pairs: Sequence[tuple[str, str]]) -> None:
    """``key: value`` lines, values aligned."""
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        print(f"{key + ':':<{width + 1}} {value}")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def format_time(ms: int | None) -> str:
    """A timestamp for people, in local time: ``2025-01-31 14:05``."""
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def format_tokens(count: int | None) -> str:
    """A context window: ``200k``, ``1M``, ``-`` when unknown."""
    if count is None:
        return "-"
    if count >= 1_000_000:
        return f"{count / 1_000_000:.3g}M"
    return f"{round(count / 1000)}k" if count >= 1000 else str(count)
