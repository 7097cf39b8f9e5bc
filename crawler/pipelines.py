"""The item pipelines: thin Scrapy adapters over the stages in ``pipelines/``.

Each is built by ``from_crawler`` from its own settings, counts its outcomes in Scrapy's stats
(the run summary is made from them) and drops what is not to be archived with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, NoReturn

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector

from crawler.capture import WarcExtension
from crawler.extensions import ArchiveExtension, archive_extension
from crawler.from_settings import page_pool
from crawler.shared.extension import redis_extension
from crawler.templates import TemplateLearning
from pipelines.archive.index import ArchiveIndex, unchanged_entries
from pipelines.archive.rows import PartBuffers, partition_of, to_row
from pipelines.article import Article
from pipelines.runtime.pool import TaskFailed, WorkerPool
from pipelines.stages.dedup import Deduplicator

if TYPE_CHECKING:
    from crawler.shared.state import RedisCrawl

logger = logging.getLogger(__name__)
FAILED_VERDICTS = ("too_deep",)  # analyser verdicts that are failures to read, not pages without articles


def _drop(stats: StatsCollector, item: Article, stage: str, reason: str, message: str) -> None:
    stats.inc_value(f"{stage}/dropped/{reason}")
    stats.inc_value(f"outlet/{item.outlet_id}/dropped/{reason}")
    raise DropItem(message)


class ExtractPipeline:
    """Extraction and language detection of each page, in worker processes.

    The workers run :class:`pipelines.stages.page.PageAnalyser` (``newsarchive extract`` runs it too),
    off the reactor and on every core. Settings: ``EXTRACT_WORKERS`` (0: one per core),
    ``EXTRACT_TIMEOUT`` (seconds a page may take; past it the worker is killed and replaced),
    ``EXTRACT_MIN_CHARS`` (pages with less paragraph text are not articles), ``LANGUAGE_SEED``,
    ``LANGUAGE_SAMPLE_CHARS``. Counts ``extract/ok``, ``extract/dropped/<reason>``,
    ``extract/failed/<timeout|crashed|error>`` (logged as errors), ``language/<code>``. A page it
    drops is remembered in the crawl's ``archive`` (:meth:`ArchiveExtension.note_visit`) as
    ``not_article``, ``noarchive`` or ``failed``: that says when the page is fetched again. With
    ``TEMPLATE_LEARNING``, each page is extracted with its outlet's template as the crawl opened,
    and learned from for the next crawl (:mod:`crawler.templates`).
    """

    def __init__(
        self,
        crawler: Crawler,
        pool: WorkerPool,
        templates: TemplateLearning | None = None,
        archive: ArchiveExtension | None = None,
    ):
        self.crawler = crawler
        self.stats = crawler.stats
        self.pool = pool
        self.templates = templates
        self.archive = archive  # None: the pages dropped are not remembered (a pipeline on its own)
        self._started: asyncio.Future[None] | None = None
        self._templates_loaded: asyncio.Future[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ExtractPipeline:
        templates = TemplateLearning(crawler.stats) if crawler.settings.getbool("TEMPLATE_LEARNING") else None
        return cls(crawler, page_pool(crawler.settings), templates, archive_extension(crawler))

    async def open_spider(self) -> None:
        # the workers import and load their models while the crawl fetches its first pages
        self._started = asyncio.ensure_future(self.pool.start())
        if self.templates is not None:
            outlets = list(getattr(self.crawler.spider, "registry", {}))
            store = archive_extension(self.crawler).archive.store
            # with REDIS_URL: every worker extracts with the templates its first worker read
            shared = redis_extension(self.crawler).crawl if self.crawler.settings.get("REDIS_URL") else None
            self._templates_loaded = asyncio.ensure_future(
                asyncio.to_thread(self.templates.load, store, outlets, shared)
            )

    async def close_spider(self) -> None:
        with contextlib.suppress(RuntimeError):  # a start that failed failed every page already
            await self._started
        await self.pool.close()
        if self.templates is not None:
            archive = archive_extension(self.crawler).archive
            crawl_id = self.crawler.spider.crawl_id
            save = functools.partial(self.templates.save, archive.store, archive.spool.root, crawl_id)
            if self.crawler.settings.get("REDIS_URL"):  # the workers save an outlet's one at a time
                shared = redis_extension(self.crawler).crawl
                save = functools.partial(save, lock=lambda outlet_id: shared.lock(f"templates:{outlet_id}"))
            await asyncio.to_thread(save)

    async def process_item(self, item: Article) -> Article:
        if not isinstance(item, Article):
            return item
        if item.content_type and "html" not in item.content_type and "xml" not in item.content_type:
            self._remember(item, "not_article")
            _drop(self.stats, item, "extract", "not_html", f"not an article (not_html): {item.url}")
        try:
            item = await self._analysed(item)
        except TaskFailed as failure:
            self._failed(item, failure.reason, f"\n{failure.traceback or failure.detail}")
        self.stats.inc_value(f"language/{item.language}")
        if item.not_article in FAILED_VERDICTS:  # the page may hold an article we could not read
            self._failed(item, item.not_article)
        if item.not_article:
            self._remember(item, "noarchive" if item.not_article == "noarchive" else "not_article")
            _drop(
                self.stats,
                item,
                "extract",
                item.not_article,
                f"not an article ({item.not_article}): {item.url}",
            )
        self.stats.inc_value("extract/ok")
        return item

    def _failed(self, item: Article, reason: str, detail: str = "") -> NoReturn:
        """Counts and logs a page extraction could not read, and drops it (fetched again next run)."""
        self._remember(item, "failed")
        self.stats.inc_value(f"extract/failed/{reason}")
        self.stats.inc_value(f"outlet/{item.outlet_id}/failed")
        self.stats.inc_value(f"outlet/{item.outlet_id}/failed/{reason}")
        logger.error("extraction failed (%s), not archived this run: %s%s", reason, item.url, detail)
        raise DropItem(f"extraction failed ({reason}): {item.url}")

    def _remember(self, item: Article, outcome: str) -> None:
        if self.archive is not None:
            self.archive.note_visit(item.url, item.redirected_from, outcome)

    async def _analysed(self, item: Article) -> Article:
        try:
            await asyncio.shield(self._started)
        except RuntimeError as exc:  # no worker process could start
            raise TaskFailed("crashed", str(exc)) from None
        if self.templates is None:
            return await self.pool.run(item)
        await asyncio.shield(self._templates_loaded)
        # the template as the crawl opened, whatever this crawl learns: rows of no page's order
        item.site_template = self.templates.template(item.outlet_id)
        item.learn_template = True
        item = await self.pool.run(item)
        if item.template_fingerprints is not None:  # None: a page with no tree, nothing to learn
            self.templates.learn(item.outlet_id, item.template_fingerprints, item.title or item.url)
        return item


class DedupPipeline:
    """Sets ``article_id``, ``text_hash``, ``version``, ``duplicate_of`` and ``text_simhash``; drops
    what adds no row.

    Asks the crawl's archive (:class:`crawler.extensions.ArchiveExtension`) what it holds: its
    index as the crawl opened, and what waits in the spool. An article fetched again with the
    text the archive holds is dropped (``unchanged``) and the fetch noted in the index; with
    another text it is archived as its next version. If the store could not be read,
    publication later drops what turns out to be archived already. Counts
    ``dedup/duplicate_url``, ``dedup/unchanged``, ``dedup/changed`` and ``dedup/copies`` (rows
    with ``duplicate_of``), and per outlet ``outlet/<id>/changed`` and ``outlet/<id>/copies``.
    """

    def __init__(self, stats: StatsCollector, archive: ArchiveExtension, shared: RedisCrawl | None = None):
        self.stats = stats
        self.archive = archive
        self.shared = shared  # the other workers of a crawl in Redis (REDIS_URL)
        self.index: ArchiveIndex | None = None
        self.dedup: Deduplicator | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DedupPipeline:
        shared = redis_extension(crawler).crawl if crawler.settings.get("REDIS_URL") else None
        return cls(crawler.stats, archive_extension(crawler), shared)

    async def open_spider(self) -> None:
        self.index = (await self.archive.opened()).index
        self.dedup = Deduplicator(self.index)

    def process_item(self, item: Article) -> Article:
        if not isinstance(item, Article):
            return item
        reason = self.dedup.duplicate(item)
        if reason == "unchanged":
            self.archive.note(unchanged_entries(item, self.index.held(item.article_id)))
        if reason is None and self.shared is not None:
            reason = self._shared_duplicate(item)
        if reason is not None:
            _drop(self.stats, item, "dedup", reason, f"{reason}: {item.url}")
        for counted, what in ((item.version > 1, "changed"), (item.duplicate_of, "copies")):
            if counted:
                self.stats.inc_value(f"dedup/{what}")
                self.stats.inc_value(f"outlet/{item.outlet_id}/{what}")
        return item

    def _shared_duplicate(self, item: Article) -> str | None:
        """Across the workers of a shared crawl: one archives each article (an atomic claim),
        and a copy names the first article archived with its text."""
        if not self.shared.claim(item.article_id):
            return "duplicate_url"
        if item.duplicate_of is None:
            first = self.shared.first_with_text(item.text_hash, item.article_id)
            item.duplicate_of = first if first != item.article_id else None
        return None


class ArchivePipeline:
    """Rows in the archive's schema, buffered per partition and handed to the archive as parts.

    Settings: ``ARCHIVE_ROWS_PER_FILE`` (5000), ``ARCHIVE_BYTES_PER_FILE`` (32 MiB of row data),
    ``ARCHIVE_PART_MAX_AGE`` (seconds a row may wait; 600), ``ARCHIVE_BUFFER_BYTES`` (row data
    held across all partitions; 32 MiB). The parts are spooled and published by
    :class:`crawler.extensions.ArchiveExtension` as they come; at the end the WARC being written
    is finished first, so that the run's manifest lists it.
    """

    def __init__(self, archive: ArchiveExtension, buffers: PartBuffers, warc: WarcExtension | None = None):
        self.archive = archive
        self.buffers = buffers
        self.warc = warc
        self._aging: asyncio.Task[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ArchivePipeline:
        settings = crawler.settings
        buffers = PartBuffers(
            settings.getint("ARCHIVE_ROWS_PER_FILE"),
            settings.getint("ARCHIVE_BYTES_PER_FILE"),
            settings.getfloat("ARCHIVE_PART_MAX_AGE"),
            settings.getint("ARCHIVE_BUFFER_BYTES"),
        )
        return cls(archive_extension(crawler), buffers, crawler.get_extension(WarcExtension))

    async def open_spider(self) -> None:
        await self.archive.opened()
        self._aging = asyncio.ensure_future(self._roll_aged_parts())

    async def process_item(self, item: Article) -> Article:
        if not isinstance(item, Article):
            return item
        if self.warc is not None:
            await self.warc.keep(item)  # the page's WARC record, held until judged (crawler/capture.py)
        for part in self.buffers.add(partition_of(item), to_row(item)):
            await self.archive.write(part)
        return item

    async def close_spider(self) -> None:
        if self._aging is None:  # the archive never opened (the crawl reports why): no row came
            return
        self._aging.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._aging
        for part in self.buffers.drain():
            await self.archive.write(part, publish=False)  # published once the run is marked finished
        if self.warc is not None:
            await self.warc.close()
        await self.archive.close()

    async def _roll_aged_parts(self) -> None:
        """Parts whose rows have waited long enough go even when no new row arrives."""
        while True:
            await asyncio.sleep(min(60.0, self.buffers.max_age / 4))
            for part in self.buffers.aged():
                await self.archive.write(part)
