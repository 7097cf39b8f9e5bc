"""Markup nested past the parser's depth limit, flattened so that its text can still be read.

libxml2 stops a document at 2048 open elements (with ``huge_tree``; the limit keeps its stack
and time bounded) and what comes after is lost, though a browser shows it. :func:`flatten`
rewrites such markup in one linear pass: tags up to ``max_depth`` levels stay as they are, tags
below are removed and their text kept, a block element's start or end there becoming a paragraph
break (so the article's paragraphs stay paragraphs) and its scripts and styles going with it.

Depth is counted the way libxml2 builds its tree, or more: its void elements, ``<x/>``, the
start tags it ignores (``html``, ``head``, ``body``), the elements that close one of their kind,
the end tags that may close open elements and those it ignores. Where a page still tells the two
counts apart, the caller flattens again with ``max_depth`` 0: text, paragraph breaks and ``<br>``
only, three levels deep whatever the input.
"""

from __future__ import annotations

import re
from array import array

import lxml.html.defs

__all__ = ["flatten"]

# one token: a comment, another <!...> or <?...>, or a tag (a quoted attribute value, which
# starts after "=", may hold ">"). One left open runs to the end, as in HTML: no token is looked
# for twice, so a page of "<a <a <a" costs one pass, not one per "<". Text between is copied.
_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)|<[!?][^>]*(?:>|\Z)"
    r"|<(/?)([A-Za-z][^\t\n\f\r />]*)((?:[^>=]|=[\t\n\f\r ]*(?:\"[^\"]*\"|'[^']*')?)*)(?:>|\Z)",
    re.DOTALL,
)
# elements whose content is text to libxml2, not markup: their end, the first end tag of their name
_RAW_ENDS = {
    name: re.compile(rf"</{name}(?=[\t\n\f\r />])[^>]*(?:>|\Z)|\Z", re.IGNORECASE)
    for name in ["iframe", "noembed", "noframes", "script", "style", "textarea", "title", "xmp"]
}
# the void elements: HTML's, less the HTML5 ones libxml2 still nests (<wbr><wbr> is two levels)
_VOID = lxml.html.defs.empty_tags - {"embed", "source", "track", "wbr"}
_IGNORED = frozenset(["html", "head", "body"])  # one of each: libxml2 opens them once, ignores the rest
_CLOSE_THEIR_KIND = frozenset(["a", "li", "option", "p", "td", "tr"])  # <li><li>: siblings
# libxml2's end tag priorities: an end tag closes the elements open inside its own only if
# none of them has a higher priority; the other names have 100
_END_PRIORITY = {
    "div": 150,
    "td": 160,
    "th": 160,
    "tr": 170,
    "thead": 180,
    "tbody": 180,
    "tfoot": 180,
    "table": 190,
}  # and html, head and body, higher still, but never counted
# for each end priority, the names of a higher one (which an end tag of that priority cannot close)
_OUTRANKING = {
    level: [name for name, priority in _END_PRIORITY.items() if priority > level]
    for level in {*_END_PRIORITY.values(), 100}
}
_BREAKS = lxml.html.defs.block_tags | frozenset(
    ["article", "aside", "details", "figcaption", "figure", "footer", "header", "main", "nav", "section"]
)
# the names counted apart, HTML's, each as one string; any other counts as the one name "?", so that
# a page of a million made-up names costs no more than one of a million <div>s (where that counts
# short, the page is flattened again to depth 0)
_NAMES = {
    name: name for name in lxml.html.defs.tags | _BREAKS | _RAW_ENDS.keys() | _VOID | _END_PRIORITY.keys()
}


def flatten(markup: str, max_depth: int) -> str:
    """``markup`` with the elements nested deeper than ``max_depth`` removed, their text kept."""
    out: list[str] = []
    open_elements = _OpenElements()
    names = open_elements.names  # its length: the depth here
    paragraph = False  # a block element was removed since the last text: the next starts a paragraph
    position = 0
    while match := _TOKEN.search(markup, position):
        if match.start() > position:
            text = markup[position : match.start()]
            if paragraph and len(names) > max_depth and not text.isspace():
                out.append("<p>")
                paragraph = False
            out.append(text)
        position = match.end()
        name = _NAMES.get(match[2].lower(), "?") if match[2] else ""
        if not name or name in _IGNORED:  # a comment, a doctype, html/head/body: nothing to nest
            if len(names) < max_depth:
                out.append(match[0])
            continue
        if match[1]:  # an end tag
            depth = open_elements.closed_by(name)
            if depth is None:  # closes nothing open (libxml2 ignores it too): kept where text is
                if len(names) <= max_depth:
                    out.append(match[0])
                continue
            open_elements.close(depth)
            if depth < max_depth:
                out.append(match[0])
                paragraph = False
            elif name in _BREAKS:
                paragraph = True
            continue
        if name in _CLOSE_THEIR_KIND and names and names[-1] == name:
            open_elements.close(len(names) - 1)
        deep = len(names) >= max_depth
        self_closed = name in _VOID or match[3].endswith("/")
        if name in _RAW_ENDS and not self_closed:
            end = _RAW_ENDS[name].search(markup, position)
            if not deep:  # kept whole; below the limit, a script or a title is not text
                out.append(markup[match.start() : end.end()])
            position = end.end()
            continue
        if not deep:
            out.append(match[0])
            paragraph = False
        elif name == "br":
            out.append("<br>")
        elif name in _BREAKS:
            paragraph = True
        if not self_closed:
            open_elements.push(name)
    text = markup[position:]
    if paragraph and len(names) > max_depth and text.strip():
        out.append("<p>")
    out.append(text)
    return "".join(out)


class _OpenElements:
    """The names of the open elements, outermost first; what an end tag closes is found in
    constant time, so that a million open elements cost a million steps, not a million squared."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.positions: dict[str, array[int]] = {}  # where each name is open, outermost first

    def push(self, name: str) -> None:
        positions = self.positions.get(name)
        if positions is None:
            positions = self.positions[name] = array("q")
        positions.append(len(self.names))
        self.names.append(name)

    def close(self, depth: int) -> None:
        """Close the element at ``depth`` and those inside it."""
        while len(self.names) > depth:
            positions = self.positions[self.names.pop()]
            positions.pop()

    def closed_by(self, name: str) -> int | None:
        """The depth of the element the end tag ``name`` closes, as libxml2 decides it: its
        innermost open one, unless an element of a higher end priority is open inside it."""
        positions = self.positions.get(name)
        if not positions:
            return None
        if positions[-1] == len(self.names) - 1:  # the innermost: nothing between
            return positions[-1]
        priority = _END_PRIORITY.get(name, 100)
        barrier = max(
            (self.positions[other][-1] for other in _OUTRANKING[priority] if self.positions.get(other)),
            default=-1,
        )
        return positions[-1] if barrier < positions[-1] else None
