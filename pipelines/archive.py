"""Archive stage: rows in the declared schema, buffered per partition, written as Parquet parts.

One part per partition (outlet, publication month) per ``ARCHIVE_ROWS_PER_FILE`` rows, named
``part-<crawl id>-<n>.parquet`` so runs never overwrite each other; storage makes each file
appear whole.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC

import pyarrow as pa
from scrapy.crawler import Crawler
from scrapy.statscollectors import StatsCollector

from crawler.items import Article
from pipelines.schema import SCHEMA, UNKNOWN_MONTH
from pipelines.storage import LocalStorage, storage_for

logger = logging.getLogger(__name__)


def to_row(item: Article) -> dict:
    """The item as a row of :data:`SCHEMA`."""
    text = item.text or ""
    return {
        "article_id": item.article_id, "url": item.url, "canonical_url": item.canonical_url or item.url,
        "outlet_id": item.outlet_id, "outlet_name": item.outlet_name, "region": item.region,
        "title": item.title, "authors": list(item.authors), "editor": item.editor,
        "source": item.source, "section": item.section, "tags": list(item.tags),
        "published_at": item.published_at, "published_at_raw": item.published_at_raw,
        "fetched_at": item.fetched_at, "language": item.language or "und",
        "language_script": item.language_script,
        "language_confidence": item.language_confidence or 0.0, "text": text,
        "text_hash": item.text_hash, "text_chars": len(text), "http_status": item.http_status,
        "content_type": item.content_type or None, "charset": item.charset, "crawl_id": item.crawl_id,
        "extractor": item.extractor, "extractor_version": item.extractor_version,
    }


def partition_of(item: Article) -> str:
    month = item.published_at.astimezone(UTC).strftime("%Y-%m") if item.published_at else UNKNOWN_MONTH
    return f"outlet={item.outlet_id}/published={month}"


class ArchivePipeline:
    """Writes archived rows. Settings: ``ARCHIVE_URI`` (a folder; default ``output``),
    ``ARCHIVE_ROWS_PER_FILE`` (5000). Counts: ``archive/rows``, ``archive/files``,
    ``archive/bytes``, ``outlet/<id>/archived``."""

    def __init__(self, stats: StatsCollector, storage: LocalStorage, rows_per_file: int = 5000):
        self.stats = stats
        self.storage = storage
        self.rows_per_file = rows_per_file
        self.buffers: dict[str, list[dict]] = defaultdict(list)
        self.parts_written = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ArchivePipeline:
        settings = crawler.settings
        return cls(crawler.stats, storage_for(settings["ARCHIVE_URI"]),
                   settings.getint("ARCHIVE_ROWS_PER_FILE", 5000))

    def process_item(self, item: Article) -> Article:
        if not isinstance(item, Article):
            return item
        partition = partition_of(item)
        self.buffers[partition].append(to_row(item))
        if len(self.buffers[partition]) >= self.rows_per_file:
            self._flush(partition)
        return item

    def close_spider(self) -> None:
        for partition in list(self.buffers):
            self._flush(partition)

    def _flush(self, partition: str) -> None:
        rows = self.buffers.pop(partition, [])
        if not rows:
            return
        crawl_id = rows[0]["crawl_id"]
        self.parts_written += 1
        path = f"{partition}/part-{crawl_id}-{self.parts_written:05d}.parquet"
        size = self.storage.write_parquet(path, pa.Table.from_pylist(rows, schema=SCHEMA))
        self.stats.inc_value(f"outlet/{rows[0]['outlet_id']}/archived", len(rows))
        self.stats.inc_value("archive/rows", len(rows))
        self.stats.inc_value("archive/files")
        self.stats.inc_value("archive/bytes", size)
        logger.debug("archived %d rows to %s", len(rows), path)
