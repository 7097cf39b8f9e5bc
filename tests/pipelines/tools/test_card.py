"""The dataset card's edges: an archive with nothing in it yet, and one whose manifests hold
markup (the full card is tested with the CLI in tests/test_archive_tools.py, and looked at in a
headless browser; hostile manifests through the CLI in tests/test_security_outputs.py)."""

from __future__ import annotations

import json
import re
import tomllib

import lxml.html
from markdown_it import MarkdownIt

from pipelines.archive.catalog import Catalog
from pipelines.archive.storage import LocalStore
from pipelines.tools.card import CHARTS, MAX_CHARS, write_card
from tests.conftest import FIXTURES

HOSTILE = tomllib.loads((FIXTURES / "outputs" / "hostile_strings.toml").read_text(encoding="utf-8"))
SECTIONS = ["Overview", "Outlets", "Articles per outlet and month", "Languages", "Schema"]


def test_a_card_of_an_archive_with_no_article_yet_says_so(tmp_path):
    files = write_card(Catalog.read(LocalStore(tmp_path)), "empty", tmp_path / "card")
    assert [f.name for f in files] == ["articles-per-month.png", "languages.png", "README.md", "card.html"]
    assert "0 articles in 0 Parquet files" in (tmp_path / "card" / "README.md").read_text(encoding="utf-8")


def shown(value: str) -> str:
    """What a reader of the card should see of ``value``: its words, on one line."""
    return " ".join(value.replace("\u202e", " ").replace("\u2066", " ").replace("\u2069", " ").split())


def archive_with_markup(root, strings: list[str]) -> None:
    """One run whose manifest names ``strings`` as its file's languages and as its start."""
    manifest = {
        "crawl_id": "20261123T041500Z-1a2b3c",
        "started_at": strings[0],
        "finished_at": strings[1],
        "files": [
            {
                "key": "outlet=sxkjt/published=2026-11/part-20261123T041500Z-1a2b3c-00001.parquet",
                "rows": len(strings),
                "bytes": 1000,
                "sha256": "0" * 64,
                "languages": dict.fromkeys(strings, 1),
            }
        ],
    }
    (root / "_manifests").mkdir(parents=True)
    (root / "_manifests" / "20261123T041500Z-1a2b3c.json").write_text(json.dumps(manifest), encoding="utf-8")


def rendered(markdown: str) -> lxml.html.HtmlElement:
    """The card's Markdown as CommonMark renders it (raw HTML passed through, as GitHub's
    renderer reads it before its sanitiser), with GFM tables."""
    return lxml.html.fragment_fromstring(
        MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown), create_parent="div"
    )


def assert_only_text(page: lxml.html.HtmlElement, strings: list[str]) -> None:
    """No element the card did not write itself, and every string shown whole."""
    written_by_nobody = (
        ".//script | .//a | .//iframe | .//style | .//li | .//blockquote | .//hr"
        " | .//*[@*[starts-with(name(), 'on')]]"
    )
    assert not page.xpath(written_by_nobody)
    assert [h.text_content() for h in page.xpath(".//h2")] == SECTIONS
    assert len(page.xpath(".//h1")) == 1
    for table in page.xpath(".//table"):
        width = len(table.xpath(".//th"))
        assert all(len(row.xpath("td")) == width for row in table.xpath(".//tbody/tr"))
    text = " ".join(page.text_content().split())
    for value in strings:
        assert shown(value) in text, value


def test_every_string_of_the_manifests_is_shown_as_text_in_both_cards(tmp_path):
    strings = HOSTILE["markup"]
    archive_with_markup(tmp_path / "archive", strings)
    write_card(Catalog.read(LocalStore(tmp_path / "archive")), HOSTILE["uri"], tmp_path / "card")
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    page = rendered(markdown)
    shown_whole = [HOSTILE["uri"], *strings[2:]]  # the first two as dates: their first 10 characters
    assert_only_text(page, shown_whole)
    assert sorted(img.get("src") for img in page.xpath(".//img")) == sorted(CHARTS.values())
    # nothing GitHub would link by itself: a URL, a www. or bare domain, an address
    assert not re.search(r"https?:|www\.|evil\.|(?<!\\)@", markdown)
    html_card = lxml.html.document_fromstring((tmp_path / "card" / "card.html").read_text(encoding="utf-8"))
    assert_only_text(html_card.body, shown_whole)
    assert all(img.get("src").startswith("data:image/png;base64,") for img in html_card.xpath("//img"))


def test_a_long_string_of_the_manifests_is_cut(tmp_path):
    archive_with_markup(tmp_path / "archive", ["2026-11-23", "2026-11-24", "x" * 100_000])
    write_card(Catalog.read(LocalStore(tmp_path / "archive")), "archive", tmp_path / "card")
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "x" * (MAX_CHARS - 1) + "…" in markdown and "x" * MAX_CHARS not in markdown
