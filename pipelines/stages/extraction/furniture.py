"""Page furniture: blocks pruned from the page before extraction, and lines taken out after.

Rules are generic (class/id vocabulary in English and pinyin, Chinese CMS habits, dated link
lists, disclaimers); an outlet's own ``drop``/``body`` hints come from the registry. Lines that
carry metadata (editor, reviewers, source) are moved into the metadata, not lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import groupby, islice, repeat, zip_longest

import lxml.html
from cssselect import GenericTranslator

from pipelines.stages.extraction.metadata import (
    BYLINE_AUTHOR,
    DATE,
    EDITOR_LINE,
    INFO_LINE,
    MONTH_DATES,
    REVIEW_LINE,
    SOURCE,
    PageMetadata,
    editor_name,
    split_names,
)
from pipelines.stages.extraction.script import for_rules, printed
from pipelines.stages.tokens import TOKEN

# class/id tokens (split on - _ and spaces) that mark page furniture on news sites
_FURNITURE_TOKENS = frozenset(
    {
        "share",
        "sharebar",
        "bdshare",
        "fenxiang",
        "fx",
        "jiathis",
        "social",
        "tips",
        "reading",
        "breadcrumb",
        "breadcrumbs",
        "crumb",
        "crumbs",
        "position",
        "location",
        "weizhi",
        "dqwz",
        "related",
        "relate",
        "recommend",
        "recommended",
        "xgxw",
        "xgyd",
        "xgwz",
        "tjyd",
        "hot",
        "hotnews",
        "rank",
        "mood",
        "vote",
        "biaoqing",
        "xinqing",
        "comment",
        "comments",
        "respond",
        "reply",
        "pl",
        "pinglun",
        "cookie",
        "cookies",
        "consent",
        "gdpr",
        "privacy",
        "tools",
        "toolbar",
        "print",
        "qrcode",
        "erweima",
        "ewm",
        "download",
        "bjly",
        "liability",
        "zbtool",
        "nav",
        "navbar",
        "topnav",
        "menu",
        "footer",
        "foot",
        "copyright",
        "sidebar",
        "ad",
        "ads",
        "advert",
        "banner",
    }
)
# the furniture tokens that say "navigation": a block of links. One so named that holds
# paragraphs of text that is not link text is not navigation ("content-nav-section")
_NAVIGATION_TOKENS = frozenset(
    ("nav", "navbar", "topnav", "menu", "breadcrumb", "breadcrumbs", "crumb", "crumbs")
)
NAVIGATION_PROSE = 2  # ... paragraphs it needs (one is a notice or a ticker in the menu)
LINK_SHARE_OF_PROSE = 0.3  # ... and the share of its text in links below which it reads as prose
PARAGRAPH_CHARS = 50  # a <p> this long is article text, not a caption or a link
_TOKEN_SPLIT = re.compile(r"[\s_-]+")  # class and id names' parts
_PART_SPLIT = re.compile(r"[_-]+")  # a class or id name's parts
# the furniture tokens that utility CSS (Tailwind, Bootstrap, Panda) also uses as a property's
# name: padding-left and position ("pl-4", "vds-pl_0px", "position-relative"); followed by a value
# (a number, a bracket, a dotted or percent value, a CSS position) they say how a block looks
_UTILITY_PROPERTIES = frozenset(("pl", "position"))
_UTILITY_VALUE = re.compile(r"\d|\[|[^.%(]*[.%(]|(?:relative|absolute|fixed|static|sticky)$")
_FURNITURE_TAGS = ("nav", "footer", "aside", "form")
# the elements _furniture_names can name, found by libxml2
_MAYBE_FURNITURE = "*[@class or @id or {}]".format(" or ".join(f"self::{tag}" for tag in _FURNITURE_TAGS))
# how link lists date their items: a date, or a time ago
_DATED = re.compile(
    rf"{DATE.pattern}|\d+\s*(?:分钟|分鐘|小时|小時|天)前|\b\d+\s*(?:minutes?|mins?|hours?|days?)\s+ago\b",
    re.IGNORECASE,
)
_WEEKDAY = r"(?:(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day|Mon|Tue|Wed|Thu|Fri|Sat|Sun)\.?,?\s*"
# A line that is only a date ("2012-01-12 09:52", "Thursday, 15 December 2011"): a dateline
_BARE_DATE_LINES = tuple(
    re.compile(rf"^[\s(（\[]*(?:{_WEEKDAY})?{date.pattern}[\s)）\]]*$", re.IGNORECASE)
    for date in (DATE, *MONTH_DATES)
)
_FURNITURE_LINE = re.compile(
    r"^(?:分享到|分享至|扫一扫|打印本页|关闭窗口|【?打印】?|【?关闭】?|点击右上角|朋友圈|微信好友|"
    r"请使用浏览器分享功能|阅读剩余全文|您此时的心情|新闻表情排行|加载更多|相关阅读|相关新闻|推荐阅读|"
    r"延伸阅读|热门推荐|网友评论|发表评论|【字体|字号[:：]|"
    r"See also|Read also|Also read|Read more:|Related:|You may also like|Leave a (?:Comment|Reply)|"
    r"This site uses Akismet|This website uses cookies|Privacy & Cookies Policy|Share on |"
    r"Share this|by admin$|分享(?:工具|按钮)?[:：]?$|E-?mail (?:this|to a friend)|"
    r"Print(?:er[- ]friendly| this)|Rate this (?:article|story)|Add (?:your|a) (?:opinion|comment)|"
    r"All (?:opinions|comments) are moderated|By (?:adding|posting|submitting) a comment)",
    re.IGNORECASE,
)
# Reprint disclaimers, contact and tip-off lines, which Chinese CMSs print under every article.
# (An English alternative must need a word of _ENGLISH_NEEDS; the others a Chinese character.)
_DISCLAIMER_LINE = re.compile(
    r"^[【\[]?(?:免责|免責)?[声聲]明[】\]]?\s*[:：]?$|^[【\[]?(?:免责|免責|版权|版權)[声聲]明"
    r"|^\S{0,8}[声聲]明[:：].*(?:转载|轉載|观点|觀點|立场|立場|参考|參考|无关|無關)"
    r"|(?:转载|轉載|稿件|本文).{0,30}(?:不代表|不表明|并不代表|並不代表|并不意味着)"
    r"(?:本[网站报台網報]|我们|我們|作者)?.{0,10}(?:观点|觀點|立场|立場|赞同|贊同)"
    r"|未[经經].{0,8}(?:授权|授權|许可|許可).{0,10}(?:转载|轉載|复制|複製)"
    r"|^.{0,60}\bnot (?:to )?be (?:reproduced|republished|redistributed)\b.{0,60}$"
    r"|\bnot responsible for the content of (?:external|other|third[- ]party) (?:links|sites|websites)"
    r"|^(?:电话|電話|传真|傳真|邮箱|郵箱|电邮|電郵|E-?mail|热线|熱線)\s*[:：].{0,60}$"
    r"|^.{0,20}爆料.{0,40}(?:\d{5}|热线|熱線|微博|微信)"
    r"|^(?:如果)?(?:你|您)(?:对|對).{0,20}有任何(?:意见|意見)",
    re.IGNORECASE,
)
# Invitations to follow the outlet elsewhere (alternatives: as for _DISCLAIMER_LINE)
_FOLLOW_US_LINE = re.compile(
    r"^(?:关注|關注|加入|订阅|訂閱).{0,24}(?:微博|微信|公众号|公眾號|手机报|手機報).{0,24}$"
    r"|(?:Facebook|Google\s*plus|Twitter|微博|微信).{0,30}(?:专页|專頁|帳號|账号|公众号).{0,40}(?:你|您|我們|我们)"
    r"|(?:你|您|我們|我们).{0,40}(?:Facebook|Google\s*plus|Twitter).{0,10}(?:专页|專頁|page)"
    r"|\bfollow (?:us|[\w.]+(?: [\w.]+){0,2}) on (?:Facebook|Twitter)",
    re.IGNORECASE,
)
# Where-you-are, dateline, byline and copyright lines around the article
_PAGE_FRAME_LINE = re.compile(
    r"^(?:You are here|您(?:所在|现在|現在)的位置|[当當]前位置)\s*[:：]"
    r"|^(?:首页|首頁|Home)\s*[>»]|^[^\s>»]{1,10}\s*[>»]$|^(?:上一篇|下一篇)\s*(?:[:：]|$)"
    r"|^(?:Last updated|Updated|Posted|Published|Article Date)\b[^.!?]{0,60}\b(?:19|20)\d{2}\b[^.!?]{0,20}$"
    r"|^(?:Copyright\b|©|\(c\)\s)[^.!?]{0,80}$"
    r"|^(?:https?://|www\.)\S+$",
    re.IGNORECASE,
)
# A breadcrumb without a "you are here": short items after or between two or more » > ›
_CRUMB_ITEM = r"[^>»›，。！？；,!?;]{1,25}"
_BREADCRUMB_LINE = re.compile(
    rf"^(?=(?:.*[>»›]){{2}})[>»›]?\s*{_CRUMB_ITEM}(?:\s*[>»›]\s*{_CRUMB_ITEM})+\s*[>»›]?$"
)
# A pager under an article split over pages: "[1] [2] 下一页", "« Prev 1 2 3 Next »"
_PAGER_LINE = re.compile(
    r"^(?:(?:[\[【(（]?\d{1,3}[\]】)）]?|[上下]一?[页頁]|[首尾末][页頁]|[第共]\s*\d{1,3}\s*[页頁]|"
    r"next|prev(?:ious)?|page|«|»|<<|>>)\s*){2,}$",
    re.IGNORECASE,
)
# A heading over a list of other articles: the heading and the titles under it go.
_LIST_HEADING = re.compile(
    r"^(?:相关(?:阅读|新闻|文章|报道|链接|專題|专题)|相關(?:閱讀|新聞|文章|報導|連結)|延伸阅读|延伸閱讀|推荐阅读|"
    r"热门(?:新闻|推荐)|熱門新聞|最热门新闻|最熱門新聞|更多(?:新闻|新聞)|"
    r"Related(?: stories| articles| links| content| coverage| news)?|More (?:stories|news|from [\w ]+)|"
    r"Most (?:read|popular|viewed)|Top (?:news|stories)(?: headlines)?|Latest [\w ]{0,30}(?:news|headlines))"
    r"\s*[:：»]?$",
    re.IGNORECASE,
)
MENU_RUN = 4
HEADLINE_LINES = 2  # the title printed again is looked for among the first lines kept
HEADLINE_MIN_CHARS = 6  # ... and a part of it only this long or longer
MENU_ITEM_CHARS = 8
# Furniture and metadata lines are short; a line or cell longer than this is article text run
# together (a layout table's cell holding the whole article), even when it opens with a breadcrumb
FURNITURE_MAX_TOKENS = 400
_NOT_MENU_ITEM = re.compile(r"[，。！？；：、,.!?;:\d]")  # sentences and numbered lists are text
SENTENCE_END = re.compile(r"[.!?。！？\"”’」』)）]$")


def prune(tree: lxml.html.HtmlElement, drop_selectors: tuple[str, ...], body_selector: str | None) -> None:
    """Remove furniture blocks from the page in place, keeping the text that follows them."""
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
            element.drop_tree()
    page_chars = len(body.text_content())
    page_paragraphs = _paragraph_chars(body)
    candidates = body.xpath(f"descendant-or-self::{_MAYBE_FURNITURE}")  # in document order
    index = 0
    prose_until = 0  # candidates before this one lie in a block of prose named as navigation
    while index < len(candidates):
        element = candidates[index]
        index += 1
        # a furniture name can be on the article itself (class="js_img_share_area"): spared when
        # it holds half the page's text or half its paragraphs
        if not (names := _furniture_names(element)) or (index <= prose_until and names <= _NAVIGATION_TOKENS):
            continue
        paragraphs = _paragraph_lengths(element)
        if len(text := element.text_content()) >= page_chars / 2 or sum(paragraphs) > page_paragraphs / 2:
            continue
        inside = len(element.xpath(f"descendant::{_MAYBE_FURNITURE}"))
        if names <= _NAVIGATION_TOKENS and _is_prose(element, text, len(paragraphs)):
            prose_until = max(prose_until, index + inside)  # its navigation names are the layout's too
            continue
        index += inside  # they go with it
        element.drop_tree()
    for listing in body.xpath("//ul | //ol"):
        items = listing.findall("li")
        if len(items) >= 2 and sum(bool(_DATED.search(i.text_content())) for i in items) > len(items) / 2:
            listing.drop_tree()


LINK_LIST_MIN = 50  # links under one element before it can be taken for a link list
LINK_LIST_DENSITY = 0.8  # ... and the share of its text that is link text


def drop_link_lists(tree: lxml.html.HtmlElement, max_links: int) -> int:
    """On a page of more than ``max_links`` links, remove its link lists (elements holding at
    least :data:`LINK_LIST_MIN` links, whose text is mostly link text), innermost first; the
    number of links removed.

    Every later step costs time and memory per element: a page of 200,000 links (a site map,
    an endless "related" list) cost 19 to 98 s of CPU and 1.2 GB in trafilatura. Link lists are
    never the article, so extraction loses nothing; libxml2 finds the candidates (a few), and
    Python reads each one's links once. Below ``max_links`` (the news pages of ../shared/eval
    have up to 800) nothing changes.
    """
    if tree.xpath("count(//a)") <= max_links:
        return 0
    removed = 0
    # document order puts an element before what it holds: reversed, the innermost come first
    for element in reversed(tree.xpath(f"//body//*[count(.//a) >= {LINK_LIST_MIN}]")):
        links = int(element.xpath("count(.//a)"))  # fewer once the lists inside it are gone
        if links < LINK_LIST_MIN:
            continue
        link_chars = sum(len(anchor.text_content()) for anchor in element.iter("a"))
        if link_chars >= LINK_LIST_DENSITY * len(element.text_content().strip()):
            element.drop_tree()
            removed += links
    return removed


def _paragraph_lengths(element: lxml.html.HtmlElement) -> list[int]:
    """The characters of each paragraph long enough to be article text."""
    return [length for p in element.iter("p") if (length := len(p.text_content())) >= PARAGRAPH_CHARS]


def _paragraph_chars(element: lxml.html.HtmlElement) -> int:
    return sum(_paragraph_lengths(element))


def _furniture_names(element: lxml.html.HtmlElement) -> set[str]:
    """What names it furniture: its tag (nav, footer, aside, form), or the furniture tokens of its
    class and id names."""
    if element.tag in _FURNITURE_TAGS:
        return {f"<{element.tag}>"}
    names = f"{element.get('class', '')} {element.get('id', '')}".lower()
    if _FURNITURE_TOKENS.isdisjoint(_TOKEN_SPLIT.split(names)):  # most names: no token to look at
        return set()
    return {token for name in names.split() for token in _named_tokens(name)}


def _named_tokens(name: str) -> Iterator[str]:
    """The furniture tokens of one class or id name, but for a utility class's property (its
    value follows: "pl-4", "vds-pl_0px", "position-relative"), which says how it looks, not what
    it is; "comment-2" or "ad-300x250" still name furniture."""
    tokens = _PART_SPLIT.split(name)
    for token, following in zip_longest(tokens, tokens[1:]):
        if token in _FURNITURE_TOKENS and not (
            token in _UTILITY_PROPERTIES and following and _UTILITY_VALUE.match(following)
        ):
            yield token


def _is_prose(element: lxml.html.HtmlElement, text: str, paragraphs: int) -> bool:
    """``paragraphs`` (:data:`NAVIGATION_PROSE` or more) and under :data:`LINK_SHARE_OF_PROSE` link
    text: a block so named is no navigation, whatever its name says."""
    if paragraphs < NAVIGATION_PROSE:
        return False
    links = sum(len(anchor.text_content()) for anchor in element.iter("a"))
    return links < LINK_SHARE_OF_PROSE * len(text)


def clean_lines(text: str, metadata: PageMetadata) -> str:
    """The text without furniture lines; editor, byline and source lines fill ``metadata``."""
    kept = []
    under_list_heading = False
    title = _BLANKS.sub("", metadata.title) if metadata.title else None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        # a table row (trafilatura prints "| cell | cell |") is read cell by cell
        cells = _table_cells(line) if line.startswith("|") and line.endswith("|") else [line]
        cell_text = " ".join(cells)
        if not any(cells) or _is_headline(cell_text, title, at_top=len(kept) < HEADLINE_LINES):
            continue
        rules_line = for_rules(cell_text)  # Traditional read as Simplified; spans as in line
        if _LIST_HEADING.match(rules_line):
            under_list_heading = True
            continue
        if under_list_heading and _is_title(line):
            continue
        under_list_heading = False
        one_cell = len(cells) == 1  # the line's reading for the rules is the cell's
        if all(
            _is_metadata_or_furniture(cell, rules_line if one_cell else for_rules(cell), metadata)
            for cell in cells
            if cell
        ):
            continue
        kept.append(line)
    return "\n\n".join(_without_menus(kept))


def _is_metadata_or_furniture(line: str, rules_line: str, metadata: PageMetadata) -> bool:
    """Whether the line (``rules_line`` is its :func:`for_rules`) is not article text; editor,
    byline and source lines fill ``metadata``."""
    if len(line) > FURNITURE_MAX_TOKENS and _more_tokens(line, FURNITURE_MAX_TOKENS):
        return False
    editor = EDITOR_LINE.match(rules_line)
    if editor:
        metadata.editor = metadata.editor or editor_name(editor, line)
        return True
    byline = BYLINE_AUTHOR.match(line)
    if byline:
        metadata.authors = metadata.authors or split_names(byline["name"])
        return True
    rules = _LINE_RULES if _NOT_ENGLISH_ONLY.search(rules_line) else _english_rules(rules_line.lower())
    if any(map(re.Pattern.search, rules, repeat(rules_line))):
        return True
    source = SOURCE.search(rules_line)
    if source and len(line) < 100 and (source.start() == 0 or INFO_LINE.match(rules_line)):
        metadata.source = metadata.source or printed(source, line, "source").strip()
        return True
    return False


_LINE_RULES = (
    REVIEW_LINE,
    *_BARE_DATE_LINES,
    _FURNITURE_LINE,
    _DISCLAIMER_LINE,
    _FOLLOW_US_LINE,
    _PAGE_FRAME_LINE,
    _BREADCRUMB_LINE,
    _PAGER_LINE,
)
# The English alternatives of these rules each need one of these words: a line without them is not
# searched (a rule tries every position of a line), unless it holds a Chinese character (the
# other alternatives need one) or a letter the rules' IGNORECASE reads as another than lower() does
_ENGLISH_NEEDS = {
    _DISCLAIMER_LINE: ("not ", "email", "e-mail"),
    _FOLLOW_US_LINE: ("facebook", "google", "twitter"),
}

_NOT_ENGLISH_ONLY = re.compile("[\u4e00-\u9fff\u0130\u0131\u017f\u212a]")  # İ ı ſ K (Kelvin)
_ALWAYS_SEARCHED = tuple(rule for rule in _LINE_RULES if rule not in _ENGLISH_NEEDS)


def _english_rules(lowered: str) -> tuple[re.Pattern[str], ...]:
    """The line rules worth searching in a line without Chinese (given lowercase)."""
    return _ALWAYS_SEARCHED + tuple(
        rule for rule, words in _ENGLISH_NEEDS.items() if any(word in lowered for word in words)
    )


def _more_tokens(line: str, limit: int) -> bool:
    """Whether ``line`` has more than ``limit`` tokens, counted only that far."""
    return next(islice(TOKEN.finditer(line), limit, None), None) is not None


def _table_cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip("|").split("|")]


_BLANKS = re.compile(r"[\s>]+")  # white space, and trafilatura's "> " before a quoted line


def _is_headline(line: str, bare_title: str | None, at_top: bool) -> bool:
    """The page's title (without blanks) printed again; over the article, also without the part
    a <title> adds after it (" - 新浪網") or the second line of a two-line headline."""
    if bare_title is None:
        return False
    opening = line[:1]
    if bare_title and opening and opening != bare_title[0] and not _BLANKS.match(opening):
        return False  # it opens otherwise: not worth taking the blanks out of the line
    bare_line = _BLANKS.sub("", line)
    return bare_line == bare_title or (
        at_top
        and len(bare_line) >= max(HEADLINE_MIN_CHARS, len(bare_title) / 2)
        and bare_title.startswith(bare_line)
    )


def _without_menus(lines: list[str]) -> list[str]:
    """Drops runs of MENU_RUN or more very short lines without punctuation or figures: a menu."""
    kept = []
    for is_menu, run in groupby(lines, key=_is_menu_item):
        run_lines = list(run)
        if not is_menu or len(run_lines) < MENU_RUN:
            kept += run_lines
    return kept


def _is_menu_item(line: str) -> bool:
    return len(line) <= MENU_ITEM_CHARS and not _NOT_MENU_ITEM.search(line)


def _is_title(line: str) -> bool:
    """A headline in a list: short, and not ending like a sentence."""
    return len(line) <= 80 and not SENTENCE_END.search(line)
