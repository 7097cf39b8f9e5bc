from __future__ import annotations

import copy
import json
import statistics
import tomllib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import lxml.html
import pytest
import trafilatura
from readability import Document

from benchmarks.eval_extraction import pages, site_urls
from pipelines.stages.charset import decode_html
from pipelines.stages.extraction.consensus import _ParsedDocument, agreed_text, readability_text
from pipelines.stages.extraction.extractor import PageMetadata, article_chars, extract, parse_published
from pipelines.stages.extraction.furniture import _named_tokens, clean_lines, drop_link_lists
from pipelines.stages.extraction.metadata import _short_blocks, page_metadata, printed_date
from pipelines.stages.extraction.nesting import flatten
from tests.conftest import FIXTURES, extract_saved

PAGES = FIXTURES / "pages"
EXPECTED = tomllib.loads((PAGES / "expected.toml").read_text(encoding="utf-8"))
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("page", ["editor_lines", "editor_lines_hant"])
def test_metadata_lines_go_to_fields_not_text(page):
    expected = EXPECTED[page]
    result = extract(
        (PAGES / f"{page}.html").read_bytes(),
        "https://news.example.cn/a/1.html",
        timezone="Asia/Shanghai",
    )
    metadata = result.metadata
    assert metadata.title == expected["title"]
    assert metadata.editor == expected["editor"]
    assert metadata.source == expected["source"]
    assert metadata.authors == expected["authors"]
    assert result.published_at == datetime.fromisoformat(expected["published_at"])
    assert result.text.count("\n\n") == expected["paragraphs"] - 1
    for line in expected["metadata_lines"]:
        assert line not in result.text
    for kept in expected["body_lines"]:
        assert kept in result.text  # body lines that merely start like metadata lines


@pytest.mark.parametrize("page", ["not_html.pdf", "garbage.bin"])
def test_non_pages_give_no_text_and_no_crash(page):
    result = extract((PAGES / page).read_bytes(), "https://news.example.cn/a/2.html")
    assert not result.text or article_chars(result.text) < 80


