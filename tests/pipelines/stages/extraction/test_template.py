"""A site's template, learned from its pages (``pipelines/stages/extraction/template.py``)."""

from __future__ import annotations

import subprocess
import sys

import lxml.html
import pytest

from pipelines.stages.extraction import template as site_template
from pipelines.stages.extraction.extractor import extract
from pipelines.stages.extraction.template import SiteTemplate
from tests.conftest import FIXTURES

SITE = FIXTURES / "template" / "site"  # 1-4: four articles; 5, 6: article 1 at two more addresses
STRAP = "Weekend Edition brings you the stories"  # a block on every page, which no rule knows
SUPPORT = "Reporting for this story was supported by readers"


def page_fingerprints(name: str) -> list[int]:
    """What a worker sends back to learn the page from: its blocks and its text's lines."""
    return extract((SITE / name).read_bytes(), f"https://valley.example/{name}", learn=True).fingerprints


def learned(*names: str) -> SiteTemplate:
    template = SiteTemplate()
    for name in names:
        result = extract((SITE / name).read_bytes(), f"https://valley.example/{name}", learn=True)
        template.learn(result.fingerprints, result.metadata.title)
    return template


def text(name: str, template: SiteTemplate | None = None) -> str:
    known = template.template() if template else frozenset()
    return extract((SITE / name).read_bytes(), f"https://valley.example/{name}", template=known).text


def test_the_rules_alone_keep_the_sites_furniture():
    assert STRAP in text("1.html") and SUPPORT in text("1.html")


def test_blocks_on_three_articles_are_the_template_and_leave_every_page():
    template = learned("1.html", "2.html", "3.html")
    for name in ("1.html", "2.html", "3.html", "4.html"):  # 4 was not learned: same site, same blocks
        cleaned = text(name, template)
        assert STRAP not in cleaned and SUPPORT not in cleaned
        assert cleaned.count("\n\n") == 2, cleaned  # the three paragraphs of the article stay


def test_blocks_on_two_articles_are_not_yet_the_template():
    assert text("1.html", learned("1.html", "2.html")) == text("1.html")


def test_an_article_at_three_addresses_is_one_article():
    """Its paragraphs and its site's furniture were seen on one article only."""
    template = learned("1.html", "5.html", "6.html")
    assert template.template() == frozenset()
    assert text("5.html", template) == text("5.html")


def test_what_would_take_most_of_a_page_is_spared():
    every_block = frozenset(page_fingerprints("1.html"))
    copy = extract((SITE / "1.html").read_bytes(), "https://valley.example/1.html", template=every_block)
    assert copy.text == text("1.html")


def test_a_page_is_learned_by_its_blocks_and_its_texts_lines():
    tree = lxml.html.fromstring((SITE / "2.html").read_bytes())
    blocks = set(site_template.fingerprints(site_template.blocks(tree)))
    assert blocks and blocks < set(page_fingerprints("2.html"))  # extraction adds the text's lines


def test_fingerprints_are_the_same_in_every_process():
    """Workers learn and the crawl process keeps the template: Python's salted hash would differ."""
    code = (
        "from pipelines.stages.extraction.extractor import extract; "
        f"print(extract(open({str(SITE / '3.html')!r}, 'rb').read(), 'https://valley.example/3.html', "
        "learn=True).fingerprints)"
    )
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.strip() == str(page_fingerprints("3.html"))


def test_a_large_template_forgets_what_one_article_had(monkeypatch):
    unbounded = learned("1.html", "2.html", "3.html", "4.html")
    monkeypatch.setattr(site_template, "MAX_FINGERPRINTS", len(unbounded.seen_on) - 1)
    bounded = learned("1.html", "2.html", "3.html", "4.html")
    assert len(bounded.seen_on) < len(unbounded.seen_on)
    assert bounded.template() == unbounded.template() != frozenset()


@pytest.mark.parametrize("name", ["1.html", "4.html"])
def test_a_site_of_one_page_is_left_as_it_was(name):
    assert text(name, learned(name)) == text(name)


def test_a_page_is_extracted_again_only_for_template_blocks_it_did_not_have_removed():
    """The crawl's warm-up pages and `extract --urls-file` ask this of each page's blocks."""
    template, page = learned("1.html", "2.html", "3.html"), page_fingerprints("4.html")
    on_page = template.template().intersection(page)
    assert on_page  # the site's template is on its fourth page
    assert template.more_on_page(page) == template.more_on_page(page, frozenset()) == on_page
    assert template.more_on_page(page, on_page) is None
    assert template.more_on_page(page, on_page - {min(on_page)}) == on_page
    assert SiteTemplate().more_on_page(page) is None  # nothing learned: nothing to take out


@pytest.mark.parametrize(
    "damaged", sorted((FIXTURES / "jsondata").glob("template_*.json")), ids=lambda p: p.stem
)
def test_a_damaged_template_is_a_value_error_never_another_exception(damaged):
    with pytest.raises(ValueError, match="not a site template"):
        SiteTemplate.from_json(damaged.read_bytes())


def test_a_template_read_back_is_the_one_written():
    learned = SiteTemplate()
    for article in ("a", "b", "c"):
        learned.learn([1, 2, 2**64 - 1], article)
    again = SiteTemplate.from_json(learned.to_json())
    assert again.pages == 3 and again.template() == learned.template() == {1, 2, 2**64 - 1}
