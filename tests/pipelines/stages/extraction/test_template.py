"""A site's template, learned from its pages (``pipelines/stages/extraction/template.py``)."""

from __future__ import annotations

import json
import random
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


def test_a_large_template_kept_forgets_what_one_article_had(monkeypatch):
    unbounded = learned("1.html", "2.html", "3.html", "4.html")
    monkeypatch.setattr(site_template, "MAX_FINGERPRINTS", len(unbounded.seen_on) - 1)
    in_memory = learned("1.html", "2.html", "3.html", "4.html")
    assert in_memory == unbounded  # bounded only when kept
    kept = SiteTemplate.from_json(in_memory.to_json())
    assert len(kept.seen_on) == len(unbounded.seen_on) - 1
    assert kept.template() == unbounded.template() != frozenset()


@pytest.mark.parametrize("name", ["1.html", "4.html"])
def test_a_site_of_one_page_is_left_as_it_was(name):
    assert text(name, learned(name)) == text(name)


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


def merged(*parts: SiteTemplate) -> SiteTemplate:
    whole = SiteTemplate()
    for part in parts:
        whole.merge(part)
    return whole


@pytest.mark.parametrize("split", [("1.html", "3.html"), ("1.html",), ("2.html", "3.html", "4.html")])
def test_learning_merged_from_two_workers_is_the_learning_of_all_pages_in_one(split):
    """Whichever worker saw which pages: the same template, in either order, merged once or twice."""
    pages = ("1.html", "2.html", "3.html", "4.html")
    first, second = learned(*split), learned(*(name for name in pages if name not in split))
    whole = learned(*pages)
    assert whole.template()  # the strap and the support line
    assert merged(first, second).template() == merged(second, first).template() == whole.template()
    assert merged(first, second).seen_on == merged(second, first).seen_on  # which articles are kept too
    assert merged(first, second, second, first).seen_on == merged(first, second).seen_on
    assert merged(first, second).pages == 4
    assert text("4.html", merged(first, second)) == text("4.html", whole) != text("4.html")


def test_a_template_read_back_keeps_the_blocks_seen_on_one_article():
    """Two workers that each saw a block once saw it on two articles; with a third, it is template."""
    first, second, third = SiteTemplate(), SiteTemplate(), SiteTemplate()
    for worker, article in ((first, "a"), (second, "b"), (third, "c")):
        worker.learn([7], article)
    kept = [SiteTemplate.from_json(worker.to_json()) for worker in (first, second)]
    assert kept == [first, second]
    assert merged(*kept).template() == frozenset()
    assert merged(*kept, third).template() == {7}


def test_a_template_kept_holds_its_template_then_the_blocks_on_most_articles_then_the_smallest(
    monkeypatch,
):
    monkeypatch.setattr(site_template, "MAX_FINGERPRINTS", 6)
    monkeypatch.setattr(site_template, "MAX_TEMPLATE", 2)
    seen_on = {
        12: (1, 2, 3),
        11: (1, 2, 3),
        10: (4, 5, 6),
        21: (1, 2),
        20: (1, 2),
        31: (1,),
        30: (1,),
        5: (1,),
    }
    kept = SiteTemplate.from_json(SiteTemplate(seen_on=seen_on).to_json())
    assert kept.seen_on == {k: seen_on[k] for k in (10, 11, 20, 21, 5, 30)}
    assert kept.template() == SiteTemplate(seen_on=seen_on).template() == {10, 11}  # the smallest


def test_a_template_file_cannot_make_a_larger_template_than_a_crawl_keeps(monkeypatch):
    monkeypatch.setattr(site_template, "MAX_TEMPLATE", 5)
    hostile = {"pages": 1, "seen_on": {f"{k:016x}": [1, 2, 3] for k in range(50)}}
    kept = SiteTemplate.from_json(json.dumps(hostile).encode())
    assert kept.template() == set(range(5)) and len(kept.seen_on) == 5


def test_learning_keeps_the_smallest_articles_of_a_block_whatever_their_order():
    forward, backward = SiteTemplate(), SiteTemplate()
    articles = [f"article {n}" for n in range(6)]
    for article in articles:
        forward.learn([7], article)
    for article in reversed(articles):
        backward.learn([7], article)
    assert forward.seen_on == backward.seen_on and len(forward.seen_on[7]) == site_template.TEMPLATE_PAGES
    assert forward.seen_on[7] == tuple(sorted(forward.seen_on[7]))


def test_the_template_kept_is_no_pages_order_nor_workers_number(monkeypatch):
    """More blocks than a template keeps: in order, in reverse, by two workers merged, or saved by
    one and merged by the other, the same file (what ../review40/bound_order.py found otherwise)."""
    monkeypatch.setattr(site_template, "MAX_FINGERPRINTS", 200)  # 323 seen; each half under it
    draw = random.Random(1)
    pages = [
        (
            [draw.getrandbits(64) for _ in range(8)] + [1, 2] + ([3] if n in (5, 30, 39) else []),
            f"article {n}",
        )
        for n in range(40)
    ]

    def learned_from(order: list[tuple[list[int], str]]) -> SiteTemplate:
        template = SiteTemplate()
        for page_fingerprints, article in order:
            template.learn(page_fingerprints, article)
        return template

    kept = learned_from(pages).to_json()
    assert SiteTemplate.from_json(kept).template() == {1, 2, 3}
    assert len(SiteTemplate.from_json(kept).seen_on) == 200
    assert learned_from(pages[::-1]).to_json() == kept
    first, second = learned_from(pages[0::2]), learned_from(pages[1::2])
    assert merged(first, second).to_json() == merged(second, first).to_json() == kept
    assert merged(SiteTemplate.from_json(first.to_json()), second).to_json() == kept


def test_learning_in_memory_is_bounded_past_its_cap(monkeypatch):
    monkeypatch.setattr(site_template, "MAX_FINGERPRINTS", 10)
    monkeypatch.setattr(site_template, "MAX_LEARNING", 50)
    template = SiteTemplate()
    for article in ("a", "b", "c"):
        template.learn([1, 2], article)
    for n in range(60):
        template.learn([100 + n], f"page {n}")
        assert len(template.seen_on) <= 50
    assert template.template() == {1, 2} and len(template.seen_on) < 50


def test_pages_merged_stay_a_count_a_template_read_back_takes():
    largest = SiteTemplate(pages=site_template.MAX_PAGES)
    assert SiteTemplate.from_json(merged(largest, largest).to_json()).pages == site_template.MAX_PAGES
