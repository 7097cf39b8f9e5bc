"""Broken pages by the hundred through extraction and language: no exception escapes.

Mutations of the real pages of ../shared/eval, from a fixed seed (the same pages every run): cut
short, bytes deleted, duplicated or garbled (NULs, invalid UTF-8, a wrong charset declaration),
tags left open or closed twice, markup nested deep. Each goes through
:class:`pipelines.stages.page.PageAnalyser` as a worker runs it. And pages nested past the parser's
limit in every way of ``tests/fixtures/extraction/nesting.toml`` at once.
"""

from __future__ import annotations

import random
import tomllib

import pytest

from pipelines.stages.page import PageAnalyser
from tests.conftest import FIXTURES, SHARED, fetched_article

PAGES = sorted((SHARED / "eval").glob("daniel_*/*.html"))
VERDICTS = {None, "empty", "too_short", "too_deep", "noarchive"}


def _cut(page: bytes, rng: random.Random) -> bytes:
    return page[: rng.randrange(len(page) + 1)]


def _delete(page: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(page) + 1)
    return page[:start] + page[start + rng.randrange(1, 5000) :]


def _duplicate(page: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(page) + 1)
    piece = page[start : start + rng.randrange(1, 20000)]
    return page[:start] + piece * rng.randrange(2, 20) + page[start:]


def _garble(page: bytes, rng: random.Random) -> bytes:
    noise = bytes(rng.choice(b"\x00\xff\xfe\xc3\x28\xe4\xbd<>&\"'\x1b") for _ in range(rng.randrange(1, 200)))
    start = rng.randrange(len(page) + 1)
    return page[:start] + noise + page[start:]


def _wrong_charset(page: bytes, rng: random.Random) -> bytes:
    charset = rng.choice([b"utf-16", b"big5", b"shift_jis", b"x-nonsense", b"utf-8"])
    return b'<meta charset="' + charset + b'">' + page


def _tags(page: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(page) + 1)
    soup = rng.choice(
        [b"<div>", b"</div>", b"<table><tr><td>", b"</p></p></p>", b"<![CDATA[", b"<!--", b"<script>"]
    )
    return page[:start] + soup * rng.randrange(1, 3000) + page[start:]


MUTATIONS = [_cut, _delete, _duplicate, _garble, _wrong_charset, _tags]


@pytest.fixture(scope="module")
def analyser() -> PageAnalyser:
    return PageAnalyser()


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.slow
def test_broken_pages_never_raise(analyser, seed):
    rng = random.Random(seed)
    for page in rng.sample(PAGES, 8):
        broken = page.read_bytes()
        for mutation in rng.sample(MUTATIONS, rng.randrange(1, 4)):
            broken = mutation(broken, rng)
        item = analyser(
            fetched_article(body=broken, header_charset=rng.choice([None, "utf-8", "gbk", "latin-1"]))
        )
        assert item.not_article in VERDICTS
        assert item.not_article is not None or item.text  # an article has its text
        assert item.language


NESTING = tomllib.loads((FIXTURES / "extraction" / "nesting.toml").read_text(encoding="utf-8"))["case"]


@pytest.mark.parametrize("seed", range(10))
def test_pages_nested_past_the_parsers_limit_every_way_at_once_are_read(analyser, seed):
    """3,000 to 20,000 of the fixture's start tags at random, and some of its end tags: the page
    is read (flattened), never too deep, the paragraph before the nesting in its text."""
    rng = random.Random(seed)
    levels = rng.randrange(3000, 20000)
    page = (FIXTURES / "pages" / "nested_template.html").read_text(encoding="utf-8")
    page = page.replace("<!--open-->", "".join(rng.choice(NESTING)["open"] for _ in range(levels)))
    ends = [case["close"] for case in NESTING if "close" in case]
    page = page.replace("<!--close-->", "".join(rng.choice(ends) for _ in range(rng.randrange(levels))))
    item = analyser(fetched_article(body=page.encode()))
    assert item.not_article != "too_deep" and "嵌套之前" in item.text
