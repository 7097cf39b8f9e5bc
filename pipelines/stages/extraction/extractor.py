"""The extractor: page bytes to clean article text and metadata.

The steps, one module each: ``metadata`` reads the whole page first (meta tags, JSON-LD, the
info line under the headline, editor lines); ``template`` removes the blocks the page shares
with other pages of its site, when the caller learned them; ``furniture`` prunes blocks that are
never the article; trafilatura extracts the text and readability-lxml, on the same pruned page, gives a
second opinion that ``consensus`` uses to drop the lines only trafilatura kept; ``furniture``
then moves metadata lines (editor, reviewers, source) out of the text and drops furniture lines.
``newsarchive extract`` and the crawl both call :func:`extract`.
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import lxml.etree
import lxml.html
from dateutil.parser import UnknownTimezoneWarning
from htmldate import find_date

from pipelines.runtime.imports import unimportable
from pipelines.stages.charset import decode_html
from pipelines.stages.extraction.consensus import agreed_text, readability_text
from pipelines.stages.extraction.furniture import clean_lines, drop_link_lists, prune
from pipelines.stages.extraction.metadata import PageMetadata, page_metadata, parse_published
from pipelines.stages.extraction.nesting import flatten
from pipelines.stages.extraction.provenance import EXTRACTOR_VERSION
from pipelines.stages.extraction.template import (
    blocks,
    drop_template,
    drop_template_lines,
    fingerprints,
    text_lines,
)

# trafilatura imports py3langid when it is installed (the language stage uses it), for a language
# filter we never ask for, and py3langid imports numpy: 13 MB and 0.06 s in every worker
with unimportable("py3langid"):
    import trafilatura
    import trafilatura.utils
    from trafilatura.metadata import extract_title

__all__ = [
    "EXTRACTOR",
    "EXTRACTOR_VERSION",
    "Extraction",
    "PageMetadata",
    "article_chars",
    "extract",
    "parse_published",
]

# trafilatura's loader parses with this parser: its own settings, plus huge_tree. Without it
# libxml2 stops at 256 levels and a deeper article (old CMSes nest tables in tables) came out
# empty; with it, 2048. Deeper than that, the page is flattened below FLAT_DEPTH and parsed again.
_PARSER = lxml.html.HTMLParser(
    collect_ids=False,
    default_doctype=False,
    encoding="utf-8",
    remove_comments=True,
    remove_pis=True,
    huge_tree=True,
)
# the element classes lxml.html's own lookup gives (HtmlElement; FormElement and the like for
# form, input, select, textarea, label), looked up in C: lxml.html's lookup is a Python method,
# called for every element the stages touch (4,000 calls a page, 1 ms of the stage's 27)
_HTML_CLASSES = lxml.etree.ElementNamespaceClassLookup(
    lxml.etree.ElementDefaultClassLookup(
        element=lxml.html.HtmlElement,
        comment=lxml.html.HtmlComment,
        pi=lxml.html.HtmlProcessingInstruction,
        entity=lxml.html.HtmlEntity,
    )
)
_HTML_CLASSES.get_namespace(None).update(
    {
        "form": lxml.html.FormElement,
        "input": lxml.html.InputElement,
        "select": lxml.html.SelectElement,
        "textarea": lxml.html.TextareaElement,
        "label": lxml.html.LabelElement,
    }
)
_PARSER.set_element_class_lookup(_HTML_CLASSES)
trafilatura.utils.HTML_PARSER = _PARSER
# <font> is presentation only, and old CMSes leave it unclosed: each one nests the rest of the
# page one level deeper (300 of them and the article was past libxml2's limit). Its text stays.
_FONT_TAG = re.compile(r"</?font(?:\s[^>]*)?>", re.IGNORECASE)
_HTML_TAG = re.compile(r"<html[\s>]", re.IGNORECASE)
_HEAD_TAGS = ("title", "meta", "link", "base")  # of the markup before <html>: the page's head
MAX_HEAD_TAGS = 100  # of them moved to the head; the rest stay where they are (no text)
_DOCUMENT_TAGS = re.compile(
    r"<!doctype[^>]*>|<\?xml[^>]*>|</?(?:html|head|body)(?:\s[^>]*)?/?>", re.IGNORECASE
)
# a page nested past the parser's limit keeps its markup this deep, its text below (libxml2's own
# limit without huge_tree: a page past 2048 levels is nested by accident or on purpose)
FLAT_DEPTH = 256

MAX_LINKS = 2000  # links on a page past which its link lists are removed before anything else
EXTRACTOR = "trafilatura+readability"


@dataclass
class Extraction:
    """What the stage found on one page; ``text`` is None when there was no article."""

    metadata: PageMetadata
    text: str | None
    published_at: datetime | None
    charset: str
    too_deep: bool = False  # nested past the parser's limit even flattened: what is below it was not read
    fingerprints: list[int] | None = None  # the page's blocks, when asked for (``learn``)


def extract(
    body: bytes,
    url: str,
    header_charset: str | None = None,
    timezone: str = "UTC",
    drop_selectors: tuple[str, ...] = (),
    body_selector: str | None = None,
    max_links: int = MAX_LINKS,
    template: frozenset[int] = frozenset(),
    learn: bool = False,
) -> Extraction:
    """The stage as a plain function of the page's bytes, usable without a crawl.

    ``template`` is the page's site's template (``template.SiteTemplate``), removed before the
    rest; with ``learn``, the result holds the page's fingerprints to learn it from.
    """
    decoded = decode_html(body, header_charset)
    if _looks_binary(decoded.text):
        return Extraction(PageMetadata(), None, None, decoded.encoding)
    markup = _FONT_TAG.sub("", decoded.text)
    tree, too_deep = _load(markup)
    if too_deep:  # what a browser shows of it: the markup to FLAT_DEPTH, the text below
        tree, too_deep = _load(flatten(markup, FLAT_DEPTH))
    if too_deep:  # nested in a way flatten counts short of libxml2: its text and paragraphs only
        tree, too_deep = _load(flatten(markup, 0))
    if tree is None or too_deep:
        return Extraction(PageMetadata(), None, None, decoded.encoding, too_deep=too_deep)
    drop_link_lists(tree, max_links)
    metadata = page_metadata(tree, url)
    # fallbacks for what the page's own markup did not say, as trafilatura finds them
    metadata.title = metadata.title or extract_title(tree)
    page_blocks = list(blocks(tree)) if learn or template else []
    drop_template(tree, page_blocks, template)
    prune(tree, drop_selectors, body_selector)
    # fast: without trafilatura's fallback (readability again, on a copy of the page, then
    # justext, whose stoplists hold 27 MB); consensus makes that call with our readability text
    document = trafilatura.bare_extraction(
        tree,
        url=url,
        include_comments=False,
        include_tables=True,
        include_images=False,
        deduplicate=False,
        fast=True,
    )
    # trafilatura found no text (None): readability's may still be the article, as in
    # trafilatura's own fallback; consensus takes it only if it holds an article's paragraphs
    trafilatura_text = (document.text or "") if document is not None else ""
    text = clean_lines(agreed_text(trafilatura_text, readability_text(tree), tree), metadata)
    lines = text_lines(text) if learn or template else []
    page_blocks += lines
    text = drop_template_lines(text, lines, template)
    if not metadata.published_raw:
        with warnings.catch_warnings():  # htmldate meets zones like "EST" on real pages; harmless
            warnings.simplefilter("ignore", UnknownTimezoneWarning)
            metadata.published_raw = (
                find_date(
                    tree,
                    url=url,
                    original_date=True,
                    extensive_search=False,
                    max_date=date.today().isoformat(),
                )
                or metadata.printed_date
            )
    published_at = parse_published(metadata.published_raw, ZoneInfo(timezone))
    learned = fingerprints(page_blocks) if learn else None
    return Extraction(metadata, text or None, published_at, decoded.encoding, fingerprints=learned)


def _load(markup: str) -> tuple[lxml.html.HtmlElement | None, bool]:
    """The page's tree, and whether the parser stopped at its depth limit (the rest unread).

    trafilatura's loader: its parser settings (no comments or processing instructions), and its
    repairs (XML declarations lxml refuses in a str, doctypes libxml2 trips over).
    """
    tree = trafilatura.load_html(markup)
    too_deep = any("Excessive depth" in error.message for error in _PARSER.error_log)
    if tree is None or tree.find("body") is None:
        return _load_from_html_tag(markup) or (tree, too_deep)
    return tree, too_deep


def _load_from_html_tag(markup: str) -> tuple[lxml.html.HtmlElement, bool] | None:
    """The page parsed from its ``<html>`` tag, what came before it put where a browser shows it.

    Markup before ``<html>`` (a script, a server's warning) can leave libxml2 in ``<head>`` to the
    end of the page: the article under ``<head>``, no ``<body>``, and trafilatura refuses the tree.
    A browser puts that markup's title and meta tags in the head and its text atop the body.
    """
    start = _HTML_TAG.search(markup)
    if start is None or not start.start():
        return None
    loaded = _load(markup[start.start() :])
    body = loaded[0].find("body") if loaded[0] is not None else None
    if body is None:
        return None
    # a document's own tags in it (a second doctype, <html/>) would make lxml parse it as a
    # document of its own, not as the fragment it is
    prefix = _DOCUMENT_TAGS.sub("", markup[: start.start()])
    try:
        before = lxml.html.fragment_fromstring(prefix, create_parent="div", parser=_PARSER)
    except (AssertionError, lxml.etree.ParserError):  # lxml's fragment parser refuses it: left out
        return loaded
    lxml.etree.strip_elements(before, "script", "style", "noscript", with_tail=False)
    head = loaded[0].find("head")
    if head is None:
        head = loaded[0].makeelement("head")
        loaded[0].insert(0, head)
    # moved with remove(), not drop_tree(): drop_tree appends each one's tail to its neighbour's,
    # a copy of an ever longer string per element
    tails = []
    for position, element in enumerate(itertools.islice(before.iter(*_HEAD_TAGS), MAX_HEAD_TAGS)):
        tails.append(element.tail or "")
        element.tail = None
        element.getparent().remove(element)
        head.insert(position, element)
    before.text = "".join(tails) + (before.text or "")
    if before.text_content().replace("\ufeff", "").strip():
        body.insert(0, before)
    return loaded


_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")  # control codes but tab and line ends


def _looks_binary(text: str) -> bool:
    """Replacement characters or control codes in more than 1% of a page: not a text page."""
    sample = text[:20000]
    return not sample.strip() or len(_NOT_TEXT.findall(sample)) > len(sample) / 100


def article_chars(text: str) -> int:
    """Characters in paragraph-like lines: captions, menus and link lists don't count."""
    return sum(len(line) for line in text.split("\n\n") if len(line) >= 20)
