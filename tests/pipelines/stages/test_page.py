"""One page through the extraction and language stages, as the crawl's workers run it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from pipelines.article import Article
from pipelines.runtime.pool import WorkerPool
from pipelines.stages.page import PageAnalyser
from tests.conftest import FIXTURES, REPO, SHARED, fetched_article

PAGES = FIXTURES / "pages"


def page(name: str) -> Article:
    return fetched_article(body=(PAGES / name).read_bytes())


def test_the_article_fields_are_filled_and_the_body_dropped():
    item = PageAnalyser()(page("editor_lines.html"))
    assert item.body == b"" and item.not_article is None
    assert item.title == "市区新增三条公交线路" and item.editor == "赵敏" and item.text
    assert (item.language, item.language_script, item.languages[0][0]) == ("zh", "Hans", "zh")
    assert item.published_at.isoformat() == "2024-06-01T08:30:00+08:00"
    assert item.extractor == "trafilatura+readability"


def test_a_page_without_an_article_says_why():
    assert PageAnalyser()(page("garbage.bin")).not_article == "empty"
    assert PageAnalyser(min_chars=10_000)(page("editor_lines.html")).not_article == "too_short"


def test_the_stages_cores_import_no_scrapy():
    """Worker processes import them: Scrapy and its reactor stay in the crawl process."""
    code = (
        "import sys, pipelines.stages.page, pipelines.runtime.pool, pipelines.archive.rows, "
        "pipelines.stages.dedup, pipelines.archive.publish, pipelines.archive.index, pipelines.archive.lock, "
        "pipelines.archive.storage, pipelines.archive.schema; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scrapy', 'twisted', 'itemadapter'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_worker_analysing_chinese_and_english_pages_imports_no_numpy():
    """13 MB and an import in every worker: the SimHash is dedup's, taken in the crawl process,
    and py3langid (numpy's other user) loads only for texts of a few words."""
    english = next((SHARED / "eval" / "daniel_en").glob("*.html")).read_bytes()
    pages = [page("editor_lines.html"), fetched_article(body=english)]

    async def run() -> list[Any]:
        async with WorkerPool("tests.pipelines.stages.page_modules:ModulesAfterPage", {}, 1, 60) as pool:
            return [await pool.run((item, ["numpy", "scrapy"])) for item in pages]

    assert asyncio.run(run()) == [("zh", []), ("en", [])]


def test_a_page_that_says_noarchive_is_not_archived_unless_told_to():
    assert PageAnalyser()(page("noarchive.html")).not_article == "noarchive"
    assert PageAnalyser(obey_noarchive=False)(page("noarchive.html")).not_article is None
    header = fetched_article(body=(PAGES / "editor_lines.html").read_bytes(), robots_headers=("noarchive",))
    assert PageAnalyser()(header).not_article == "noarchive"
    for other_crawler in ("googlebot: noarchive", "noindex, nofollow"):
        page_of = fetched_article(
            body=(PAGES / "editor_lines.html").read_bytes(), robots_headers=(other_crawler,)
        )
        assert PageAnalyser()(page_of).not_article is None