def test_empty_body():
    assert extract(b"", "https://news.example.cn/a/3.html").text is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-11 11:24", datetime(2024, 3, 11, 11, 24, tzinfo=SHANGHAI)),
        ("2024年3月11日 11:24:05", datetime(2024, 3, 11, 11, 24, 5, tzinfo=SHANGHAI)),
        ("发布日期：2023-07-09", datetime(2023, 7, 9, tzinfo=SHANGHAI)),
        ("2024-03-07T07:30:00+08:00", datetime(2024, 3, 7, 7, 30, tzinfo=SHANGHAI)),
        ("2024-03-06T08:30:00Z", datetime(2024, 3, 6, 8, 30, tzinfo=ZoneInfo("UTC"))),
        ("2024-02-30 10:00", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_dates_are_time_zone_aware(raw, expected):
    parsed = parse_published(raw, SHANGHAI)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


def test_xhtml_with_an_xml_declaration_is_read():
    """lxml refuses a str that declares its encoding; such pages were silently empty."""
    result = extract((PAGES / "xml_declaration.html").read_bytes(), "https://news.example.org/a/5.html")
    assert result.metadata.title == "Council approves new cycle lanes"
    assert result.text.startswith("The city council voted on Tuesday")


@pytest.mark.parametrize(
    "page",
    [
        "script_before_html",
        "warning_before_html",
        "doctype_and_script_before_html",
        "empty_html_tag_before_html",
    ],
)
def test_markup_before_the_html_tag_does_not_hide_the_article(page):
    """A script before ``<html>`` left libxml2 in ``<head>`` to the end of the page: no body, no
    text. A doctype or an ``<html/>`` before it made lxml read it as a document (it raised)."""
    result = extract((PAGES / f"{page}.html").read_bytes(), "https://news.example.org/a/6.html")
    assert result.metadata.title == "Harbour ferry returns after two years"
    assert result.text.startswith("The harbour ferry between the old town and the island")
    assert result.text.endswith("until nine at night, the operator said.")


def test_comment_after_headline():
    result = extract(
        (PAGES / "comment_after_headline.html").read_bytes(),
        "https://news.example.cn/a/4.html",
        timezone="Asia/Shanghai",
    )
    assert result.metadata.source == "某某日报"
    assert result.text.startswith("近日，某县二十多所山区学校")


LINES = tomllib.loads((FIXTURES / "extraction" / "lines.toml").read_text(encoding="utf-8"))
CONSENSUS = tomllib.loads((FIXTURES / "extraction" / "consensus.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("line", LINES["furniture"])
def test_furniture_lines_are_dropped(line):
    assert clean_lines(line, PageMetadata()) == ""


@pytest.mark.parametrize("line", LINES["article"])
def test_article_lines_that_look_like_furniture_stay(line):
    assert clean_lines(line, PageMetadata()) == line


@pytest.mark.parametrize("line", ["Follow us on TWİTTER", "Follow us on Twıtter"])
def test_letters_the_rules_read_as_english_are_not_skipped(line):
    """İ and ı are i to the rules (IGNORECASE) but not to lower(), by which the English rules'
    words are looked for before searching: such a line is searched by every rule."""
    assert clean_lines(line, PageMetadata()) == ""


def test_a_list_heading_takes_its_titles_not_the_next_paragraph():
    case = LINES["list_heading"]
    assert clean_lines(case["text"], PageMetadata()).split("\n\n") == case["kept"]


@pytest.mark.parametrize("name", sorted(CONSENSUS))
def test_consensus_of_trafilatura_and_readability(name):
    case = CONSENSUS[name]
    lines = case["text"].splitlines()
    tree = lxml.html.fromstring(case["page"]) if "page" in case else None  # the page, where it matters
    agreed = agreed_text(case["text"], case["reference"], tree)
    if case.get("use_reference"):
        assert agreed == case["reference"]
    elif "agreed" in case:
        assert agreed.splitlines() == case["agreed"]
    else:
        assert agreed.splitlines() == [lines[i] for i in case["kept"]]


def test_furniture_inside_the_article_container_goes():
    page = (PAGES / "article_among_furniture.html").read_bytes()
    alone = trafilatura.extract(page.decode("utf-8"), include_tables=True)
    furniture = ("车险投保选好礼", "游戏直充", "双色球开奖结果")
    assert all(line in alone for line in furniture), "fixture error: trafilatura alone drops it already"
    text = extract(page, "https://news.example.cn/a/3.html").text
    assert text.count("\n\n") == 3
    assert not any(line in text for line in furniture)


# What the tests hold on the dev pages of ../shared/eval (mean F1, and the lowest of precision
# and recall), page by page and with each page's site template learned from its site's other
# pages: what issue 35 reached, rounded down. The issue's own targets (by site 0.97 and 0.96, ahead of
# the best peer on cwced_zh and wcxb_article) are printed met or not by ``make eval``.
HELD = {
    "daniel_zh": {"page": (0.966, 0.969), "site": (0.967, 0.969)},
    "daniel_en": {"page": (0.956, 0.957), "site": (0.957, 0.958)},
    "cwced_zh": {"page": (0.978, 0.978)},
    "wcxb_article": {"page": (0.929, 0.933)},
}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", HELD)
def test_eval_figures_on_the_shared_dev_pages_are_held(yardstick, dataset):
    """Page by page and, on the sets whose sites have several pages, by site (never below page
    by page); ``make eval`` prints the same figures beside trafilatura and readability."""
    paths = pages(dataset)
    golds = [
        yardstick.gold_text(json.loads(path.with_suffix(".json").read_text(encoding="utf-8")))
        for path in paths
    ]
    held = HELD[dataset]
    precision, recall, f1 = _means(yardstick, extract_saved(paths), golds)
    assert f1 >= held["page"][0] and min(precision, recall) >= held["page"][1], (precision, recall, f1)
    if "site" in held:
        by_site = _means(yardstick, extract_saved(paths, urls=site_urls(paths)), golds)
        assert by_site[2] >= max(f1, held["site"][0]) and min(by_site[:2]) >= held["site"][1], by_site


def _means(yardstick, records: list[dict], golds: list[str]) -> tuple[float, ...]:
    """Mean precision, recall and F1 of the records' texts, as the yardstick scores them."""
    scores = [yardstick.prf(r["text"] or "", gold) for r, gold in zip(records, golds, strict=True)]
    return tuple(statistics.mean(s[i] for s in scores) for i in range(3))


def test_the_title_printed_again_over_the_article_goes():
    case = LINES["headline"]
    assert clean_lines(case["text"], PageMetadata(title=case["title"])).split("\n\n") == case["kept"]


def test_a_byline_line_becomes_the_authors():
    case, metadata = LINES["byline"], PageMetadata()
    assert clean_lines(case["text"], metadata) == ""
    assert metadata.authors == case["authors"]


def test_a_run_of_menu_items_goes_and_a_numbered_list_stays():
    assert clean_lines(LINES["menu"]["text"], PageMetadata()).split("\n\n") == LINES["menu"]["kept"]
    ranking = LINES["numbered_list"]["text"]
    assert clean_lines(ranking, PageMetadata()).split("\n\n") == ranking.splitlines()


def test_an_article_container_with_a_furniture_class_name_is_kept():
    page = (PAGES / "article_among_furniture.html").read_bytes()
    assert 'class="content js_img_share_area"' in page.decode("utf-8")
    text = extract(page, "https://news.example.cn/a/4.html").text
    assert text.count("\n\n") == 3 and text.startswith("本报讯")


def test_readabilitys_text_stands_where_trafilatura_finds_none():
    """As in trafilatura's own fallback: here libxml2 leaves the page in an ``<aside>`` its
    template never closes, and trafilatura discards it whole."""
    page = (PAGES / "article_in_unclosed_aside.html").read_bytes()
    assert trafilatura.bare_extraction(page.decode("utf-8"), fast=True) is None, "fixture error"
    expected = EXPECTED["article_in_unclosed_aside"]
    text = extract(page, "https://news.example.org/city/1.html").text
    assert text.startswith(expected["first"]) and text.endswith(expected["last"])
    assert text.count("\n\n") == expected["paragraphs"] - 1


@pytest.mark.parametrize("name", ["listing_in_unclosed_aside", "not_found_in_unclosed_aside"])
def test_readabilitys_text_without_an_articles_paragraphs_does_not_stand_in_for_trafilaturas(name):
    """The same page as a list of headlines, or as a page-not-found notice: no article."""
    page = (PAGES / f"{name}.html").read_bytes()
    assert trafilatura.bare_extraction(page.decode("utf-8"), fast=True) is None, "fixture error"
    assert readability_text(lxml.html.fromstring(page)), "fixture error: readability finds nothing"
    assert extract(page, "https://news.example.org/city/").text is None


@pytest.mark.parametrize("page", ["article_in_nav_named_block", "utility_classes", "ticker_in_navigation"])
def test_blocks_named_like_furniture_by_their_layout_keep_the_article(page):
    """A "content-nav-section" of paragraphs is no navigation, a "pl-8" no comment list: each
    block is less than half of the page, so the name alone dropped it. A menu with one
    paragraph (a news ticker) is still navigation."""
    expected = EXPECTED[page]
    text = extract((PAGES / f"{page}.html").read_bytes(), "https://news.example.org/a/7.html").text
    assert text is not None
    assert [line for line in expected["kept"] if line not in text] == []
    assert [line for line in expected["gone"] if line in text] == []


NAMES = tomllib.loads((FIXTURES / "extraction" / "furniture_names.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("name", "tokens"), sorted(NAMES["tokens"].items()))
def test_a_utility_classs_property_names_no_furniture(name, tokens):
    assert list(_named_tokens(name)) == tokens


JSON_LD = tomllib.loads((FIXTURES / "extraction" / "json_ld.toml").read_text(encoding="utf-8"))
JSON_LD_PAGE = (PAGES / "json_ld_template.html").read_text(encoding="utf-8")
DEEP = "[" * 100_000 + "]" * 100_000  # past the JSON parser's recursion limit


def _with_json_ld(json_ld: str) -> bytes:
    return JSON_LD_PAGE.replace("@JSON_LD@", json_ld.replace("@DEEP@", DEEP)).encode("utf-8")


@pytest.mark.parametrize("case", JSON_LD["case"], ids=lambda case: case["name"][:40])
def test_json_ld_of_any_shape_is_read_where_it_can_be_and_never_loses_the_article(case):
    result = extract(_with_json_ld(case["json"]), "https://news.example.com/a/1.html")
    assert "bus routes on Tuesday evening" in result.text
    for field in ("title", "authors", "published_raw"):
        if field in case:
            assert getattr(result.metadata, field) == case[field]


@pytest.mark.parametrize("field", JSON_LD["sweep"]["fields"])
def test_every_json_shape_at_every_field_keeps_the_article(field):
    for shape in JSON_LD["sweep"]["shapes"]:
        document = (
            f'{{"@type": "NewsArticle", "{field}": {shape}}}' if field != "@type" else f'{{"@type": {shape}}}'
        )
        result = extract(_with_json_ld(document), "https://news.example.com/a/1.html")
        assert "bus routes on Tuesday evening" in result.text, (field, shape)


@pytest.mark.slow
def test_readability_on_our_parse_gives_readabilitys_own_text():
    """``consensus._ParsedDocument`` skips readability's Cleaner: the text must not change."""
    for path in [*sorted(PAGES.glob("*.html")), *pages("daniel_zh")[::8], *pages("daniel_en")[::8]]:
        html = decode_html(path.read_bytes()).text
        ours, theirs = trafilatura.load_html(html), trafilatura.load_html(html)
        assert readability_text(ours) == readability_text(theirs, Document), path


def test_metadata_read_from_the_first_of_each_kind_of_markup():
    """One pass over the page finds what each XPath found: the first content of each meta name,
    noarchive in any robots tag, the first canonical link with an address, the first JSON-LD
    Article, and the info line under the first heading (an h1, or an h2 of a title class)."""
    metadata = page_metadata(
        trafilatura.load_html((PAGES / "metadata_markup.html").read_text(encoding="utf-8")),
        "https://news.example.org/given.html",
    )
    assert metadata.title == "Harbour ferry returns after two years"
    assert metadata.canonical_url == "https://news.example.org/a/7.html"
    assert metadata.noarchive
    assert metadata.tags == ["ferry", "harbour", "island"]
    assert metadata.authors == ["Jane Roe"]
    assert metadata.published_raw == "2024-05-02T08:30:00+08:00"
    assert metadata.source == "新华网"


@pytest.mark.slow
def test_divs_turned_into_paragraphs_as_readability_turns_them():
    """``consensus._ParsedDocument`` tells the divs that hold blocks by the names of the elements
    under them, where readability searches their markup: the tree must be readability's."""
    named_like_blocks = PAGES / "divs_named_like_blocks.html"
    for path in [*sorted(PAGES.glob("*.html")), *pages("wcxb_article")[::8], *pages("daniel_zh")[::8]]:
        html = decode_html(path.read_bytes()).text
        if trafilatura.load_html(html) is None:
            continue
        trees = []
        for transform in (_ParsedDocument, Document):
            document = _ParsedDocument(trafilatura.load_html(html))
            document._html(True)
            transform.transform_misused_divs_into_paragraphs(document)
            trees.append(lxml.etree.tounicode(document.html))
        assert trees[0] == trees[1], path
        if path == named_like_blocks:  # a div of inline elements only is a paragraph, the others not
            assert trees[0].count("<div") == 8, trees[0]


def test_our_parser_gives_lxml_htmls_own_element_classes():
    """The extractor's parser looks element classes up in C, not in lxml.html's Python method:
    the stages must get the same classes, in copies too (readability works on one)."""
    html = (PAGES / "comment_form.html").read_text(encoding="utf-8")
    ours = trafilatura.load_html(html)
    theirs = lxml.html.document_fromstring(
        html, parser=lxml.html.HTMLParser(remove_comments=True, remove_pis=True)
    )
    classes = [type(element) for element in ours.iter()]
    assert classes == [type(element) for element in theirs.iter()]
    assert [type(element) for element in copy.deepcopy(ours).iter()] == classes
    forms = {
        lxml.html.FormElement,
        lxml.html.InputElement,
        lxml.html.SelectElement,
        lxml.html.TextareaElement,
    }
    assert forms | {lxml.html.LabelElement} <= set(classes)


@pytest.mark.parametrize("most_chars", [20, 60, 120, 400])
def test_short_blocks_skip_only_the_ancestors_of_long_ones(most_chars):
    """Read back to front with the ancestors of long blocks skipped, the short blocks must be
    those of reading each block's whole text."""
    for path in [*sorted(PAGES.glob("*.html")), *pages("daniel_zh")[::8], *pages("daniel_en")[::8]]:
        tree = trafilatura.load_html(decode_html(path.read_bytes()).text)
        if tree is None:
            continue
        texts = (" ".join(e.text_content().split()) for e in tree.iter("p", "div", "span", "li", "td"))
        assert _short_blocks(tree, most_chars) == [t for t in texts if t and len(t) <= most_chars], path


DATES = tomllib.loads((FIXTURES / "extraction" / "dates.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "case", DATES["case"], ids=lambda case: (case.get("name") or " ".join(case["lines"]))[:40]
)
def test_the_date_a_page_prints(case):
    assert printed_date(case["lines"]) == case.get("date")


@pytest.mark.slow
def test_publication_dates_on_the_shared_dev_pages():
    """The eval pages' file names carry the day they were collected; a news page's publication
    date is that day or one or two before. Measured when htmldate's extensive search (and
    dateparser, 45 MB a worker) gave way to our own reading of printed dates: 320 pages near
    that day and 34 elsewhere before, 327 and 12 after, of 355."""
    near = elsewhere = 0
    for path in [*pages("daniel_zh"), *pages("daniel_en")]:
        collected = datetime.strptime(path.name[:8], "%Y%m%d").date()
        published = extract(path.read_bytes(), path.as_uri()).published_at
        if published is not None:
            is_near = collected - timedelta(days=2) <= published.date() <= collected + timedelta(days=1)
            near += is_near
            elsewhere += not is_near
    assert near >= 327 and elsewhere <= 12, (near, elsewhere)


@pytest.mark.parametrize(
    "page", ["nested_1000_divs.html", "nested_2500_divs.html", "unclosed_font_3000.html"]
)
def test_deeply_nested_articles_are_read(page):
    """1000 levels: under libxml2's limit; 2500: past it, read flattened."""
    result = extract((PAGES / page).read_bytes(), "https://news.example.cn/a/1.html")
    assert not result.too_deep and result.text.count("这是一篇很长的文章") == 15


NESTING = tomllib.loads((FIXTURES / "extraction" / "nesting.toml").read_text(encoding="utf-8"))["case"]
NESTED_PARAGRAPHS = ("嵌套之前", "评估专家组先后", "专家组认为", "嵌套之后")  # before, inside, inside, after


def nested_page(case: dict, levels: int) -> bytes:
    """tests/fixtures/pages/nested_template.html, its middle ``levels`` deep the ``case``'s way."""
    page = (PAGES / "nested_template.html").read_text(encoding="utf-8")
    nested = page.replace("<!--open-->", case["open"] * levels)
    return nested.replace("<!--close-->", case.get("close", "") * levels).encode()


@pytest.mark.parametrize(
    ("case", "levels"),
    [(case, 3000) for case in NESTING] + [(NESTING[0], 1000), (NESTING[0], 100_000), (NESTING[1], 100_000)],
    ids=lambda value: value["name"] if isinstance(value, dict) else f"{value:,}",
)
def test_an_article_nested_past_the_parsers_limit_keeps_its_text_before_inside_and_after(case, levels):
    """As a browser shows it: every paragraph, in order; the scripts and styles below the limit
    are not text. (1000 levels: under libxml2's limit, but past the 256 readability's block was
    parsed again with.)"""
    result = extract(nested_page(case, levels), "https://news.example.cn/a/1.html")
    assert not result.too_deep
    assert result.metadata.title == "省科技厅开展重点实验室评估"
    places = [result.text.find(paragraph) for paragraph in NESTED_PARAGRAPHS]
    assert -1 not in places and places == sorted(places), result.text
    assert "脚本" not in result.text and "样式" not in result.text


@pytest.mark.parametrize("case", NESTING, ids=lambda case: case["name"])
def test_a_page_flattened_to_no_depth_is_its_text_in_paragraphs_whatever_its_markup(case):
    """The last resort of extract(): however flatten's count of levels and libxml2's differ,
    flattened to depth 0 a page past the parser's limit is html, body, p: three levels, its
    text all there."""
    page = nested_page(case, 3000).decode()
    parser = lxml.html.HTMLParser(huge_tree=True)
    lxml.html.document_fromstring(page, parser=parser)
    assert any("Excessive depth" in error.message for error in parser.error_log)  # as it is: past the limit
    tree = lxml.html.document_fromstring(flatten(page, 0))
    assert max(len(list(element.iterancestors())) for element in tree.iter()) <= 2
    text = tree.text_content()
    assert all(paragraph in text for paragraph in NESTED_PARAGRAPHS)
    assert "脚本" not in text and "样式" not in text


def _links_in_a_list(count: int) -> bytes:
    return (
        "<ul>" + "".join(f'<li><a href="/s/{n}.html">专题报道 {n}</a></li>' for n in range(count)) + "</ul>"
    ).encode()


def _links_inline(count: int) -> bytes:
    return (
        "<div>" + "".join(f'<a href="/s/{n}.html">专题 {n}</a> ' for n in range(count)) + "</div>"
    ).encode()


@pytest.mark.parametrize("links", [_links_in_a_list, _links_inline])
def test_a_page_of_thousands_of_links_loses_its_link_lists_not_its_article(links):
    page = (PAGES / "article_among_furniture.html").read_bytes()
    farm = page.replace(b"</body>", links(3000) + b"</body>")
    tree = trafilatura.load_html(farm)
    assert drop_link_lists(tree, max_links=5000) == 0  # under the limit: the page as it is
    assert drop_link_lists(tree, max_links=2000) == 3000
    assert (
        extract(farm, "https://news.example.cn/a/1.html").text
        == extract(page, "https://news.example.cn/a/1.html").text
    )


def test_links_inside_the_article_text_are_not_a_link_list():
    paragraph = (PAGES / "paragraph_with_link.html").read_bytes()
    page = b"<html><body><div>" + paragraph * 2500 + b"</div></body></html>"
    tree = trafilatura.load_html(page)
    assert drop_link_lists(tree, max_links=2000) == 0 and len(tree.xpath("//a")) == 2500
