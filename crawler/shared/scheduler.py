"""The scheduler ``SCHEDULER`` names. Kept apart from the scrapy-redis adapters
(:mod:`crawler.shared.redis_scheduler`, imported on demand) so that a crawl without ``REDIS_URL``
imports no Redis client.
"""

from __future__ import annotations

from scrapy.core.scheduler import Scheduler as ScrapyScheduler
from scrapy.crawler import Crawler


class CrawlScheduler(ScrapyScheduler):
    """What ``SCHEDULER`` names: Scrapy's own scheduler, or with ``REDIS_URL`` the shared one
    (:class:`crawler.shared.redis_scheduler.RedisScheduler`). A factory: Scrapy checks that the
    class it names is a scheduler, hence the base class; the instance is one of the two."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ScrapyScheduler:
        if not crawler.settings.get("REDIS_URL"):
            return ScrapyScheduler.from_crawler(crawler)
        from crawler.shared.redis_scheduler import RedisScheduler  # (only for a shared crawl)

        return RedisScheduler.from_crawler(crawler)
