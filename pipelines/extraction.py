"""Extraction stage: page bytes to clean article text and metadata.

Metadata is read from the whole page first (meta tags, JSON-LD, the info line under the
headline, editor lines), then page furniture is pruned (generic class/id vocabulary in English,
pinyin and Chinese CMS habits; lists of dated links; the outlet's own drop hints), trafilatura
extracts the text, and lines that are metadata (editor, reviewers, source, bare dates) or known
furniture are moved out of the text.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from zoneinfo import ZoneInfo

import lxml.html
import trafilatura
from cssselect import GenericTranslator
from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector

from crawler.items import Article
from pipelines.charset import decode_html

logger = logging.getLogger(__name__)

EXTRACTOR = "trafilatura"
EXTRACTOR_VERSION = version("trafilatura")

# class/id tokens (split on - _ and spaces) that mark page furniture on news sites
_FURNITURE_TOKENS = frozenset({
    "share", "sharebar", "bdshare", "fenxiang", "fx", "jiathis", "social", "tips", "reading",
    "breadcrumb", "breadcrumbs", "crumb", "crumbs", "position", "location", "weizhi", "dqwz", "related",
    "relate", "recommend", "recommended", "xgxw", "xgyd", "xgwz", "tjyd", "hot", "hotnews",
    "rank", "mood", "vote", "biaoqing", "xinqing", "comment", "comments", "respond", "reply",
    "pl", "pinglun", "cookie", "cookies", "consent", "gdpr", "privacy", "tools", "toolbar",
    "print", "qrcode", "erweima", "ewm", "download", "bjly", "liability", "zbtool", "nav",
    "navbar", "topnav", "menu", "footer", "foot", "copyright", "sidebar", "ad", "ads",
    "advert", "banner",
})
_TOKEN_SPLIT = re.compile(r"[\s_-]+")
_DATE = re.compile(
    r"(?P<y>(?:19|20)\d{2})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
    r"(?:[T\s]*(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?)?")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_BARE_DATE_LINE = re.compile(rf"^[\s(（\[]*{_DATE.pattern}[\s)）\]]*$")
_CJK_NAMES = r"[\u4e00-\u9fff·]{2,5}(?:\s+[\u4e00-\u9fff·]{2,5}){0,3}"
_LATIN_NAMES = r"[A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*){0,3}"
# With a colon anything short is a name; without one, only names are (编辑部收到… is text).
_EDITOR_LINE = re.compile(
    r"^[\[【(（]?\s*(?:"
    r"(?:责任编辑|责编|编辑|编审|Editor|Responsible editor)\s*[:：]\s*(?P<name>[^\]】)）]{1,40}?)"
    rf"|(?:责任编辑|责编|编辑)\s+(?P<cjk>{_CJK_NAMES})"
    rf"|Edited by\s+(?P<latin>{_LATIN_NAMES})"
    r")\s*[\]】)）]?$")
_REVIEW_LINE = re.compile(
    r"^[\[【(（]?\s*(?:"
    r"(?:一审|二审|三审|初审|复审|终审|审核|审校|校对|监制|统筹)"
    rf"\s*(?:[:：]\s*\S.{{0,40}}|\s+{_CJK_NAMES})"
    rf"|(?:First|Second|Third) instance\s+{_LATIN_NAMES}|(?:Proofread|Reviewed) by\s+{_LATIN_NAMES}"
    r")\s*[\]】)）]?$")
_INFO_LINE = re.compile(r"^(?:发布日期|发布时间|时间|日期|(?:19|20)\d{2}[-/年])")
_SOURCE = re.compile(
    r"(?:来源|稿源|Source)\s*[:：][ \t]?(?P<source>[^\s|｜].*?)"
    r"(?=\s*(?:(?:19|20)\d{2}[-/.年])|\s{2,}|\s*(?:作者|编辑|责任编辑|记者|【|\||｜)|$)")
_AUTHOR = re.compile(
    r"(?:作者|记者)\s*[:：][ \t]?(?P<names>[^\s|｜【].*?)(?=\s{2,}|\s*(?:来源|编辑|【|\||｜)|$)")
_FURNITURE_LINE = re.compile(
    r"^(?:分享到|分享至|扫一扫|打印本页|关闭窗口|【?打印】?|【?关闭】?|点击右上角|朋友圈|微信好友|"
    r"请使用浏览器分享功能|阅读剩余全文|您此时的心情|新闻表情排行|加载更多|相关阅读|相关新闻|推荐阅读|"
    r"延伸阅读|热门推荐|网友评论|发表评论|【字体|字号[:：]|"
    r"See also|Read also|Also read|Read more:|Related:|You may also like|Leave a (?:Comment|Reply)|"
    r"This site uses Akismet|This website uses cookies|Privacy & Cookies Policy|Share on |"
    r"Share this|by admin$)", re.IGNORECASE)
_BYLINE_AUTHOR = re.compile(r"^by\s+(?P<name>\S.{0,40})$", re.IGNORECASE)


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


@dataclass
class Extraction:
    """What the stage found on one page; ``text`` is None when there was no article."""

    metadata: PageMetadata
    text: str | None
    published_at: datetime | None
    charset: str


def extract(body: bytes, url: str, header_charset: str | None = None, timezone: str = "UTC",
            drop_selectors: tuple[str, ...] = (), body_selector: str | None = None) -> Extraction:
    """The stage as a plain function of the page's bytes, usable without a crawl."""
    decoded = decode_html(body, header_charset)
    if _looks_binary(decoded.text):
        return Extraction(PageMetadata(), None, None, decoded.encoding)
    # trafilatura's loader: its parser settings (no comments or processing instructions), and
    # its repairs (XML declarations lxml refuses in a str, doctypes libxml2 trips over)
    tree = trafilatura.load_html(decoded.text)
    if tree is None:
        return Extraction(PageMetadata(), None, None, decoded.encoding)
    metadata = _page_metadata(tree, url)
    _prune(tree, drop_selectors, body_selector)
    document = trafilatura.bare_extraction(
        tree, url=url, with_metadata=True, include_comments=False, include_tables=True,
        include_images=False, deduplicate=False)
    text = None
    if document is not None:
        metadata.title = metadata.title or document.title
        if not metadata.authors and document.author:
            metadata.authors = _split_names(document.author)
        metadata.published_raw = metadata.published_raw or document.date
        if not metadata.tags and document.tags:
            metadata.tags = _split_list(document.tags if isinstance(document.tags, str)
                                        else ",".join(document.tags))
        text = _clean_lines(document.text or "", metadata)
    published_at = parse_published(metadata.published_raw, ZoneInfo(timezone))
    return Extraction(metadata, text or None, published_at, decoded.encoding)


