"""A site's template: the blocks its pages share, learned from the pages themselves.

Menus, footers, "related" boxes, share bars, editor lines and disclaimers come back on page after
page of one site; the article does not. A block (an element whose text is at most :data:`BLOCK_CHARS`
long, white space aside; the elements inside it go with it) is fingerprinted by its tag path
with class names and by its text, normalised (NFKC, case, white space, digits): a fingerprint
seen on :data:`TEMPLATE_PAGES` pages of a site (the page and two others) is the site's template,
and is removed from the page before extraction, so that both extractors choose among what is
left. A site with fewer pages is left as it was.

The rules of ``furniture`` know what furniture looks like anywhere; this knows what it looks
like on one site, whatever its words or class names. Stages learn with :class:`SiteTemplate`
(plain data, small, kept between runs) and extract with :func:`drop_template`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import blake2b

import lxml.html

from pipelines.runtime.jsondata import is_count, loads_bounded

BLOCK_CHARS = 400  # characters, white space aside; a longer element is a container: its blocks count
TEMPLATE_PAGES = 3  # a block on this many pages of a site is template
SPARE_SHARE = 0.9  # of a page's paragraph text: a template that would take more is spared
MAX_FINGERPRINTS = 20_000  # per site; past this, the blocks seen on one article only are forgotten
PARAGRAPH_CHARS = 50  # as furniture's: a <p> this long is article text

_SPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+")
# elements that hold text as a block; inline ones (a, span, b...) count as part of their block
_BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "dl",
        "dd",
        "dt",
        "td",
        "th",
        "tr",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "aside",
        "header",
        "footer",
        "nav",
        "form",
        "figure",
        "figcaption",
        "blockquote",
        "pre",
        "center",
        "address",
        "span",
        "a",
        "strong",
        "b",
        "em",
    ]
)


def _normalised(text: str) -> str:
    return _DIGITS.sub("0", _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower())


def _fingerprint(path: str, text: str) -> int:
    return int.from_bytes(blake2b(f"{path}\x00{text}".encode(), digest_size=8).digest(), "big")


Block = tuple[int, lxml.html.HtmlElement | str]  # a fingerprint and its element, or a text line


def blocks(tree: lxml.html.HtmlElement) -> Iterator[Block]:
    """Each block of the page's body with its fingerprint, outermost first."""
    body = tree.find("body")
    if body is None:
        return
    stack = [(body, "")]
    while stack:
        element, path = stack.pop()
        for child in reversed(element):
            if not isinstance(child.tag, str):
                continue
            classes = " ".join(sorted(_DIGITS.sub("0", child.get("class", "")).split()))
            child_path = f"{path}/{child.tag}.{classes}"
            if child.tag in _BLOCK_TAGS:
                words = child.text_content().split()  # a container's length, without normalising it
                if not words:
                    continue
                if sum(map(len, words)) <= BLOCK_CHARS:
                    yield _fingerprint(child_path, _normalised(" ".join(words))), child
                    continue
            stack.append((child, child_path))


def fingerprints(page_blocks: Iterable[Block]) -> list[int]:
    """The page's block fingerprints, each once: what a site's template learns from a page."""
    return sorted({fingerprint for fingerprint, _ in page_blocks})


def drop_template(tree: lxml.html.HtmlElement, page_blocks: list[Block], template: frozenset[int]) -> int:
    """Remove the page's blocks (from :func:`blocks`) that are its site's template; the number
    removed.

    Nothing is removed from a page whose template blocks hold :data:`SPARE_SHARE` of its
    paragraph text: what a page shares with others is not its template when it is most of it.
    """
    found = [element for fingerprint, element in page_blocks if fingerprint in template]
    if not found:
        return 0
    paragraphs = _paragraph_chars(tree)
    if paragraphs and sum(map(_paragraph_chars, found)) >= SPARE_SHARE * paragraphs:
        return 0
    for element in found:
        element.drop_tree()
    return len(found)


