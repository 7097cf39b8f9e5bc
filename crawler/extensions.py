"""The crawl's one connection to its archive, shared by the stages that need it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.statscollectors import StatsCollector

from crawler.from_settings import spool_from_settings, store_from_settings
from pipelines.archive.index import visit_entries
from pipelines.archive.publish import Publisher, PublishReport
from pipelines.archive.rows import Part, to_table
from pipelines.archive.warc import WarcFile

_T = TypeVar("_T")


class ArchiveExtension:
    """One :class:`pipelines.archive.publish.Publisher` per crawl: one store client, one read of what the
    archive holds, for dedup and the archive writer alike.

    Its blocking work (reading manifests, writing Parquet, uploads) runs in one thread of its
    own, in order, as Scrapy's feed storages do with theirs; the reactor only waits for it when
    more than ``ARCHIVE_MAX_PENDING_PARTS`` parts are queued, so memory stays bounded when the
    store is slow. Counts ``publish/*`` (see :class:`pipelines.archive.publish.PublishReport`),
    ``archive/rows``, ``archive/files``, ``archive/bytes`` (spooled), ``outlet/<id>/archived``.
    """

    def __init__(self, crawler: Crawler, archive: Publisher, max_pending_parts: int = 4):
        self.crawler = crawler
        self.stats = crawler.stats
        self.archive = archive
        self.max_pending_parts = max_pending_parts
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="archive")
        self._opened: asyncio.Future[Publisher] | None = None
        self._pending: list[asyncio.Future[Any]] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ArchiveExtension:
        settings = crawler.settings
        store = store_from_settings(settings)
        return cls(
            crawler,
            Publisher(store, spool_from_settings(settings, store)),
            settings.getint("ARCHIVE_MAX_PENDING_PARTS", 4),
        )

    async def opened(self) -> Publisher:
        """The archive, once its index is read and earlier runs' parts are published; the first
        caller opens it, later callers wait for the same opening."""
        if self._opened is None:
            self._opened = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opened)

    async def _open(self) -> Publisher:
        spider = self.crawler.spider
        report = await self._in_thread(self.archive.open, spider.crawl_id, getattr(spider, "registry", {}))
        self._count(report)
        self.stats.set_value("publish/spool", str(self.archive.spool.root))
        return self.archive

    async def write(self, part: Part, publish: bool = True) -> None:
        """Queue ``part`` for spooling and (unless told not to) publication; wait only while too
        many are queued."""
        rows = len(part.rows)
        outlet_id = part.rows[0]["outlet_id"]
        written = self._in_thread(
            lambda: self.archive.write_part(part.partition, to_table(part.rows), publish)
        )
        self._pending.append(written)

        def count(done: asyncio.Future[Any]) -> None:
            if done.cancelled() or done.exception() is not None:
                return  # raised to whoever awaits it
            spooled = done.result()
            self.stats.inc_value(f"outlet/{outlet_id}/archived", rows)
            self.stats.inc_value("archive/rows", rows)
            self.stats.inc_value("archive/files")
            self.stats.inc_value("archive/bytes", spooled.bytes)
            self._count(spooled.published)

        written.add_done_callback(count)
        while len(self._pending) > self.max_pending_parts:
            await self._pending.pop(0)

    def publish_warc(self, warc: WarcFile) -> None:
        """Queue a finished WARC for publication (not awaited: the crawl's close waits for it)."""
        published = self._in_thread(self.archive.publish_warc, warc)
        self._pending.append(published)
        published.add_done_callback(
            lambda done: None if done.cancelled() or done.exception() else self._count(done.result())
        )

    def note(self, entries: list[dict]) -> None:
        """Index entries of no part (see :meth:`Publisher.note`), queued, not awaited."""
        self._in_thread(self.archive.note, entries)

    def note_visit(self, url: str, redirected_from: str | None, outcome: str) -> None:
        """An article page fetched or refused that archived no row: the index remembers why
        (``outcome``, one of :data:`pipelines.archive.index.VISIT_OUTCOMES`), which says when it
        is fetched again (:class:`crawler.middlewares.KnownArticles`). Counts ``visits/<outcome>``."""
        self.stats.inc_value(f"visits/{outcome}")
        now = datetime.now(UTC)
        self.note(visit_entries(url, redirected_from, outcome, now, self.crawler.spider.crawl_id))

    async def close(self) -> None:
        """Wait for every queued part, then publish what is left and seal the run."""
        try:
            while self._pending:
                await self._pending.pop(0)
            spider = self.crawler.spider
            discovery = getattr(spider, "discovery_state", lambda: None)()
            stopped_early = not getattr(spider, "ran_to_the_end", True)  # a signal, a CLOSESPIDER_* limit
            report = await self._in_thread(self.archive.close, discovery, stopped_early)
            self._count(report)
            self.stats.set_value("publish/pending_files", report.pending_files)
            self.stats.set_value("publish/pending_crawls", len(report.pending_crawls))
        finally:
            self._thread.shutdown()

    def _count(self, report: PublishReport) -> None:
        for name in ("files", "bytes", "warc_files", "warc_bytes", "duplicate_rows"):
            self.stats.inc_value(f"publish/{name}", getattr(report, name))
        self.stats.inc_value("publish/manifests", len(report.manifests))
        if report.errors:
            self.stats.set_value("publish/error", report.errors[-1])
        note_damaged(self.stats, report.damaged)
        if report.quarantined:
            self.stats.inc_value("publish/quarantined", len(report.quarantined))
            self.stats.set_value("publish/quarantine", str(Path(report.quarantined[-1]).parent))

    def _in_thread(self, function: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        return asyncio.get_running_loop().run_in_executor(self._thread, function, *args)


def note_damaged(stats: StatsCollector, problems: list[str]) -> None:
    """Objects of the archive the crawl read around (``archive/damaged``, one line each): the
    run reports them, and its exit code says so."""
    if problems:
        stats.set_value("archive/damaged", [*stats.get_value("archive/damaged", []), *problems])


def archive_extension(crawler: Crawler) -> ArchiveExtension:
    """The crawl's :class:`ArchiveExtension`, for the components that share its archive."""
    extension = crawler.get_extension(ArchiveExtension)
    if extension is None:
        raise RuntimeError("crawler.extensions.ArchiveExtension must be enabled in EXTENSIONS")
    return extension


class BugCounter:
    """Counts the exceptions our own code raised during the crawl (``bugs/spider``,
    ``bugs/pipeline``), so that the run's verdict tells a bug from a site's failure."""

    def __init__(self, stats: StatsCollector):
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BugCounter:
        counter = cls(crawler.stats)
        crawler.signals.connect(counter.spider_error, signal=signals.spider_error)
        crawler.signals.connect(counter.item_error, signal=signals.item_error)
        return counter

    def spider_error(self) -> None:
        self.stats.inc_value("bugs/spider")

    def item_error(self) -> None:
        self.stats.inc_value("bugs/pipeline")