def _looks_binary(text: str) -> bool:
    """Replacement characters or control codes in more than 1% of a page: not a text page."""
    sample = text[:20000]
    bad = sum(1 for c in sample if c == "\ufffd" or (c < " " and c not in "\t\n\r"))
    return not sample.strip() or bad > len(sample) / 100


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
    match = _DATE.search(raw)
    if not match:
        return None
    try:
        return datetime(int(match["y"]), int(match["m"]), int(match["d"]), int(match["H"] or 0),
                        int(match["M"] or 0), int(match["S"] or 0), tzinfo=zone)
    except ValueError:
        return None


def _page_metadata(tree: lxml.html.HtmlElement, url: str) -> PageMetadata:
    meta = {}
    for element in tree.iter("meta"):
        key = (element.get("property") or element.get("name") or element.get("itemprop") or "").lower()
        if key and element.get("content") and key not in meta:
            meta[key] = element.get("content").strip()
    ld = _json_ld_article(tree)
    headline = tree.xpath("string((//h1)[1])").strip()
    info = _info_line(tree)
    short_blocks = (" ".join(e.text_content().split()) for e in tree.iter("p", "div", "span", "li", "td"))
    lines = [text for text in short_blocks if text and len(text) <= 60]

    canonical = tree.xpath("string(//link[@rel='canonical']/@href)").strip()
    metadata = PageMetadata(
        title=_first(meta.get("og:title"), meta.get("articletitle"), ld.get("headline"), headline),
        canonical_url=_first(canonical, meta.get("og:url"), url),
        section=_first(meta.get("article:section"), meta.get("columnname")),
        tags=_split_list(
            _first(meta.get("article:tag"), meta.get("keywords"), meta.get("news_keywords")) or ""),
    )
    metadata.source = _first(meta.get("contentsource"), meta.get("source"),
                             _match_group(_SOURCE, info, "source"))
    author = _first(meta.get("author"), _ld_author(ld), _match_group(_AUTHOR, info, "names"))
    metadata.authors = _split_names(author or "")
    for line in lines:
        editor = _EDITOR_LINE.match(line)
        if editor:
            metadata.editor = _editor_name(editor)
            break
    metadata.published_raw = _best_date(
        [meta.get(k) for k in ("article:published_time", "og:article:published_time", "pubdate",
                               "publishdate", "datepublished", "dc.date", "date")]
        + [ld.get("datePublished"), info])
    return metadata


