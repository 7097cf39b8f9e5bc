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
MAX_FINGERPRINTS = 20_000  # per site, kept between runs (SiteTemplate.to_json): the most telling
MAX_TEMPLATE = 5_000  # per site: the template's fingerprints kept, the smallest (a file makes no bigger one)
MAX_LEARNING = 10 * MAX_FINGERPRINTS  # per site in memory; past it, bounded as when kept (then by order)
MAX_PAGES = 2**63 - 1  # what a template's count of pages stops at (pipelines.runtime.jsondata.is_count)
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
                text = child.text_content()
                # a container by its first characters already: the wrappers around the article
                # each hold the whole page, and were split into words at every level
                if _visible_chars(text[:_CONTAINER_PREFIX]) <= BLOCK_CHARS:
                    words = text.split()
                    if not words:
                        continue
                    if sum(map(len, words)) <= BLOCK_CHARS:
                        yield _fingerprint(child_path, _normalised(" ".join(words))), child
                        continue
            stack.append((child, child_path))


_CONTAINER_PREFIX = 2 * BLOCK_CHARS


def _visible_chars(text: str) -> int:
    """Characters but white space: a block's length."""
    return sum(map(len, text.split()))


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

    ``seen_on`` keeps, for each fingerprint, the articles it was seen on (the
    :data:`TEMPLATE_PAGES` smallest keys, sorted), each by a key the caller gives (its title): an
    article at several addresses is one article, and its paragraphs do not become the template of
    its site. Which articles are kept is no page's order, so the same pages learned in any order,
    by any number of workers merged, make the same template, as long as nothing is forgotten: a
    site's learning is bounded only past :data:`MAX_LEARNING` fingerprints in memory, and to
    :data:`MAX_FINGERPRINTS` when kept (:meth:`to_json`), in an order of their own
    (:meth:`_ranked`). ``pages``: the pages learned from, summed over the learnings merged (one
    merged twice counts twice): a sign that something was learned, not a figure to rely on.
    """

    pages: int = 0
    seen_on: dict[int, tuple[int, ...]] = field(default_factory=dict)
    _template: frozenset[int] | None = field(default=None, init=False, repr=False, compare=False)

    def learn(self, page_fingerprints: Iterable[int], article: str) -> None:
        self.pages = min(self.pages + 1, MAX_PAGES)
        key = _fingerprint("", article)
        for fingerprint in page_fingerprints:
            articles = self.seen_on.get(fingerprint, ())
            if key in articles or (len(articles) >= TEMPLATE_PAGES and key > articles[-1]):
                continue
            self.seen_on[fingerprint] = tuple(sorted((*articles, key)))[:TEMPLATE_PAGES]
            if len(articles) + 1 == TEMPLATE_PAGES:
                self._template = None
        self._bound(MAX_LEARNING)

    def merge(self, other: SiteTemplate) -> None:
        """Add what ``other`` learned (another worker's pages, or an earlier crawl's): each
        fingerprint's articles are the smallest of both, as if one had learned all their pages."""
        self.pages = min(self.pages + other.pages, MAX_PAGES)  # (a count read back stays one)
        for fingerprint, theirs in other.seen_on.items():
            articles = {*self.seen_on.get(fingerprint, ()), *theirs}
            self.seen_on[fingerprint] = tuple(sorted(articles)[:TEMPLATE_PAGES])
        self._template = None
        self._bound(MAX_LEARNING)

    def _bound(self, most: int) -> None:
        if len(self.seen_on) > most:
            self.seen_on = self._ranked(MAX_FINGERPRINTS)
            self._template = None

    def _ranked(self, most: int) -> dict[int, tuple[int, ...]]:
        """At most ``most`` fingerprints, chosen by what was learned, never by when: the
        template's (:data:`MAX_TEMPLATE` of them, the smallest), then those seen on most
        articles, the smallest fingerprint first among equals."""
        kept: dict[int, tuple[int, ...]] = {}
        in_template = 0
        for fingerprint, articles in sorted(self.seen_on.items(), key=lambda item: (-len(item[1]), item[0])):
            if len(kept) >= most:
                break
            if len(articles) >= TEMPLATE_PAGES:
                if in_template >= MAX_TEMPLATE:
                    continue
                in_template += 1
            kept[fingerprint] = articles
        return kept

    def template(self) -> frozenset[int]:
        """The fingerprints seen on :data:`TEMPLATE_PAGES` articles, the :data:`MAX_TEMPLATE`
        smallest (kept until one more is)."""
        if self._template is None:
            found = sorted(k for k, articles in self.seen_on.items() if len(articles) >= TEMPLATE_PAGES)
            self._template = frozenset(found[:MAX_TEMPLATE])
        return self._template

    def to_json(self) -> bytes:
        """:data:`MAX_FINGERPRINTS` of it (:meth:`_ranked`), those seen on one article included:
        two workers that each saw a block once have seen it on two articles (:meth:`merge`)."""
        kept = {f"{k:016x}": articles for k, articles in sorted(self._ranked(MAX_FINGERPRINTS).items())}
        return json.dumps({"pages": self.pages, "seen_on": kept}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SiteTemplate:
        """``ValueError`` when ``data`` is not what :meth:`to_json` writes (its caller caps
        ``data``): a count of pages, fingerprints with the articles they were seen on. Bounded
        as :meth:`to_json` bounds it, whatever the file holds."""
        try:
            kept = loads_bounded(data, len(data), "JSON")
            pages = kept["pages"]
            seen_on = {int(k, 16): tuple(sorted(set(v)))[:TEMPLATE_PAGES] for k, v in kept["seen_on"].items()}
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a site template: {exc}") from None
        if not is_count(pages):
            raise ValueError(f"not a site template: pages {str(pages)[:40]!r} is not a count")
        if not all(is_count(k, 2**64) for k in seen_on) or not all(
            is_count(article, 2**64) for articles in seen_on.values() for article in articles
        ):
            raise ValueError("not a site template: an article or a block is not a fingerprint")
        template = cls(pages, seen_on)
        template.seen_on = template._ranked(MAX_FINGERPRINTS)  # what to_json would have kept of it
        return template
