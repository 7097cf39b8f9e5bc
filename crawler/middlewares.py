"""Fetching policy middlewares."""

from __future__ import annotations

from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.useragent import UserAgentMiddleware


class ContactUserAgentMiddleware(UserAgentMiddleware):
    """Scrapy's User-Agent middleware, with ``{contact_url}`` in ``USER_AGENT`` filled from
    the ``CONTACT_URL`` setting, so operators change one setting to say who they are."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ContactUserAgentMiddleware:
        settings = crawler.settings
        return cls(settings["USER_AGENT"].format(contact_url=settings["CONTACT_URL"]))
