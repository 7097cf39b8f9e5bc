"""What a page says about its article besides the text: title, byline, editor, source, date.

Read from the whole page before any furniture is pruned (meta tags, JSON-LD, the info line under
the headline, editor lines), because the furniture is often where these are printed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import lxml.html

from pipelines.stages.extraction.script import for_rules, printed

DATE = re.compile(
    r"(?P<y>(?:19|20)\d{2})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
    r"(?:[T\s]*(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?)?"
)
_LD_DEPTH = 8  # how deep a JSON-LD value is searched for names
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_CJK_NAMES = r"[\u4e00-\u9fff·]{2,5}(?:\s+[\u4e00-\u9fff·]{2,5}){0,3}"
_LATIN_NAMES = r"[A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*){0,3}"
# With a colon anything short is a name; without one, only names are (编辑部收到… is text).
EDITOR_LINE = re.compile(
    r"^[\[【(（]?\s*(?:"
    r"(?:责任编辑|责编|编辑|编审|Editor|Responsible editor)\s*[:：]\s*(?P<name>[^\]】)）]{1,40}?)"
    rf"|(?:责任编辑|责编|编辑)\s+(?P<cjk>{_CJK_NAMES})"
    rf"|Edited by\s+(?P<latin>{_LATIN_NAMES})"
    r")\s*[\]】)）]?$"
)
REVIEW_LINE = re.compile(
    r"^[\[【(（]?\s*(?:"
    r"(?:一审|二审|三审|初审|复审|终审|审核|审校|校对|监制|统筹)"
    rf"\s*(?:[:：]\s*\S.{{0,40}}|\s+{_CJK_NAMES})"
    rf"|(?:First|Second|Third) instance\s+{_LATIN_NAMES}|(?:Proofread|Reviewed) by\s+{_LATIN_NAMES}"
    r")\s*[\]】)）]?$"
)
INFO_LINE = re.compile(r"^(?:发布日期|发布时间|时间|日期|(?:19|20)\d{2}[-/年])")
SOURCE = re.compile(
    r"(?:来源|稿源|Source)\s*[:：][ \t]?(?P<source>[^\s|｜].*?)"
    r"(?=\s*(?:(?:19|20)\d{2}[-/.年])|\s{2,}|\s*(?:作者|编辑|责任编辑|记者|【|\||｜)|$)"
)
_AUTHOR = re.compile(
    r"(?:作者|记者)\s*[:：][ \t]?(?P<names>[^\s|｜【].*?)(?=\s{2,}|\s*(?:来源|编辑|【|\||｜)|$)"
)
# "By Jane Doe", "Written by Jane Doe and John Roe - Staff Reporter": capitalised names, a short role
BYLINE_AUTHOR = re.compile(
    r"^(?:[Bb]y|BY|[Ww]ritten by)\s+(?P<name>[A-Z][\w.'-]*(?:\s+(?:and\s+)?[A-Z][\w.'-]*){0,5})"
    r"(?:\s*[-,|]\s*[^.!?]{0,30})?$"
)


@dataclass
class PageMetadata:
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    editor: str | None = None
    source: str | None = None
    section: str | None = None
    tags: list[str] = field(default_factory=list)
    canonical_url: str | None = None
    published_raw: str | None = None
    printed_date: str | None = None  # the first date printed in a short block, when markup says none
    noarchive: bool = False  # <meta name="robots" content="noarchive"> (or "none", or for us by name)


def parse_published(raw: str | None, zone: ZoneInfo) -> datetime | None:
    """A page's date as an aware datetime; dates without an offset are in the outlet's zone."""
    if not raw:
        return None
    raw = raw.strip()
    if _ISO_DATE.match(raw):
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    match = DATE.search(raw)
    if not match:
        return None
    try:
        return datetime(
            int(match["y"]),
            int(match["m"]),
            int(match["d"]),
            int(match["H"] or 0),
            int(match["M"] or 0),
            int(match["S"] or 0),
            tzinfo=zone,
        )
    except ValueError:
        return None


@dataclass
class _Markup:
    """The elements page_metadata reads, found in one pass over the page (an XPath each took
    as long as the pass)."""

    meta: dict[str, str] = field(default_factory=dict)  # first content of each name, lower-cased
    noarchive: bool = False
    headline: lxml.html.HtmlElement | None = None  # the first h1
    heading: lxml.html.HtmlElement | None = None  # ... or h2 of a "title" class, the first of both
    canonical: str | None = None  # the first href of a link rel="canonical"
    json_ld: list[str] = field(default_factory=list)


def _markup(tree: lxml.html.HtmlElement) -> _Markup:
    found = _Markup()
    for element in tree.iter("meta", "h1", "h2", "link", "script"):
        tag = element.tag
        if tag == "meta":
            name = element.get("name")
            key = (element.get("property") or name or element.get("itemprop") or "").lower()
            content = element.get("content")
            if key and content and key not in found.meta:
                found.meta[key] = content.strip()
            if (name or "").lower() in ROBOTS_NAMES and noarchive_in(content or ""):
                found.noarchive = True
        elif tag == "h1" or (tag == "h2" and "title" in element.get("class", "")):
            if found.heading is None:
                found.heading = element
            if tag == "h1" and found.headline is None:
                found.headline = element
        elif tag == "link":
            if found.canonical is None and element.get("rel") == "canonical":
                found.canonical = element.get("href")
        elif tag == "script" and element.get("type") == "application/ld+json" and element.text:
            found.json_ld.append(element.text)
    return found


def page_metadata(tree: lxml.html.HtmlElement, url: str) -> PageMetadata:
    markup = _markup(tree)
    meta = markup.meta
    ld = _json_ld_article(markup.json_ld)
    headline = markup.headline.text_content().strip() if markup.headline is not None else ""
    info = _info_line(markup.heading)
    dated_lines = _short_blocks(tree, DATED_LINE_CHARS)
    lines = [text for text in dated_lines if len(text) <= 60]
    printed = printed_date(dated_lines)

    metadata = PageMetadata(
        title=first(meta.get("og:title"), meta.get("articletitle"), _ld_text(ld.get("headline")), headline),
        canonical_url=first(markup.canonical, meta.get("og:url"), url),
        section=first(meta.get("article:section"), meta.get("columnname")),
        tags=split_list(
            first(meta.get("article:tag"), meta.get("keywords"), meta.get("news_keywords")) or ""
        ),
        noarchive=markup.noarchive,
    )
    metadata.source = first(
        meta.get("contentsource"), meta.get("source"), _match_group(SOURCE, info, "source")
    )
    author = first(
        meta.get("author"), ", ".join(_ld_names(ld.get("author"))), _match_group(_AUTHOR, info, "names")
    )
    metadata.authors = split_names(author or "")
    for line in lines:
        editor = EDITOR_LINE.match(for_rules(line))
        if editor:
            metadata.editor = editor_name(editor, line)
            break
    metadata.published_raw = _best_date(
        [
            meta.get(k)
            for k in (
                "article:published_time",
                "og:article:published_time",
                "pubdate",
                "publishdate",
                "datepublished",
                "dc.date",
                "date",
            )
        ]
        + [_ld_text(ld.get("datePublished")), info]
    )
    metadata.printed_date = printed
    return metadata


def _short_blocks(tree: lxml.html.HtmlElement, most_chars: int) -> list[str]:
    """The text of each ``p``, ``div``, ``span``, ``li`` and ``td`` of at most ``most_chars``
    (white space collapsed, empty ones left out), in document order.

    An element holds its descendants' text, so one too long makes every ancestor too long: read
    from the last element back, the ancestors of a long one are skipped instead of each building
    the text of all it holds (a page's wrappers, ten deep, each held the whole page: 1.4 ms a page).
    """
    too_long: set[lxml.html.HtmlElement] = set()  # holding the proxies keeps them the same objects
    found = []
    for element in reversed(list(tree.iter("p", "div", "span", "li", "td"))):
        if element in too_long:
            continue
        text = " ".join(element.text_content().split())
        if len(text) > most_chars:
            ancestor = element.getparent()
            while ancestor is not None and ancestor not in too_long:
                too_long.add(ancestor)
                ancestor = ancestor.getparent()
        elif text:
            found.append(text)
    found.reverse()
    return found


def _info_line(heading: lxml.html.HtmlElement | None) -> str:
    """The line of date/source/author under the headline, where Chinese pages print them."""
    if heading is None:
        return ""
    texts = []
    for sibling in heading.itersiblings():
        if not isinstance(sibling.tag, str):  # comments, processing instructions
            continue
        texts.append(" ".join(sibling.text_content().split()))
        if len(texts) == 3:
            break
    return "  ".join(texts)


def _json_ld_article(scripts: list[str]) -> dict:
    """The first JSON-LD object of the page's ``scripts`` typed as an Article (NewsArticle...), or ``{}``."""
    for script in scripts:
        try:
            data = json.loads(script)
        except (ValueError, RecursionError):
            continue
        for candidate in _ld_objects(data):
            if "Article" in str(candidate.get("@type", "")):
                return candidate
    return {}


def _ld_objects(data: object) -> Iterator[dict]:
    """The objects of a JSON-LD document, in order: at the top, in lists, in ``@graph``."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(reversed(value))
        elif isinstance(value, dict):
            yield value
            if isinstance(value.get("@graph"), list | dict):
                stack.append(value["@graph"])


def _ld_names(value: object) -> list[str]:
    """The texts in a JSON-LD value of any shape: a string, a number, an object's ``name`` (or
    ``@value``), or lists of these, nested; whatever else it holds is ignored."""
    names, stack = [], [(value, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if value.strip():
                names.append(value.strip())
        elif isinstance(value, int | float) and not isinstance(value, bool):
            names.append(str(value))
        elif depth < _LD_DEPTH and isinstance(value, dict):
            stack.append((value.get("name", value.get("@value")), depth + 1))
        elif depth < _LD_DEPTH and isinstance(value, list):
            stack.extend((item, depth + 1) for item in reversed(value))
    return names


def _ld_text(value: object) -> str | None:
    names = _ld_names(value)
    return names[0] if names else None


_MONTH_NAMES = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = rf"(?P<month>{'|'.join(sorted(_MONTH_NAMES, key=len, reverse=True))})\.?"
_YEAR = r"(?P<y>(?:19|20)\d{2})\b"
_TIME = r"(?:\s*[,-]?\s*(?:at\s+)?(?P<H>\d{1,2}):(?P<M>\d{2})(?:\s*(?P<pm>p\.?m)|\s*a\.?m)?)?"
# "January 16, 2012 19:19", "Jan. 16 , 2012 - 3:02 am"; "16 January 2012", "12 Jan, 2012"
MONTH_DATES = (
    re.compile(rf"\b{_MONTH}\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s*,?\s*{_YEAR}{_TIME}", re.IGNORECASE),
    re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+{_MONTH}\s*,?\s*{_YEAR}{_TIME}", re.IGNORECASE),
)
_ANY_YEAR = re.compile(r"(?:19|20)\d{2}")  # what DATE and MONTH_DATES need to match
DATED_LINE_CHARS = 120  # blocks this short may be a dateline; longer ones are prose


def printed_date(lines: list[str]) -> str | None:
    """The first date printed in the page's short lines (one with a time of day preferred), as
    ``YYYY-MM-DD[ HH:MM]``: the date a page shows its readers when its markup says none."""
    chosen = None
    for line in lines:
        if not _ANY_YEAR.search(line):  # every date pattern has one: most lines are read once, not thrice
            continue
        if match := DATE.search(line):
            date = (int(match["y"]), int(match["m"]), int(match["d"]), match["H"], match["M"], None)
        elif match := next(filter(None, (pattern.search(line) for pattern in MONTH_DATES)), None):
            month = _MONTH_NAMES[match["month"].lower()]
            date = (int(match["y"]), month, int(match["d"]), match["H"], match["M"], match["pm"])
        else:
            continue
        if date[3]:  # the first with a time of day, else the first
            chosen = date
            break
        chosen = chosen or date
    if chosen is None:
        return None
    year, month, day, hour, minute, pm = chosen
    if hour is None:
        return f"{year:04d}-{month:02d}-{day:02d}"
    hour = int(hour) + 12 if pm and int(hour) < 12 else int(hour)
    return f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute}"


def _best_date(candidates: list[str | None]) -> str | None:
    """The first candidate with a time of day, else the first with a date."""
    dated = [(c.strip(), match) for c in candidates if c and (match := DATE.search(c))]
    if not dated:
        return None
    candidate, match = next(((c, m) for c, m in dated if m["H"]), dated[0])
    return candidate if _ISO_DATE.match(candidate) else match.group(0)


ROBOTS_NAMES = ("robots", "newsarchive")  # meta names whose directives apply to us


def noarchive_in(directives: str) -> bool:
    """``noarchive`` (or ``none``) among robots directives, as in a meta tag or one X-Robots-Tag
    header; a header naming another crawler (``googlebot: noarchive``) is not for us."""
    text = directives.lower()
    agent, colon, rest = text.partition(":")
    if colon and agent.strip() and " " not in agent.strip() and agent.strip() != "unavailable_after":
        if agent.strip() not in ROBOTS_NAMES:
            return False
        text = rest
    return any(directive.strip() in ("noarchive", "none") for directive in text.split(","))


def editor_name(match: re.Match[str], line: str) -> str:
    """The editor's name from an :data:`EDITOR_LINE` match on ``for_rules(line)``, as printed."""
    return printed(match, line, "name", "cjk", "latin").strip()


def first(*values: str | None) -> str | None:
    for value in values:
        if value and value.strip():
            return value.strip()
    return None


def _match_group(pattern: re.Pattern[str], text: str, group: str) -> str | None:
    match = pattern.search(for_rules(text))
    return printed(match, text, group).strip() if match and match[group] else None


def split_list(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,，;；、|]", value) if part.strip()]


def split_names(value: str) -> list[str]:
    value = value.strip()
    if prefix := re.match(r"(?:本报)?(?:记者|通讯员|作者)\s*", for_rules(value)):
        value = value[prefix.end() :]
    separators = r"[,，;；、]|\s+and\s+"
    if re.search(r"[\u4e00-\u9fff]", value):  # Chinese bylines separate names with spaces
        separators += r"|\s+"
    return [name.strip() for name in re.split(separators, value) if name.strip()]
