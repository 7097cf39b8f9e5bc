"""The shared crawl's old import path, kept for operators' settings: configurations name
``crawler.redis_crawl.CrawlScheduler`` (``-s SCHEDULER=...``) and
``crawler.redis_crawl.RedisCrawlExtension`` (``EXTENSIONS``). The code lives in :mod:`crawler.shared`.
"""

from crawler.shared.extension import RedisCrawlExtension
from crawler.shared.scheduler import CrawlScheduler

__all__ = ["CrawlScheduler", "RedisCrawlExtension"]
