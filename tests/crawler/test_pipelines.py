"""The Scrapy adapters: what a page that hangs, kills or fails its worker does to the crawl."""

from __future__ import annotations

import asyncio

import pytest
from scrapy.exceptions import DropItem
from scrapy.utils.test import get_crawler

from crawler.pipelines import ExtractPipeline
from pipelines.runtime.pool import WorkerPool
from tests.conftest import fetched_article


@pytest.mark.parametrize(
    ("target", "reason", "logged"),
    [
        pytest.param("HangingAnalyser", "timeout", "no result within 2 s", marks=pytest.mark.slow),
        ("CrashingAnalyser", "crashed", "exited with code 11"),
        ("RaisingAnalyser", "error", 'pool_targets.py", line'),  # the worker's traceback
        ("NoSuchAnalyser", "crashed", "did not start"),  # no worker could start: every page fails
    ],
)
def test_a_page_the_workers_fail_on_is_counted_logged_and_dropped(target, reason, logged, caplog):
    crawler = get_crawler()
    stats = crawler.stats
    pool = WorkerPool(f"tests.pipelines.runtime.pool_targets:{target}", {}, 1, timeout=2)
    pipeline = ExtractPipeline(crawler, pool)
    item = fetched_article(body=b"<html></html>", outlet_timezone="UTC")

    async def run() -> None:
        await pipeline.open_spider()
        try:
            for _ in range(2):  # the second page meets the replacement worker
                with pytest.raises(DropItem, match=f"extraction failed \\({reason}\\)"):
                    await pipeline.process_item(item)
        finally:
            await pipeline.close_spider()

    asyncio.run(run())
    assert stats.get_value(f"extract/failed/{reason}") == 2
    assert stats.get_value("outlet/x/failed") == 2
    assert (
        f"extraction failed ({reason}), not archived this run: https://news.example.cn/a/1.html"
        in caplog.text
    )


def test_a_page_too_deep_to_read_is_a_failure_not_a_page_without_article(caplog):
    crawler = get_crawler()
    stats = crawler.stats
    pipeline = ExtractPipeline(
        crawler, WorkerPool("tests.pipelines.runtime.pool_targets:TooDeepAnalyser", {}, 1, timeout=60)
    )
    item = fetched_article(body=b"<html></html>")

    async def run() -> None:
        await pipeline.open_spider()
        try:
            with pytest.raises(DropItem, match="extraction failed \\(too_deep\\)"):
                await pipeline.process_item(item)
        finally:
            await pipeline.close_spider()

    asyncio.run(run())
    assert (
        stats.get_value("extract/failed/too_deep") == 1 and stats.get_value("outlet/x/failed/too_deep") == 1
    )
    assert stats.get_value("extract/dropped/empty") is None
    assert (
        "extraction failed (too_deep), not archived this run: https://news.example.cn/a/1.html" in caplog.text
    )
