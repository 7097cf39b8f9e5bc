"""Keep the lines two different extractors agree on.

trafilatura keeps nearly all of an article and too much around it (lists of headlines, ads,
table-layout menus); readability-lxml picks one block of the page by its text and link density,
so it rarely keeps furniture but sometimes keeps too little, or the wrong block. A trafilatura
line survives when its words are in readability's text, or when it reads like a paragraph of
the article (long, ends like a sentence) and does not come after the agreed part, or is one of
the sentences just before it (a short lead, which readability's block often starts after), or
sits between agreed lines in the page's block that holds them (a heading, a list item: readability
drops short blocks); readability's own lead sentences before the first line both have are put
back in front. Where readability found nothing or only a caption, trafilatura's text stands;
where trafilatura kept only a part of readability's block, readability's text stands; where the
two picked different blocks of the page, the one with more paragraph-like text wins. These are the decisions
trafilatura's own fallback makes (``fast=False``), made here with the readability text we have
anyway instead of a second readability run.
"""

from __future__ import annotations

import copy
import functools
import re
from collections import Counter
from collections.abc import Callable
from itertools import chain

import lxml.html
from lxml import etree
from lxml.html import fragment_fromstring
from readability import Document
from readability.readability import REGEXES, Unparseable

from pipelines.stages.extraction.furniture import SENTENCE_END
from pipelines.stages.tokens import TOKEN

_BLOCKS = (
    "p",
    "div",
    "br",
    "li",
    "dd",
    "dt",
    "tr",
    "td",
    "th",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "section",
    "article",
    "figure",
    "figcaption",
)

# readability's block parsed again: as deep as the page can be (without huge_tree libxml2 stops
# at 256 levels, and an article nested deeper lost all but the lines before its nesting)
_SUMMARY_PARSER = lxml.html.HTMLParser(huge_tree=True)
# the tags readability's divToPElementsRe finds in a div's markup ("<p" is also "<param")
_BLOCK_TAG_STARTS = ("blockquote", "dl", "div", "img", "ol", "p", "pre", "table", "ul")
_INLINE_TAGS = frozenset(
    ("a", "b", "cite", "code", "em", "font", "i", "small", "span", "strong", "sub", "sup", "u")
)

