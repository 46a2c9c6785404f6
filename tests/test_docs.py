"""Source comments cite the project's own docs pages, and every citation points at a page and section that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SOURCES = sorted(
    path for package in ("bot", "adapters", "cli", "tests") for path in (ROOT / package).rglob("*.py")
)

# "docs/failover.md §6", "docs/failover.md §4, §6", "docs/failover.md §5–§8", "RFC 6749 §4.1.3": a page or an
# RFC, then one or more section numbers. Every "§" in the sources must belong to one of these.
_NUMBERED = re.compile(
    r"(?:docs/(?P<page>[\w-]+\.md)|RFC \d+),?\s+"
    r"(?P<sections>§\d+(?:\.\d+)*(?:(?:, | and |–|/)§\d+(?:\.\d+)*)*)"
)
_NAMED = re.compile(r"docs/(?P<page>[\w-]+\.md), '(?P<heading>[^']+)'")
_PAGE = re.compile(r"docs/(?P<page>[\w-]+\.md)")
_HEADING = re.compile(r"^#{1,6}\s+(?:(?P<number>\d+(?:\.\d+)*)\.?\s+)?(?P<title>.+?)\s*$", re.MULTILINE)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _headings(page: str) -> tuple[set[str], set[str]]:
    """The section numbers and the heading titles of a docs page."""
    text = (DOCS / page).read_text(encoding="utf-8")
    found = list(_HEADING.finditer(text))
    return {m["number"] for m in found if m["number"]}, {m["title"] for m in found}


def _texts() -> list[tuple[str, str]]:
    return [(_rel(path), path.read_text(encoding="utf-8")) for path in SOURCES if path != Path(__file__)]


def test_no_source_cites_the_outside_spec() -> None:
    """A clone has no spec to open: sources cite docs/ pages instead."""
    bad = [name for name, text in _texts() if re.search(r"spec\s*§", text, re.IGNORECASE)]
    assert bad == []


def test_every_section_sign_is_a_citation_of_a_page_or_an_rfc() -> None:
    """A bare "§7" leaves the reader guessing which document it means."""
    bad = []
    for name, text in _texts():
        rest = _NUMBERED.sub("", text)
        bad += [f"{name}: {line.strip()}" for line in rest.splitlines() if "§" in line]
    assert bad == []


def test_every_cited_page_exists() -> None:
    cited = {m["page"] for _, text in _texts() for m in _PAGE.finditer(text)}
    assert cited, "the sources cite no docs page at all: the pattern is wrong"
    missing = {page for page in cited if not (DOCS / page).is_file()}
    assert missing == set()


def test_every_cited_section_exists() -> None:
    bad = []
    for name, text in _texts():
        for m in _NUMBERED.finditer(text):
            page = m["page"]
            if page is None or not (DOCS / page).is_file():
                continue
            numbers, _ = _headings(page)
            bad += [
                f"{name}: docs/{page} §{number}"
                for number in re.findall(r"§(\d+(?:\.\d+)*)", m["sections"])
                if number not in numbers
            ]
        for m in _NAMED.finditer(text):
            page = m["page"]
            if not (DOCS / page).is_file():
                continue
            if m["heading"] not in _headings(page)[1]:
                bad.append(f"{name}: docs/{page}, '{m['heading']}'")
    assert bad == []