def _info_line(tree: lxml.html.HtmlElement) -> str:
    """The line of date/source/author under the headline, where Chinese pages print them."""
    for heading in tree.xpath("//h1 | //h2[contains(@class, 'title')]")[:1]:
        texts = []
        for sibling in heading.itersiblings():
            if not isinstance(sibling.tag, str):  # comments, processing instructions
                continue
            texts.append(" ".join(sibling.text_content().split()))
            if len(texts) == 3:
                break
        return "  ".join(texts)
    return ""


def _json_ld_article(tree: lxml.html.HtmlElement) -> dict:
    for script in tree.xpath("//script[@type='application/ld+json']/text()"):
        try:
            data = json.loads(script)
        except ValueError:
            continue
        for candidate in data if isinstance(data, list) else data.get("@graph", [data]):
            if isinstance(candidate, dict) and "Article" in str(candidate.get("@type", "")):
                return candidate
    return {}


def _ld_author(ld: dict) -> str | None:
    author = ld.get("author")
    if isinstance(author, list):
        author = author[0] if author else None
    if isinstance(author, dict):
        return author.get("name")
    return author if isinstance(author, str) else None


def _best_date(candidates: list[str | None]) -> str | None:
    """The first candidate with a time of day, else the first with a date."""
    dated = [(c.strip(), match) for c in candidates if c and (match := _DATE.search(c))]
    if not dated:
        return None
    candidate, match = next(((c, m) for c, m in dated if m["H"]), dated[0])
    return candidate if _ISO_DATE.match(candidate) else match.group(0)


def _prune(tree: lxml.html.HtmlElement, drop_selectors: tuple[str, ...], body_selector: str | None) -> None:
    body = tree.find("body")
    if body is None:
        return
    if body_selector:
        kept = body.xpath(GenericTranslator().css_to_xpath(body_selector))
        if kept:
            for child in list(body):
                body.remove(child)
            body.append(kept[0])
    for selector in drop_selectors:
        for element in body.xpath(GenericTranslator().css_to_xpath(selector)):
            element.drop_tree()  # keeps the text that follows it
    page_chars = len(body.text_content())
    for element in list(body.iter()):
        if element.getparent() is None or not isinstance(element.tag, str):
            continue
        if _is_furniture(element) and len(element.text_content()) < page_chars / 2:
            element.drop_tree()  # keeps the text that follows it
    for listing in body.xpath("//ul | //ol"):
        items = listing.findall("li")
        if len(items) >= 2 and sum(bool(_DATE.search(i.text_content())) for i in items) > len(items) / 2:
            listing.drop_tree()


