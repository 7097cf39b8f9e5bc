"""The Scrapy side of a shared crawl that every crawl loads: :class:`RedisCrawlExtension` joins
the worker to its crawl (only with ``REDIS_URL``), :func:`crawl_scope` names the crawl, and
:class:`SecretUrl` keeps the Redis password out of the log. Needs no Redis client: the state
(:mod:`crawler.shared.state`) is imported only when a crawl has ``REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, NotConfigured

from pipelines.archive.storage import LocalStore, Store, archive_identity, store_for
from pipelines.runtime.uri import mask_uri

if TYPE_CHECKING:
    from crawler.shared.state import RedisCrawl

logger = logging.getLogger(__name__)


class SecretUrl(str):
    """A Redis URL that shows no user, password or query value when printed (Scrapy logs its
    settings)."""

    def __repr__(self) -> str:
        return repr(mask_uri(str(self)))


def crawl_scope(store: Store, outlets: Iterable[str]) -> str:
    """Workers of one crawl write to the same archive and crawl the same outlets. A bucket is
    named by its bucket and prefix, a folder by its host and absolute path: two hosts' own
    ``output`` folders are two archives, however alike their paths."""
    archive = archive_identity(store)
    if isinstance(store, LocalStore):
        archive = f"{socket.gethostname()}:{archive}"
    return hashlib.sha256(f"{archive}\n{','.join(sorted(outlets))}".encode()).hexdigest()[:16]


class RedisCrawlExtension:
    """Joins the worker to its crawl (``REDIS_URL``), beats its heart, puts back the requests
    of dead workers, keeps it open until the whole crawl is done, and leaves the crawl when
    the worker closes. Counts ``redis/given_back`` (requests of dead workers put back)."""

    def __init__(self, crawler: Crawler, crawl: RedisCrawl, scope: str, seeding: bool):
        self.crawler = crawler
        self.crawl = crawl
        self.scope = scope
        self.seeding = seeding
        self._heart: asyncio.Task[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RedisCrawlExtension:
        settings = crawler.settings
        if not settings.get("REDIS_URL"):
            raise NotConfigured  # no REDIS_URL: one process (a reason would be logged as a WARNING)
        from crawler.shared.state import RedisCrawl, redis_client  # (only for a shared crawl)

        scope = crawl_scope(store_for(settings["ARCHIVE_URI"]), settings.getlist("NEWSARCHIVE_OUTLETS"))
        crawl, _ = RedisCrawl.join(
            redis_client(settings["REDIS_URL"]), scope, settings.getfloat("REDIS_WORKER_TIMEOUT")
        )
        extension = cls(crawler, crawl, scope, crawl.should_seed())
        crawler.signals.connect(extension.opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.idle, signal=signals.spider_idle)
        crawler.signals.connect(extension.closed, signal=signals.spider_closed)
        logger.info(
            "joined crawl %s as worker %s%s",
            crawl.crawl_id,
            crawl.worker,
            " (queueing the start points)" if extension.seeding else "",
        )
        return extension

    def opened(self) -> None:
        self._heart = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.crawl.timeout / 3)
            self.crawl.beat()
            self.crawler.stats.inc_value("redis/given_back", self.crawl.reclaim_dead())

    def idle(self) -> None:
        """Scrapy asks every few seconds while this worker has nothing to do."""
        self.crawl.idle()
        self.crawler.stats.inc_value("redis/given_back", self.crawl.reclaim_dead())
        if self.crawl.should_seed():  # the worker that was to queue the start points died first
            logger.warning(
                "queueing the start points of crawl %s (its first worker died first)", self.crawl.crawl_id
            )
            for request in self.crawler.spider.start_points():
                self.crawler.engine.crawl(request)
            self.crawl.seeded()
            raise DontCloseSpider("start points queued")
        if not self.crawl.finished():
            raise DontCloseSpider("other workers are busy, or requests are queued")
        self.crawler.spider.ran_to_the_end = True

    def closed(self) -> None:
        from redis import RedisError  # (only for a shared crawl)

        if self._heart is not None:
            self._heart.cancel()
        stats = self.crawler.stats
        sealed = not stats.get_value("publish/pending_crawls") and not stats.get_value("publish/error")
        try:
            totals = self.crawl.leave(sealed, self.scope, self.crawler.spider.pages_found_by_outlet())
        except RedisError as exc:
            logger.error("could not leave crawl %s cleanly: %s", self.crawl.crawl_id, exc)
            return
        # the summary judges the whole crawl, by its last worker (an outlet may be another's)
        outlets = self.crawler.settings.getlist("NEWSARCHIVE_OUTLETS")
        for outlet_id, pages in (totals or {}).items():
            if outlet_id in outlets:  # (Redis may hold anything)
                stats.set_value(f"redis/crawl_found/{outlet_id}", pages)
        stats.set_value("redis/last_worker", totals is not None)


def redis_extension(crawler: Crawler) -> RedisCrawlExtension:
    extension = crawler.get_extension(RedisCrawlExtension)
    if extension is None:
        raise RuntimeError("crawler.redis_crawl.RedisCrawlExtension must be enabled with REDIS_URL")
    return extension