def text_lines(text: str) -> list[tuple[int, str]]:
    """The extracted text's lines with their fingerprints: what the blocks leave to learn."""
    return [(_fingerprint("", _normalised(line)), line) for line in text.split("\n\n")]


def drop_template_lines(text: str, lines: list[tuple[int, str]], template: frozenset[int]) -> str:
    """The text without its lines (from :func:`text_lines`) that are its site's template (an
    author's name under every article, a slogan, a disclaimer in a block of its own), unless they
    are most of it."""
    if not template:
        return text
    kept = [line for fingerprint, line in lines if fingerprint not in template]
    if sum(map(len, kept)) < (1 - SPARE_SHARE) * len(text):
        return text
    return "\n\n".join(kept)


def _paragraph_chars(element: lxml.html.HtmlElement) -> int:
    return sum(length for p in element.iter("p") if (length := len(p.text_content())) >= PARAGRAPH_CHARS)


@dataclass
class SiteTemplate:
    """What the pages of one site share, learned a page at a time.

    ``seen_on`` keeps, for each fingerprint, the articles it was seen on (up to
    :data:`TEMPLATE_PAGES`), each by a key the caller gives (its title): an article at several
    addresses is one article, and its paragraphs do not become the template of its site. Small
    enough to keep between runs: past :data:`MAX_FINGERPRINTS`, the fingerprints seen on one
    article only (its text, mostly) are forgotten.
    """

    pages: int = 0
    seen_on: dict[int, tuple[int, ...]] = field(default_factory=dict)
    _template: frozenset[int] | None = field(default=None, init=False, repr=False, compare=False)

    def learn(self, page_fingerprints: Iterable[int], article: str) -> None:
        self.pages += 1
        key = _fingerprint("", article)
        for fingerprint in page_fingerprints:
            articles = self.seen_on.get(fingerprint, ())
            if len(articles) < TEMPLATE_PAGES and key not in articles:
                self.seen_on[fingerprint] = (*articles, key)
                if len(articles) + 1 == TEMPLATE_PAGES:
                    self._template = None
        if len(self.seen_on) > MAX_FINGERPRINTS:
            self.seen_on = {k: articles for k, articles in self.seen_on.items() if len(articles) > 1}

    def template(self) -> frozenset[int]:
        """The fingerprints seen on :data:`TEMPLATE_PAGES` articles (kept until one more is)."""
        if self._template is None:
            self._template = frozenset(
                k for k, articles in self.seen_on.items() if len(articles) >= TEMPLATE_PAGES
            )
        return self._template

    def more_on_page(
        self, page_fingerprints: Iterable[int], removed: frozenset[int] = frozenset()
    ) -> frozenset[int] | None:
        """The template's blocks on a page that was extracted with only ``removed`` of them taken
        out (before the template had them), when that is more: the page is extracted again
        without them. None when the page had all of them out already."""
        on_page = self.template().intersection(page_fingerprints)
        return None if on_page <= removed else on_page

    def to_json(self) -> bytes:
        """What is worth keeping: the fingerprints seen on two articles or more."""
        kept = {f"{k:016x}": articles for k, articles in self.seen_on.items() if len(articles) > 1}
        return json.dumps({"pages": self.pages, "seen_on": kept}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SiteTemplate:
        """``ValueError`` when ``data`` is not what :meth:`to_json` writes (its caller caps
        ``data``): a count of pages, fingerprints with the articles they were seen on."""
        try:
            kept = loads_bounded(data, len(data), "JSON")
            pages = kept["pages"]
            seen_on = {int(k, 16): tuple(v[:TEMPLATE_PAGES]) for k, v in kept["seen_on"].items()}
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a site template: {exc}") from None
        if not is_count(pages):
            raise ValueError(f"not a site template: pages {str(pages)[:40]!r} is not a count")
        if not all(is_count(article, 2**64) for articles in seen_on.values() for article in articles):
            raise ValueError("not a site template: an article is not a fingerprint")
        return cls(pages, seen_on)