LINE_AGREES = 0.7  # share of a line's tokens found in readability's text
EXTRACTORS_AGREE = 0.6  # share of readability's tokens found in trafilatura's text
READABILITY_TOO_SHORT = 0.1  # of trafilatura's tokens: readability picked a caption or a teaser
TEXT_INSIDE = 0.9  # share of trafilatura's tokens in readability's text: one block, ...
READABILITY_LONGER = 1.5  # ... of which trafilatura kept only a part
PARAGRAPH_TOKENS = 25  # a line this long that ends like a sentence is article prose
LEAD_TOKENS = 12  # ... and this long, just before the first confirmed line: the lead readability missed
ARTICLE_CONFIRMED = 0.5  # share of a block's tokens in confirmed lines: the article's, not the layout's
# paragraphs readability's text needs where trafilatura's has none (trafilatura's own fallback
# takes any): fewer are a notice (a page not found, a paywall) as often as an article
ALONE_PARAGRAPHS = 3
LINK_SHARE = 0.5  # share of an element's text in links past which it is a link, not the article's
# elements whose whole text trafilatura prints as one line (a cell: one cell of a table row)
_LINE_ELEMENTS = frozenset(
    ("p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "pre", "dt", "dd", "blockquote", "figcaption")
)
_LINE_KEY_CHARS = 40  # a line is found in the page by its first characters
_LISTED_CHARS = 100_000  # a text this long or shorter is tokenised into a list, faster than streaming
# after the last confirmed line: the elements whose lines continue the article without ending in
# a sentence, and the markup between a continuing line and the confirmed line's container
_CONTINUING_TAGS = frozenset(("h2", "h3", "h4", "h5", "h6", "li", "dt", "dd"))
_TEXT_MARKUP = (
    _CONTINUING_TAGS
    | {"p", "ul", "ol", "dl", "blockquote", "figure", "figcaption", "pre", "code"}
    | {"strong", "em", "b", "i", "span"}
)


class _ParsedDocument(Document):
    """readability-lxml's Document over a tree trafilatura's loader already parsed.

    readability's own ``_parse`` runs lxml's ``Cleaner`` over a deep copy of the page (4 ms, a
    sixth of the stage's time). For the text, what the Cleaner does that matters is removing
    ``script``, ``style`` and ``link`` elements; the loader has dropped comments and processing
    instructions already, and attributes do not reach the text. So this parse copies the tree
    (``summary`` parses again when it retries, and needs the original) and strips just those;
    ``tests/pipelines/stages/test_extraction.py`` checks it gives readability's own text.
    """

    def _parse(self, input: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
        for element in input.xpath("//*[@hidden]"):  # as readability's _parse, on its input
            element.drop_tree()
        for element in input.xpath("//*[@style]"):
            if REGEXES["displayNoneRe"].search(element.get("style")):
                element.drop_tree()
        self.encoding = "utf-8"
        document = copy.deepcopy(input)
        etree.strip_elements(document, "script", "style", "link", with_tail=False)
        return document

    def transform_misused_divs_into_paragraphs(self) -> None:
        """readability-lxml 0.9's, but a div is told to hold a block by the names of the elements
        under it: readability serialises all a div holds and searches the markup for those names,
        and every wrapper holds the whole page again (a fifth of its time on deep pages). The
        same answer needs a tree without comments (readability would find a name in one): the
        loader's parser drops them (``remove_comments``).
        ``tests/pipelines/stages/test_extraction.py`` checks the trees are readability's."""
        for div in self.tags(self.html, "div"):
            if not any(
                isinstance(tag := inner.tag, str) and tag.lower().startswith(_BLOCK_TAG_STARTS)
                for inner in div.iterdescendants()
            ):
                div.tag = "p"
        for div in self.tags(self.html, "div"):  # the rest is readability's own
            children = list(div)
            paragraph = None
            if div.text and div.text.strip():
                paragraph = fragment_fromstring("<p/>")
                paragraph.text = div.text
                div.text = None
                div.insert(0, paragraph)
            for child in children:
                if child.tag == "br":
                    paragraph = None
                    continue
                if child.tag not in _INLINE_TAGS or REGEXES["divToPElementsRe"].search(
                    etree.tounicode(child, method="html")
                ):
                    paragraph = None
                    continue
                if paragraph is None:
                    paragraph = fragment_fromstring("<p/>")
                    child.addprevious(paragraph)
                paragraph.append(child)
            for position, child in reversed(list(enumerate(div))):
                if child.tail and child.tail.strip():
                    tail = fragment_fromstring("<p/>")
                    tail.text = child.tail
                    child.tail = None
                    div.insert(position + 1, tail)
                if child.tag == "br":
                    child.drop_tree()


def readability_text(tree: lxml.html.HtmlElement, document: type[Document] = _ParsedDocument) -> str:
    """readability-lxml's main text of an already parsed page ("" when it finds none)."""
    try:
        summary = document(tree).summary(html_partial=True)
    except Unparseable:
        return ""
    if not summary.strip():
        return ""
    try:
        fragment = lxml.html.fragment_fromstring(summary, create_parent="div", parser=_SUMMARY_PARSER)
    except (AssertionError, etree.ParserError):  # a summary of a page with no body ("<html></html>")
        return ""
    for element in fragment.iter(*_BLOCKS):
        element.tail = "\n" + (element.tail or "")
    lines = (" ".join(line.split()) for line in fragment.text_content().splitlines())
    return "\n".join(line for line in lines if line)


def agreed_text(
    text: str,
    reference: str,
    tree: lxml.html.HtmlElement | None = None,
    *,
    line_agrees: float = LINE_AGREES,
    extractors_agree: float = EXTRACTORS_AGREE,
    paragraph_tokens: int = PARAGRAPH_TOKENS,
) -> str:
    """The lines of ``text`` that ``reference`` confirms, or ``reference`` if it is the article;
    with the page's ``tree``, also the lines in the article's block between confirmed lines, and
    those after the last one that go on in its container.

    The keywords are the module's constants, given only by ``make eval``'s cross-validation."""
    lines = [line for line in text.splitlines() if line.strip()]
    line_tokens = [_tokens(line) for line in lines]
    reference_lines = reference.splitlines()
    reference_tokens = [_tokens(line) for line in reference_lines]
    if not lines:  # trafilatura found none: readability's text, if it holds an article's paragraphs
        paragraphs = sum(
            _is_paragraph(line.strip(), tokens, paragraph_tokens)
            for line, tokens in zip(reference_lines, reference_tokens, strict=True)
        )
        return reference if paragraphs >= ALONE_PARAGRAPHS else ""
    # the lines' tokens summed: a token never spans a line break, and adding is cheaper than tokenising
    confirmed = Counter()
    for tokens in reference_tokens:
        confirmed.update(tokens)
    reference_size = confirmed.total()
    text_size = sum(tokens.total() for tokens in line_tokens)
    whole = Counter()
    for tokens in line_tokens:
        whole.update(tokens)
    shared = (confirmed & whole).total()
    text_prose = _prose_size(lines, line_tokens, paragraph_tokens)
    reference_prose = _prose_size(reference_lines, reference_tokens, paragraph_tokens)
    if not reference_size or (
        # a caption or a teaser; unless it holds the prose and trafilatura's bulk is not (a stylesheet)
        reference_size < READABILITY_TOO_SHORT * text_size and reference_prose <= text_prose / 2
    ):
        return text
    # readability's lines before the first one both have are a lead (taken below), not the longer block
    shared_from = _first_shared_line(reference_tokens, whole, line_agrees)
    from_shared = sum(tokens.total() for tokens in reference_tokens[shared_from:])
    if shared >= TEXT_INSIDE * text_size and from_shared > READABILITY_LONGER * text_size:
        return reference  # trafilatura kept a part of readability's block
    if shared < extractors_agree * reference_size:  # two different blocks: the more article-like
        return reference if reference_prose > text_prose else text
    agrees = []
    for tokens in line_tokens:
        found = sum(min(count, confirmed[token]) for token, count in tokens.items())
        agrees.append(bool(tokens) and found >= line_agrees * tokens.total())
        if agrees[-1]:  # a line repeated (a table copy of the lead) is confirmed once
            for token, count in tokens.items():  # in place: `confirmed -= tokens` copies it per line
                confirmed[token] = max(0, confirmed[token] - count)
    last_agreed = max((i for i, agreed in enumerate(agrees) if agreed), default=-1)
    first_agreed = agrees.index(True) if True in agrees else len(lines)
    lead = first_agreed
    while lead > 0 and _is_lead(lines[lead - 1], line_tokens[lead - 1]):
        lead -= 1
    paragraphs = [
        _is_paragraph(line, tokens, paragraph_tokens) for line, tokens in zip(lines, line_tokens, strict=True)
    ]
    keep = [
        agrees[i] or lead <= i < first_agreed or (i < last_agreed and paragraphs[i])
        for i in range(len(lines))
    ]
    if tree is not None:
        # after the article's first paragraph: above it sit the headline's info lines (date, source)
        first_prose = next((i for i, agreed in enumerate(agrees) if agreed and paragraphs[i]), last_agreed)
        between = [i for i in range(first_prose + 1, last_agreed) if not keep[i] and line_tokens[i]]
        after = [i for i in range(last_agreed + 1, len(lines)) if line_tokens[i]] if last_agreed >= 0 else []
        for i in _inside_article(tree, lines, line_tokens, agrees, between, after):
            keep[i] = True
    kept = [line for line, wanted in zip(lines, keep, strict=True) if wanted]
    return "\n".join(_lead_only_readability_has(reference_lines, reference_tokens, whole, line_agrees) + kept)


def _lead_only_readability_has(
    reference_lines: list[str],
    reference_tokens: list[Counter[str]],
    text_tokens: Counter[str],
    line_agrees: float = LINE_AGREES,
) -> list[str]:
    """readability's lead sentences before the first of its lines that trafilatura has too."""
    first_shared = _first_shared_line(reference_tokens, text_tokens, line_agrees)
    if first_shared == len(reference_lines):
        return []  # none in common: not a lead of the same article
    start = first_shared
    while start > 0 and _is_lead(reference_lines[start - 1], reference_tokens[start - 1]):
        start -= 1
    return reference_lines[start:first_shared]


def _first_shared_line(
    reference_tokens: list[Counter[str]], text_tokens: Counter[str], line_agrees: float = LINE_AGREES
) -> int:
    """The first of readability's lines whose words trafilatura's text has (their number if none)."""
    for i, tokens in enumerate(reference_tokens):
        found = sum(min(count, text_tokens[token]) for token, count in tokens.items())
        if tokens and found >= line_agrees * tokens.total():
            return i
    return len(reference_tokens)


def _inside_article(
    tree: lxml.html.HtmlElement,
    lines: list[str],
    line_tokens: list[Counter[str]],
    agrees: list[bool],
    candidates: list[int],
    after: list[int],
) -> list[int]:
    """The ``candidates`` (lines between confirmed ones) in the article's block, and the lines
    ``after`` the last confirmed one that continue its paragraphs (:func:`_continues`): the
    headings, list items and closing paragraphs of the article readability left out."""
    if not candidates and not after:
        return []
    wanted = {*candidates, *after}
    keys = [
        _line_key(line) if agreed or i in wanted else ""
        for i, (line, agreed) in enumerate(zip(lines, agrees, strict=True))
    ]
    elements = _line_elements(tree, set(keys) - {""})
    found = [elements.get(key) for key in keys]
    last = found[max(i for i, agreed in enumerate(agrees) if agreed)] if after else None
    container = last.getparent() if last is not None else None
    # one answer per element: the lines after a <br> in one big element all find that element
    is_part = functools.cache(_is_article_part)
    continued = [
        i
        for i in after
        if found[i] is not None
        and container is not None
        and _continues(found[i], lines[i], container, is_part)
    ]
    return _in_block(found, line_tokens, agrees, candidates, is_part) + continued


def _in_block(
    found: list[lxml.html.HtmlElement | None],
    line_tokens: list[Counter[str]],
    agrees: list[bool],
    candidates: list[int],
    is_part: Callable[[lxml.html.HtmlElement, lxml.html.HtmlElement], bool],
) -> list[int]:
    """The candidate lines whose element (``found``) lies in the block that holds the confirmed
    lines, and is not a link.

    The block is the confirmed lines' elements' nearest common ancestor, and counts only when
    confirmed text makes at least :data:`ARTICLE_CONFIRMED` of it (the article, not a layout
    table or the whole page, whose other lines are furniture).
    """
    if not candidates:
        return []
    confirmed = [element for element, agreed in zip(found, agrees, strict=True) if agreed]
    confirmed = [element for element in confirmed if element is not None]
    if len(confirmed) < 2:
        return []
    block = _common_ancestor(confirmed)
    if block is None or block.tag in ("body", "html"):
        return []
    confirmed_size = sum(tokens.total() for tokens, agreed in zip(line_tokens, agrees, strict=True) if agreed)
    if confirmed_size < ARTICLE_CONFIRMED * _tokens(block.text_content()).total():
        return []
    return [i for i in candidates if found[i] is not None and is_part(found[i], block)]


def _continues(
    element: lxml.html.HtmlElement,
    line: str,
    container: lxml.html.HtmlElement,
    is_part: Callable[[lxml.html.HtmlElement, lxml.html.HtmlElement], bool],
) -> bool:
    """A line after the last confirmed one that goes on with the article: its element is in the
    confirmed line's container through text markup only (a paragraph, a heading, a list item,
    not a box of its own: a call to act, a related list), not a link, and a heading, a list
    item or a sentence (not an info line ending in brackets, as a caption or "(views: 120)")."""
    if element.tag not in _CONTINUING_TAGS and (
        not SENTENCE_END.search(line) or line.rstrip().endswith((")", "）"))
    ):
        return False
    for ancestor in (element, *element.iterancestors()):
        if ancestor is container:
            return is_part(element, container)
        if ancestor.tag not in _TEXT_MARKUP:
            return False
    return False


def _line_elements(tree: lxml.html.HtmlElement, keys: set[str]) -> dict[str, lxml.html.HtmlElement]:
    """The page's elements for the line ``keys`` (the first characters of the line trafilatura
    prints for them): a block's whole text, or an element's own text (a tail counts for its
    parent); the first in the page wins."""
    elements = {}
    for element in tree.iter():
        tag = element.tag
        if not isinstance(tag, str):
            continue
        found = []
        if tag in _LINE_ELEMENTS:
            found.append((_opening_key(element), element))
        # white space only has the key "", never looked for: most tails, between the elements
        text, tail = element.text, element.tail
        if text and not text.isspace():
            found.append((_key(text), element))
        if tail and not tail.isspace() and (parent := element.getparent()) is not None:
            found.append((_key(tail), parent))
        for key, owner in found:
            if key in keys and key not in elements:
                elements[key] = owner
                if len(elements) == len(keys):
                    return elements
    return elements


def _line_key(line: str) -> str:
    """The key of a trafilatura line: without its list dash; a table row by its longest cell."""
    line = line.strip()
    if line.startswith("|"):
        line = max((cell.strip() for cell in line.strip("|").split("|")), key=len, default="")
    elif line.startswith("- "):
        line = line[2:]
    return _key(line)


def _opening_key(element: lxml.html.HtmlElement) -> str:
    """The key of an element's whole text, from as much of it as the key needs (a layout cell
    can hold the whole page)."""
    opening = ""
    for piece in element.itertext():
        opening += piece
        if len(opening) > _LINE_KEY_CHARS and len(key := _key(opening)) == _LINE_KEY_CHARS:
            return key
    return _key(opening)


def _key(text: str) -> str:
    return " ".join(text.split()).lower()[:_LINE_KEY_CHARS]


def _common_ancestor(elements: list[lxml.html.HtmlElement]) -> lxml.html.HtmlElement | None:
    """The elements' nearest common ancestor (or one of them): the highest point of the first
    one's path up where another's path up meets it; each path is walked once, as far as it meets."""
    path = [elements[0], *elements[0].iterancestors()]
    heights = {element: height for height, element in enumerate(path)}
    highest = 0
    for element in elements[1:]:
        met = next((heights[up] for up in chain((element,), element.iterancestors()) if up in heights), None)
        if met is None:
            return None
        highest = max(highest, met)
    return path[highest]


def _is_article_part(element: lxml.html.HtmlElement, block: lxml.html.HtmlElement) -> bool:
    """Inside the article's block, not in a link, and not mostly link text (a "related" list);
    not in a table cell either (a page laid out in tables puts its info boxes and ads in cells)."""
    for ancestor in (element, *element.iterancestors()):
        if ancestor is block:
            break
        if ancestor.tag in ("a", "td", "th"):
            return False
    else:
        return False  # outside the block
    text_chars = len("".join(element.text_content().split()))
    link_chars = sum(len("".join(link.text_content().split())) for link in element.iter("a"))
    return link_chars <= LINK_SHARE * text_chars


def _tokens(text: str) -> Counter[str]:
    """Counted in C, not by a generator: a line's tokens listed at once, a longer text's
    streamed (a list of every token of a huge page would hold gigabytes)."""
    ascii_only = text.isascii()
    if ascii_only:  # lowercased as a whole: the same tokens
        text = text.lower()
    listed = len(text) <= _LISTED_CHARS
    tokens = TOKEN.findall(text) if listed else map(re.Match.group, TOKEN.finditer(text))
    return Counter(tokens if ascii_only else map(str.lower, tokens))


def _prose_size(
    lines: list[str], line_tokens: list[Counter[str]], paragraph_tokens: int = PARAGRAPH_TOKENS
) -> int:
    """Tokens in the lines that read like paragraphs of an article."""
    return sum(
        tokens.total()
        for line, tokens in zip(lines, line_tokens, strict=True)
        if _is_paragraph(line.strip(), tokens, paragraph_tokens)
    )


def _is_lead(line: str, tokens: Counter[str]) -> bool:
    """A sentence that can open the article: not a caption (often ending in its photo credit in
    brackets), not a teaser of another one ("...")."""
    line = line.rstrip()
    return _is_paragraph(line, tokens, LEAD_TOKENS) and not line.endswith((")", "）", "...", "…"))


def _is_paragraph(line: str, tokens: Counter[str], min_tokens: int = PARAGRAPH_TOKENS) -> bool:
    return (
        tokens.total() >= min_tokens and not line.startswith(("- ", "|")) and bool(SENTENCE_END.search(line))
    )
