"""Markdown to Telegram HTML: each construct, escaping, well-formed nesting, links, the plain fallback."""

from __future__ import annotations

import html
import random
from html.parser import HTMLParser

import pytest

from adapters.common.split import utf16_len
from adapters.telegram.markdown_html import (
    MIN_RENDER_LIMIT,
    markdown_to_telegram_html,
    split_for_telegram,
    strip_markdown,
)
from bot.conversation.help import help_text

_ALLOWED_ATTRS = {"b": set(), "i": set(), "s": set(), "u": set(), "code": {"class"}, "pre": set()}
_ALLOWED_ATTRS |= {"a": {"href"}, "blockquote": set()}


class TelegramHtmlChecker(HTMLParser):
    """Collects problems Telegram would reject: unknown tags or attributes, bad nesting, raw '<' or '&'."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_ATTRS or any(name not in _ALLOWED_ATTRS[tag] for name, _ in attrs):
            self.problems.append(f"tag <{tag} {attrs}>")
        parent = self.stack[-1] if self.stack else None
        if parent == "code" or (parent == "pre" and tag != "code"):
            self.problems.append(f"<{tag}> inside <{parent}>")
        if tag in ("a", "blockquote", "pre") and tag in self.stack:
            self.problems.append(f"nested <{tag}>")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"unbalanced </{tag}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.problems.append(f"self-closing <{tag}/>")

    def handle_data(self, data: str) -> None:
        if any(ch in data for ch in "<>&"):
            self.problems.append(f"unescaped text {data[:30]!r}")
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ("amp", "lt", "gt", "quot"):
            self.problems.append(f"entity &{name};")
        self.text.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.problems.append(f"char ref &#{name};")


def check_html(rendered: str) -> str:
    """Assert that ``rendered`` is HTML Telegram accepts; return its text content."""
    checker = TelegramHtmlChecker()
    checker.feed(rendered)
    checker.close()
    assert checker.problems == []
    assert checker.stack == [], f"unclosed {checker.stack}"
    return "".join(checker.text)


def test_checker_catches_bad_html() -> None:
    """The checker itself rejects the mistakes it is there to find."""
    for bad in ("<b>x", "<b><i>x</b></i>", "a < b", "<script>x</script>", "<pre><b>x</b></pre>", "&nbsp;"):
        with pytest.raises(AssertionError):
            check_html(bad)


RENDERS = [
    ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
    ("*italic* and _italic_", "<i>italic</i> and <i>italic</i>"),
    ("***both***", "<i><b>both</b></i>"),
    ("~~gone~~", "<s>gone</s>"),
    ("*a **b** c*", "<i>a <b>b</b> c</i>"),
    ("`a < b`", "<code>a &lt; b</code>"),
    ("``a ` b``", "<code>a ` b</code>"),
    ("`**not bold**`", "<code>**not bold**</code>"),
    ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
    ("<b>not a tag</b>", "&lt;b&gt;not a tag&lt;/b&gt;"),
    (
        "```python\nif a < b and **x**:\n    pass\n```",
        '<pre><code class="language-python">if a &lt; b and **x**:\n    pass</code></pre>',
    ),
    ("```\nplain & simple\n```", "<pre>plain &amp; simple</pre>"),
    ('```x" onload="y\ncode\n```', "<pre>code</pre>"),
    ("```bad!lang\ncode\n```", "<pre>code</pre>"),
    ("```\nunclosed <code>", "<pre>unclosed &lt;code&gt;</pre>"),
    ("```py\n```\nafter", "\nafter"),
    (">\n> \nx", "\n\nx"),
    ("# Title\n## Sub *it*", "<b>Title</b>\n<b>Sub <i>it</i></b>"),
    ("### **Wrapped** ###", "<b>Wrapped</b>"),
    ("#hashtag", "#hashtag"),
    ("- one\n  * two\n+ three", "• one\n  • two\n• three"),
    ("1. first\n2. second", "1. first\n2. second"),
    ("> quoted *x*\n> more\n\nafter", "<blockquote>quoted <i>x</i>\nmore</blockquote>\n\nafter"),
    ("---", "———"),
    ("[site](https://example.com/a_(b)?q=1&r=2)", '<a href="https://example.com/a_(b)?q=1&amp;r=2">site</a>'),
    ('[t](http://x.y "title")', '<a href="http://x.y">t</a>'),
    ("[me](tg://user?id=42)", '<a href="tg://user?id=42">me</a>'),
    ("[**b** `c`](https://x.y)", '<a href="https://x.y"><b>b</b> <code>c</code></a>'),
    ("[click](javascript:alert(1))", "click"),
    ("[file](file:///etc/passwd)", "file"),
    ("[rel](./docs)", "rel"),
    ("[nohost](https:foo)", "nohost"),
    ("[a [nested](https://x.y) b](https://z.w)", '<a href="https://z.w">a [nested](https://x.y) b</a>'),
    ("[not a link] (https://x.y)", "[not a link] (https://x.y)"),
    ("see https://x.com/a_b_c_ and *x*", "see https://x.com/a_b_c_ and <i>x</i>"),
    ("<https://x.com/?a=1&b=2>", "https://x.com/?a=1&amp;b=2"),
    ("snake_case_name", "snake_case_name"),
    ("1 * 2 * 3", "1 * 2 * 3"),
    ("**unclosed and *also", "**unclosed and *also"),
    ("_a *b_ c*", "<i>a *b</i> c*"),
    ("~single~", "~single~"),
    ("\\*not italic\\*", "*not italic*"),
    ("`unclosed code", "`unclosed code"),
    ("", ""),
]


@pytest.mark.parametrize(("md", "expected"), RENDERS)
def test_render(md: str, expected: str) -> None:
    """Each Markdown construct renders to the expected Telegram HTML, which is well-formed."""
    rendered = markdown_to_telegram_html(md)
    assert rendered == expected
    check_html(rendered)


STRIPS = [
    ("**bold** *it* ~~s~~ `code`", "bold it s code"),
    ("# Title\n- item", "Title\n• item"),
    ("```py\nx = *1*\n```\nafter", "x = *1*\nafter"),
    (
        "[site](https://e.com) [bad](javascript:x) [https://e.com](https://e.com)",
        "site (https://e.com) bad https://e.com",
    ),
    ("> quote *x*", "> quote x"),
    ("a < b & c", "a < b & c"),
    ("**unbalanced", "**unbalanced"),
]


@pytest.mark.parametrize(("md", "expected"), STRIPS)
def test_strip_markdown(md: str, expected: str) -> None:
    """The plain fallback drops the markers, keeps the words, and spells links out."""
    assert strip_markdown(md) == expected


@pytest.mark.parametrize("topic", [None, "model", "new", "reset", "status", "retry", "stop", "help"])
def test_help_texts_survive_rendering(topic: str | None) -> None:
    """The help texts hold no Markdown markers: rendered, they read exactly as written."""
    text = help_text(topic, is_admin=True)
    assert markdown_to_telegram_html(text) == html.escape(text, quote=False)


_ATOMS = [
    "*",
    "**",
    "_",
    "__",
    "~~",
    "`",
    "```",
    "[",
    "]",
    "(",
    ")",
    "<",
    ">",
    "&",
    '"',
    "\\",
    "#",
    "- ",
    "> ",
]
_ATOMS += ["\n", "\n\n", " ", "word", "x_y", "https://e.com/a_b", "](https://e.com)", "```py\n", "é", "😀"]


@pytest.mark.parametrize("block", range(8))
def test_random_markdown_renders_well_formed(block: int) -> None:
    """Any mix of markers renders to HTML Telegram accepts, saying the same as the plain fallback."""
    for seed in range(block * 50, block * 50 + 50):
        md = "".join(random.Random(seed).choices(_ATOMS, k=seed % 61))
        text = check_html(markdown_to_telegram_html(md))
        # Links and quotes differ on purpose (the fallback spells URLs out and keeps '> '); the rest matches.
        if "](" not in md and ">" not in md:
            assert text == strip_markdown(md), f"seed {seed}: {md!r}"


def test_split_for_telegram_keeps_every_chunk_within_the_limit() -> None:
    """Text whose HTML grows fivefold (all '&') is re-split so every message fits."""
    md = ("& < > " * 300 + "\n\n") * 5
    pairs = split_for_telegram(md, limit=MIN_RENDER_LIMIT)
    assert len(pairs) > 1
    for rendered, plain in pairs:
        assert utf16_len(rendered) <= MIN_RENDER_LIMIT
        assert utf16_len(plain) <= MIN_RENDER_LIMIT
        assert check_html(rendered) == plain
    assert "".join(plain for _, plain in pairs) == md


def test_split_for_telegram_falls_back_to_plain_when_tags_dominate() -> None:
    """A page of tiny quotes (eight times longer as HTML) still fits: as escaped plain text if need be."""
    md = ">&\n\n" * 2000
    pairs = split_for_telegram(md, limit=MIN_RENDER_LIMIT)
    for rendered, plain in pairs:
        assert utf16_len(rendered) <= MIN_RENDER_LIMIT
        check_html(rendered)
        assert "&" in plain


def test_split_for_telegram_code_block_spans_messages() -> None:
    """A code block cut across messages renders as a closed <pre> in each, with its language."""
    md = "Intro\n\n```python\n" + "value = a < b\n" * 600 + "```\nDone."
    pairs = split_for_telegram(md)
    assert len(pairs) > 2
    for rendered, plain in pairs:
        assert utf16_len(rendered) <= 4096
        check_html(rendered)
        assert "```" not in plain
    for rendered, _ in pairs[1:]:
        assert rendered.startswith('<pre><code class="language-python">')
    assert sum(plain.count("value = a < b") for _, plain in pairs) == 600


def test_split_for_telegram_short_and_blank() -> None:
    """A short answer is one pair; blank text gives nothing to send; a tiny limit is refused."""
    assert split_for_telegram("**hi**") == [("<b>hi</b>", "hi")]
    assert split_for_telegram("") == []
    assert split_for_telegram("  \n\n ") == []
    with pytest.raises(ValueError, match="at least"):
        split_for_telegram("x", limit=MIN_RENDER_LIMIT - 1)


# No bare parentheses: "[x](" + text + ")" would make text a refused link target, which is dropped.
_LONG_ATOMS = [atom for atom in _ATOMS if atom not in ("(", ")")] + ["&" * 50, "word " * 20, "S" * 70]


@pytest.mark.parametrize("seed", range(30))
def test_split_for_telegram_random(seed: int) -> None:
    """Random long Markdown: every message fits, is well-formed, and no text is lost from the plain side."""
    rng = random.Random(seed)
    md = "".join(rng.choices(_LONG_ATOMS, k=rng.randint(100, 1500)))
    limit = rng.choice([MIN_RENDER_LIMIT, 2000, 4096])
    pairs = split_for_telegram(md, limit)
    for rendered, plain in pairs:
        assert utf16_len(rendered) <= limit
        assert utf16_len(plain) <= limit
        assert plain.strip()
        check_html(rendered)
    # 'S' only comes in runs too long for a fence line, so no rendering rule may drop one.
    assert sum(plain.count("S") for _, plain in pairs) == md.count("S")
