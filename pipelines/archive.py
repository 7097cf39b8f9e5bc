"""Archive stage: rows in the declared schema, buffered per partition, spooled as Parquet parts.

One part per partition (outlet, publication month) per ``ARCHIVE_ROWS_PER_FILE`` rows, named
``part-<crawl id>-<n>.parquet`` so runs never overwrite each other. Parts go to the local spool
first and reach the store through :mod:`pipelines.publish`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC

import pyarrow as pa
from scrapy.crawler import Crawler

from crawler.items import Article
from pipelines.publish import Spool, SpooledCrawl, publish_spool, spool_from_settings
from pipelines.schema import SCHEMA, UNKNOWN_MONTH
from pipelines.storage import Store, store_from_settings

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
        "language_confidence": item.language_confidence or 0.0,
        "languages": [{"language": language, "share": share} for language, share in item.languages],
        "text": text,
        "text_hash": item.text_hash, "text_chars": len(text), "http_status": item.http_status,
        "content_type": item.content_type or None, "charset": item.charset, "crawl_id": item.crawl_id,
        "extractor": item.extractor, "extractor_version": item.extractor_version,
    }


def partition_of(item: Article) -> str:
    month = item.published_at.astimezone(UTC).strftime("%Y-%m") if item.published_at else UNKNOWN_MONTH
    return f"outlet={item.outlet_id}/published={month}"


class ArchivePipeline:
    """Spools archived rows as Parquet parts, then publishes them to the store.

    Settings: ``ARCHIVE_URI`` (a folder, file:// or s3://bucket/prefix; default ``output``),
    ``ARCHIVE_SPOOL`` (where parts wait; default ``<archive>/.spool``, or ``output/.spool`` for
    an object store), ``ARCHIVE_ROWS_PER_FILE`` (5000), ``ARCHIVE_S3_*`` (transfer tuning).
    Parts left by earlier runs are published when the spider opens, this run's when it closes.
    Counts: ``archive/rows``, ``archive/files``, ``archive/bytes`` (spooled),
    ``outlet/<id>/archived``, and ``publish/*`` (see :class:`pipelines.publish.PublishReport`).
    """

    def __init__(self, crawler: Crawler, store: Store, spool: Spool, rows_per_file: int = 5000):
        self.crawler = crawler
        self.stats = crawler.stats
        self.store = store
        self.spool = spool
        self.rows_per_file = rows_per_file
        self.buffers: dict[str, list[dict]] = defaultdict(list)
        self.parts_written = 0
        self.crawl: SpooledCrawl | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ArchivePipeline:
        settings = crawler.settings
        store = store_from_settings(settings)
        return cls(crawler, store, spool_from_settings(settings, store),
                   settings.getint("ARCHIVE_ROWS_PER_FILE", 5000))

    def open_spider(self) -> None:
        self._publish()  # what earlier runs left behind goes first
        spider = self.crawler.spider
        self.crawl = self.spool.open_crawl(spider.crawl_id, getattr(spider, "registry", {}))
        self.stats.set_value("publish/spool", str(self.spool.root))

    def process_item(self, item: Article) -> Article:
        if not isinstance(item, Article):
            return item
        partition = partition_of(item)
        self.buffers[partition].append(to_row(item))
        if len(self.buffers[partition]) >= self.rows_per_file:
            self._spool(partition)
        return item

    def close_spider(self) -> None:
        for partition in list(self.buffers):
            self._spool(partition)
        self.crawl.finish()
        self.crawl.release()
        self._publish()

    def _spool(self, partition: str) -> None:
        rows = self.buffers.pop(partition, [])
        if not rows:
            return
        self.parts_written += 1
        key = f"{partition}/part-{self.crawl.crawl_id}-{self.parts_written:05d}.parquet"
        size = self.crawl.write_part(key, pa.Table.from_pylist(rows, schema=SCHEMA))
        self.stats.inc_value(f"outlet/{rows[0]['outlet_id']}/archived", len(rows))
        self.stats.inc_value("archive/rows", len(rows))
        self.stats.inc_value("archive/files")
        self.stats.inc_value("archive/bytes", size)
        logger.debug("spooled %d rows as %s", len(rows), key)

    def _publish(self) -> None:
        report = publish_spool(self.store, self.spool)
        for name in ("files", "bytes", "duplicate_rows"):
            self.stats.inc_value(f"publish/{name}", getattr(report, name))
        self.stats.inc_value("publish/manifests", len(report.manifests))
        self.stats.set_value("publish/pending_files", report.pending_files)
        self.stats.set_value("publish/pending_crawls", len(report.pending_crawls))
        if report.errors:
            self.stats.set_value("publish/error", report.errors[-1])
