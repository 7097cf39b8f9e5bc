"""Dedup: one row per article and text, changed texts as versions, copies linked to the first."""

from __future__ import annotations

import itertools
import json

import pytest

from pipelines.archive.index import ArchiveIndex
from pipelines.article import Article
from pipelines.stages import dedup
from pipelines.stages.dedup import Deduplicator, article_id, simhash, text_hash
from tests.conftest import SHARED, fetched_article

TEXTS = [
    json.loads(path.read_text(encoding="utf-8"))["text"]
    for path in sorted((SHARED / "eval").glob("daniel_*/*.json"))[:60]
]
TEXTS = [t for t in TEXTS if len(t.split("\n\n")) >= 3]


def item(url: str, text: str, outlet: str = "a") -> Article:
    return fetched_article(url=url, text=text, outlet_id=outlet, crawl_id="c2")


def archived(url: str, text: str, version: int = 1) -> ArchiveIndex:
    index = ArchiveIndex()
    index.add(
        {
            "url_key": article_id(url),
            "url": url,
            "article_id": article_id(url),
            "text_hash": text_hash(text),
            "version": version,
            "file": "outlet=a/published=2026-11/part-c1-00001.parquet",
        }
    )
    return index


def distance(a: int, b: int) -> int:
    return ((a ^ b) & (2**64 - 1)).bit_count()


@pytest.mark.parametrize("text", TEXTS[:20])
def test_a_copy_with_small_edits_keeps_its_simhash_close(text):
    paragraphs = text.split("\n\n")
    edited = "\n\n".join([*paragraphs[:-1], paragraphs[-1].replace("，", "、", 1).replace(" the ", " a ", 1)])
    assert distance(simhash(text), simhash(edited + "\n\n来源：新华社 Source: Xinhua")) <= 8


def test_unrelated_texts_are_far_apart():
    hashes = [simhash(t) for t in TEXTS]
    assert min(distance(a, b) for a, b in itertools.pairwise(hashes)) >= 16
    assert simhash("") is None and simhash("— · —") is None


def test_a_new_article_is_version_1_and_a_second_fetch_in_the_run_adds_nothing():
    dedup = Deduplicator(ArchiveIndex())
    first = item("https://x.cn/a.html", TEXTS[0])
    assert dedup.duplicate(first) is None
    assert (first.version, first.duplicate_of) == (1, None)
    assert dedup.duplicate(item("https://x.cn/a.html?utm_source=feed", TEXTS[0])) is None  # another URL
    assert dedup.duplicate(item("https://x.cn/a.html", TEXTS[0])) == "duplicate_url"


def test_a_row_gets_its_texts_simhash_and_what_adds_no_row_is_not_hashed():
    dedup = Deduplicator(ArchiveIndex())
    first, again = item("https://x.cn/a.html", TEXTS[0]), item("https://x.cn/a.html", TEXTS[0])
    assert dedup.duplicate(first) is None and dedup.duplicate(again) == "duplicate_url"
    assert (first.text_simhash, again.text_simhash) == (simhash(TEXTS[0]), None)


def test_the_archived_text_adds_nothing_and_a_changed_one_is_the_next_version():
    index = archived("https://x.cn/a.html", TEXTS[0], version=2)
    assert Deduplicator(index).duplicate(item("https://x.cn/a.html", TEXTS[0])) == "unchanged"
    corrected = item("https://x.cn/a.html", TEXTS[0] + "\n\n（更正）")
    assert Deduplicator(index).duplicate(corrected) is None
    assert corrected.version == 3 and corrected.article_id == article_id("https://x.cn/a.html")


def test_the_same_text_elsewhere_is_a_row_that_names_the_first():
    index = archived("https://x.cn/a.html", TEXTS[0])
    dedup = Deduplicator(index)
    wire = item("https://y.cn/b.html", TEXTS[0], outlet="b")  # archived by an earlier run
    assert dedup.duplicate(wire) is None
    assert wire.duplicate_of == article_id("https://x.cn/a.html")
    first = item("https://x.cn/c.html", TEXTS[1])
    mobile = item("https://m.x.cn/c.html", TEXTS[1])  # within this run
    assert dedup.duplicate(first) is None and dedup.duplicate(mobile) is None
    assert (first.duplicate_of, mobile.duplicate_of) == (None, first.article_id)


def test_a_long_texts_simhash_does_not_depend_on_the_blocks_it_is_read_in(monkeypatch):
    text = "\n\n".join(TEXTS[:40]) * 4  # tens of thousands of tokens
    whole, two_tokens = simhash(text), simhash("一 二")
    monkeypatch.setattr(dedup, "_CHUNK", 1000)  # 3-grams now span many block boundaries
    assert simhash(text) == whole
    monkeypatch.setattr(dedup, "_CHUNK", 1)
    assert simhash(text) == whole and simhash("一 二") == two_tokens is not None
