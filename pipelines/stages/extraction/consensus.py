"""Keep the lines two different extractors agree on.

trafilatura keeps nearly all of an article and too much around it (lists of headlines, ads,
table-layout menus); readability-lxml picks one block of the page by its text and link density,
so it rarely keeps furniture but sometimes keeps too little, or the wrong block. A trafilatura
line survives when its words are in readability's text, or when it reads like a paragraph of
the article (long, ends like a sentence) and does not come after the agreed part, or is one of
the sentences just before it (a short lead, which readability's block often starts after);
readability's own lead sentences before the first line both have are put back in front. Where
readability found nothing or only a caption, trafilatura's text stands; where trafilatura kept
only a part of readability's block, readability's text stands; where the two picked different
blocks of the page, the one with more paragraph-like text wins. These are the decisions
trafilatura's own fallback makes (``fast=False``), made here with the readability text we have
anyway instead of a second readability run.
"""

from __future__ import annotations

import copy
from collections import Counter

import lxml.html
from lxml import etree
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

LINE_AGREES = 0.7  # share of a line's tokens found in readability's text
EXTRACTORS_AGREE = 0.6  # share of readability's tokens found in trafilatura's text
READABILITY_TOO_SHORT = 0.1  # of trafilatura's tokens: readability picked a caption or a teaser
TEXT_INSIDE = 0.9  # share of trafilatura's tokens in readability's text: one block, ...
READABILITY_LONGER = 2.0  # ... of which trafilatura kept only a part
PARAGRAPH_TOKENS = 25  # a line this long that ends like a sentence is article prose
LEAD_TOKENS = 12  # ... and this long, just before the first confirmed line: the lead readability missed


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


def readability_text(tree: lxml.html.HtmlElement, document: type[Document] = _ParsedDocument) -> str:
    """readability-lxml's main text of an already parsed page ("" when it finds none)."""
    try:
        summary = document(tree).summary(html_partial=True)
    except Unparseable:
        return ""
    if not summary.strip():
        return ""
    fragment = lxml.html.fragment_fromstring(summary, create_parent="div", parser=_SUMMARY_PARSER)
    for element in fragment.iter(*_BLOCKS):
        element.tail = "\n" + (element.tail or "")
    lines = (" ".join(line.split()) for line in fragment.text_content().splitlines())
    return "\n".join(line for line in lines if line)


def agreed_text(text: str, reference: str) -> str:
    """The lines of ``text`` that ``reference`` confirms, or ``reference`` if it is the article."""
    lines = [line for line in text.splitlines() if line.strip()]
    line_tokens = [_tokens(line) for line in lines]
    confirmed = _tokens(reference)
    reference_size = confirmed.total()
    text_size = sum(tokens.total() for tokens in line_tokens)
    whole = Counter()
    for tokens in line_tokens:
        whole.update(tokens)
    shared = (confirmed & whole).total()
    text_prose = _prose_size(lines, line_tokens)
    reference_lines = reference.splitlines()
    reference_tokens = [_tokens(line) for line in reference_lines]
    reference_prose = _prose_size(reference_lines, reference_tokens)
    if not reference_size or (
        # a caption or a teaser; unless it holds the prose and trafilatura's bulk is not (a stylesheet)
        reference_size < READABILITY_TOO_SHORT * text_size and reference_prose <= text_prose / 2
    ):
        return text
    if shared >= TEXT_INSIDE * text_size and reference_size > READABILITY_LONGER * text_size:
        return reference  # trafilatura kept a part of readability's block
    if shared < EXTRACTORS_AGREE * reference_size:  # two different blocks: the more article-like
        return reference if reference_prose > text_prose else text
    agrees = []
    for tokens in line_tokens:
        found = sum(min(count, confirmed[token]) for token, count in tokens.items())
        agrees.append(bool(tokens) and found >= LINE_AGREES * tokens.total())
        if agrees[-1]:  # a line repeated (a table copy of the lead) is confirmed once
            for token, count in tokens.items():  # in place: `confirmed -= tokens` copies it per line
                confirmed[token] = max(0, confirmed[token] - count)
    last_agreed = max((i for i, agreed in enumerate(agrees) if agreed), default=-1)
    first_agreed = agrees.index(True) if True in agrees else len(lines)
    lead = first_agreed
    while lead > 0 and _is_lead(lines[lead - 1], line_tokens[lead - 1]):
        lead -= 1
    kept = [
        line
        for i, (line, tokens) in enumerate(zip(lines, line_tokens, strict=True))
        if agrees[i] or lead <= i < first_agreed or (i < last_agreed and _is_paragraph(line, tokens))
    ]
    return "\n".join(_lead_only_readability_has(reference_lines, reference_tokens, whole) + kept)


def _lead_only_readability_has(
    reference_lines: list[str], reference_tokens: list[Counter[str]], text_tokens: Counter[str]
) -> list[str]:
    """readability's lead sentences before the first of its lines that trafilatura has too."""
    before = []
    for line, tokens in zip(reference_lines, reference_tokens, strict=True):
        found = sum(min(count, text_tokens[token]) for token, count in tokens.items())
        if tokens and found >= LINE_AGREES * tokens.total():
            break
        before.append((line, tokens))
    else:
        return []  # none in common: not a lead of the same article
    start = len(before)
    while start > 0 and _is_lead(*before[start - 1]):
        start -= 1
    return [line for line, _ in before[start:]]


def _tokens(text: str) -> Counter[str]:
    return Counter(match.group().lower() for match in TOKEN.finditer(text))  # no list of every token


def _prose_size(lines: list[str], line_tokens: list[Counter[str]]) -> int:
    """Tokens in the lines that read like paragraphs of an article."""
    return sum(
        tokens.total()
        for line, tokens in zip(lines, line_tokens, strict=True)
        if _is_paragraph(line.strip(), tokens)
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