def _is_furniture(element: lxml.html.HtmlElement) -> bool:
    if element.tag in ("nav", "footer", "aside", "form"):
        return True
    names = f"{element.get('class', '')} {element.get('id', '')}".lower()
    return any(token in _FURNITURE_TOKENS for token in _TOKEN_SPLIT.split(names) if token)


def _clean_lines(text: str, metadata: PageMetadata) -> str:
    kept = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line == metadata.title:
            continue
        editor = _EDITOR_LINE.match(line)
        if editor:
            metadata.editor = metadata.editor or _editor_name(editor)
            continue
        byline = _BYLINE_AUTHOR.match(line)
        if byline and not kept:
            metadata.authors = metadata.authors or [byline["name"].strip()]
            continue
        if _REVIEW_LINE.match(line) or _BARE_DATE_LINE.match(line) or _FURNITURE_LINE.match(line):
            continue
        source = _SOURCE.search(line)
        if source and len(line) < 100 and (source.start() == 0 or _INFO_LINE.match(line)):
            metadata.source = metadata.source or source["source"].strip()
            continue
        kept.append(line)
    return "\n\n".join(kept)


def _editor_name(match: re.Match[str]) -> str:
    return next(name for name in match.group("name", "cjk", "latin") if name).strip()


def _first(*values: str | None) -> str | None:
    for value in values:
        if value and value.strip():
            return value.strip()
    return None


def _match_group(pattern: re.Pattern[str], text: str, group: str) -> str | None:
    match = pattern.search(text)
    return match[group].strip() if match else None


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,，;；、|]", value) if part.strip()]


def _split_names(value: str) -> list[str]:
    value = re.sub(r"^(?:本报)?(?:记者|通讯员|作者)\s*", "", value.strip())
    separators = r"[,，;；、]|\s+and\s+"
    if re.search(r"[\u4e00-\u9fff]", value):  # Chinese bylines separate names with spaces
        separators += r"|\s+"
    return [name.strip() for name in re.split(separators, value) if name.strip()]


def article_chars(text: str) -> int:
    """Characters in paragraph-like lines: captions, menus and link lists don't count."""
    return sum(len(line) for line in text.split("\n\n") if len(line) >= 20)


class ExtractPipeline:
    """Fills the article fields of an :class:`Article`; drops pages that are not articles.

    Settings: ``EXTRACT_MIN_CHARS`` (default 80): pages with less paragraph text are not
    articles (galleries, video pages, stubs). Counts: ``extract/ok``, ``extract/dropped/<reason>``.
    """

    def __init__(self, stats: StatsCollector, min_chars: int = 80):
        self.stats = stats
        self.min_chars = min_chars

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ExtractPipeline:
        return cls(crawler.stats, crawler.settings.getint("EXTRACT_MIN_CHARS", 80))

    def process_item(self, item: Article) -> Article:
        if not isinstance(item, Article):
            return item
        if "html" not in item.content_type and "xml" not in item.content_type and item.content_type:
            self._drop(item, "not_html")
        result = extract(item.body, item.url, item.header_charset, item.outlet_timezone,
                         item.drop_selectors, item.body_selector)
        metadata = result.metadata
        ItemAdapter(item).update({
            "charset": result.charset, "canonical_url": metadata.canonical_url,
            "title": metadata.title, "authors": metadata.authors, "editor": metadata.editor,
            "source": metadata.source, "section": metadata.section, "tags": metadata.tags,
            "published_at": result.published_at, "published_at_raw": metadata.published_raw,
            "text": result.text, "extractor": EXTRACTOR, "extractor_version": EXTRACTOR_VERSION,
        })
        if not result.text:
            self._drop(item, "empty")
        if article_chars(result.text) < self.min_chars:
            self._drop(item, "too_short")
        self.stats.inc_value("extract/ok")
        return item

    def _drop(self, item: Article, reason: str) -> None:
        self.stats.inc_value(f"extract/dropped/{reason}")
        self.stats.inc_value(f"outlet/{item.outlet_id}/dropped/{reason}")
        raise DropItem(f"not an article ({reason}): {item.url}")
