"""scrapy-redis's scheduler and queue adapted to :class:`crawler.shared.state.RedisCrawl`: the
queue's entries in JSON and checked when taken (:mod:`crawler.shared.queue_entries`), taken into
the worker's held set. Loaded only for a crawl with ``REDIS_URL``
(:class:`crawler.shared.scheduler.CrawlScheduler` chooses it).
"""

from __future__ import annotations

import logging
import warnings

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import ScrapyDeprecationWarning
from scrapy.statscollectors import StatsCollector
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.queue import PriorityQueue
from scrapy_redis.scheduler import Scheduler

from crawler.shared.extension import redis_extension
from crawler.shared.queue_entries import (
    JsonRequests,
    MalformedRequest,
    entry_from_request,
    request_from_entry,
)
from crawler.shared.state import RedisCrawl

logger = logging.getLogger(__name__)
# scrapy-redis 0.9.1 passes `spider=` to the stats, deprecated by Scrapy 2.19: harmless, not logged
warnings.filterwarnings("ignore", "Passing a 'spider' argument to StatsCollector", ScrapyDeprecationWarning)


class HeldQueue(PriorityQueue):
    """scrapy-redis's priority queue, in JSON, whose pop moves the request into this worker's
    held set and checks it: an entry that is no request of this crawl is dropped, counted
    (``redis/dropped/<reason>``) and the next one taken."""

    def __init__(self, crawl: RedisCrawl, spider: Spider, stats: StatsCollector, max_bytes: int):
        super().__init__(crawl.client, spider, crawl.key("requests"), serializer=JsonRequests)
        self.crawl = crawl
        self.stats = stats
        self.max_bytes = max_bytes

    def pop(self, timeout: int = 0) -> Request | None:
        while (data := self.crawl.take()) is not None:
            try:
                return request_from_entry(data, self.spider, self.max_bytes)
            except MalformedRequest as malformed:
                self.crawl.drop(data)
                self.stats.inc_value(f"redis/dropped/{malformed.reason}")
                logger.warning("dropped a queued entry that is no request of this crawl: %s", malformed)
        return None

    def push_new(self, request: Request, fingerprint: str | None) -> bool:
        return self.crawl.queue_new(fingerprint, -request.priority, self._encode_request(request))

    def _encode_request(self, request: Request) -> bytes:
        """scrapy-redis's, as :func:`crawler.shared.queue_entries.entry_from_request` writes it."""
        return entry_from_request(request, self.spider)


class RedisScheduler(Scheduler):
    """scrapy-redis's scheduler on the crawl's own client, queue and filter keys, its requests in
    JSON. ``REDIS_REQUEST_MAX_BYTES``: a queued entry larger than this is dropped unread."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RedisScheduler:
        crawl = redis_extension(crawler).crawl
        scheduler = cls(
            server=crawl.client,
            persist=True,  # the crawl outlives any one worker; the last one cleans up
            queue_key=crawl.key("requests"),
            dupefilter=RFPDupeFilter(crawl.client, crawl.key("seen")),
            serializer=JsonRequests,
        )
        scheduler.stats = crawler.stats
        scheduler.crawl = crawl
        scheduler.max_bytes = crawler.settings.getint("REDIS_REQUEST_MAX_BYTES")
        return scheduler

    def open(self, spider: Spider) -> None:
        """The queue on the crawl's keys (scrapy-redis's own ``open`` also logs through the
        deprecated ``Spider.log``)."""
        self.spider = spider
        self.queue = HeldQueue(self.crawl, spider, self.stats, self.max_bytes)

    def enqueue_request(self, request: Request) -> bool:
        """As scrapy-redis's, with the seen check and the push in one step
        (:meth:`RedisCrawl.queue_new`)."""
        fingerprint = None if request.dont_filter else self.df.request_fingerprint(request)
        if not self.queue.push_new(request, fingerprint):
            self.df.log(request, self.spider)
            return False
        self.stats.inc_value("scheduler/enqueued/redis")
        return True
