"""The Scrapy adapters: what a page that hangs, kills or fails its worker does to the crawl."""

from __future__ import annotations

import asyncio

import pyarrow.parquet as pq
import pytest
from scrapy import Spider
from scrapy.exceptions import DropItem
from scrapy.utils.test import get_crawler

from crawler.extensions import ArchiveExtension
from crawler.pipelines import ArchivePipeline, ExtractPipeline
from pipelines.archive.keys import delta_key, new_crawl_id
from pipelines.archive.rows import PartBuffers
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


def test_the_pages_extraction_drops_are_remembered_and_seal_a_run_of_no_row(tmp_path):
    """A page that is no article and one extraction failed on: each URL (the redirect's too) gets
    a visit with its outcome, in the delta of a run sealed for them alone."""
    crawler = get_crawler(settings_dict={"ARCHIVE_URI": str(tmp_path / "archive")})
    crawler.spider = Spider("outlets", crawl_id=new_crawl_id())
    archive = ArchiveExtension.from_crawler(crawler)
    pool = WorkerPool("tests.pipelines.runtime.pool_targets:CrashingAnalyser", {}, 1, timeout=2)
    pipeline = ExtractPipeline(crawler, pool, archive=archive)
    pdf = fetched_article(url="https://news.example.cn/a/2.pdf", content_type="application/pdf")
    crashing = fetched_article(body=b"<html></html>", redirected_from="https://news.example.cn/a?id=1")

    async def run() -> None:
        await archive.opened()
        await pipeline.open_spider()
        try:
            for item in (pdf, crashing):
                with pytest.raises(DropItem):
                    await pipeline.process_item(item)
        finally:
            await pipeline.close_spider()
            await archive.close()

    asyncio.run(run())
    delta = pq.read_table(tmp_path / "archive" / delta_key(crawler.spider.crawl_id)).to_pylist()
    assert {entry["url"]: entry["outcome"] for entry in delta} == {
        "https://news.example.cn/a/2.pdf": "not_article",
        "https://news.example.cn/a/1.html": "failed",
        "https://news.example.cn/a?id=1": "failed",
    }
    assert (crawler.stats.get_value("visits/not_article"), crawler.stats.get_value("visits/failed")) == (1, 1)


def test_an_archive_that_failed_to_open_closes_its_pipeline_quietly(tmp_path, monkeypatch):
    """A bug in opening the archive is the crawl's error (exit 5); closing the pipeline after it
    raised an AttributeError of its own on top."""
    crawler = get_crawler(settings_dict={"ARCHIVE_URI": str(tmp_path / "archive")})
    crawler.spider = Spider("outlets", crawl_id=new_crawl_id())
    archive = ArchiveExtension.from_crawler(crawler)

    def bug(*args: object) -> None:
        raise ZeroDivisionError("a bug in our own code")

    monkeypatch.setattr(archive.archive, "open", bug)
    pipeline = ArchivePipeline(archive, PartBuffers(5000, 1 << 25, 600.0, 1 << 25))

    async def run() -> None:
        with pytest.raises(ZeroDivisionError):
            await pipeline.open_spider()
        await pipeline.close_spider()

    asyncio.run(run())
    assert not (tmp_path / "archive" / "_manifests").exists()
