"""Fetching policy middlewares."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.useragent import UserAgentMiddleware
from scrapy.http import Response

from crawler.extensions import ArchiveExtension, archive_extension
from pipelines.index import ArchiveIndex

logger = logging.getLogger(__name__)


class ContactUserAgentMiddleware(UserAgentMiddleware):
    """Scrapy's User-Agent middleware, with ``{contact_url}`` in ``USER_AGENT`` filled from
    the ``CONTACT_URL`` setting, so operators change one setting to say who they are."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ContactUserAgentMiddleware:
        settings = crawler.settings
        return cls(settings["USER_AGENT"].format(contact_url=settings["CONTACT_URL"]))


class KnownArticles:
    """Which article URLs to fetch, given what the archive holds; counts what it turns away.

    The archive's index (:mod:`pipelines.index`, read once when the crawl opens) knows every URL
    that led to an archived row, so a run on a machine with no state of its own fetches only
    what is new. ``REFETCH_AFTER_DAYS`` (None: never; 0: every run) lets through the known
    articles last fetched longer ago than that: dedup then archives a changed text as a new
    version and notes an unchanged one. Counts ``discovery/known``, ``discovery/refetch`` and
    ``outlet/<id>/known``. Used by :class:`KnownArticlesMiddleware` and by the spider's frontier.
    """

    def __init__(self, crawler: Crawler, index: ArchiveIndex):
        self.crawler = crawler
        self.stats = crawler.stats
        self.index = index
        days = crawler.settings.get("REFETCH_AFTER_DAYS")
        self.refetch_after = None if days is None else timedelta(days=float(days))

    def wanted(self, url: str) -> bool:
        held = self.index.known_url(url)
        if held is None:
            return True
        if not self._due(held.last_fetched):
            self._count(url, "known")
            return False
        self.stats.inc_value("discovery/refetch")
        return True

    def _due(self, last_fetched: datetime | None) -> bool:
        if self.refetch_after is None:
            return False
        return last_fetched is None or datetime.now(UTC) - last_fetched > self.refetch_after

    def _count(self, url: str, what: str) -> None:
        self.stats.inc_value(f"discovery/{what}")
        outlet = self.crawler.spider.registry.outlet_for_article(url)
        if outlet is not None:
            self.stats.inc_value(f"outlet/{outlet.id}/{what}")


class KnownArticlesMiddleware:
    """Drops requests for pages whose article the archive holds (:class:`KnownArticles`), before
    they are scheduled. Sitemaps, feeds and listing pages are never in the index."""

    def __init__(self, crawler: Crawler, archive: ArchiveExtension):
        self.crawler = crawler
        self.archive = archive
        self._known: KnownArticles | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> KnownArticlesMiddleware:
        return cls(crawler, archive_extension(crawler))

    async def process_spider_output(
        self, response: Response, result: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        if self._known is None:
            self._known = KnownArticles(self.crawler, (await self.archive.opened()).index)
        async for output in result:
            if isinstance(output, Request) and not self._known.wanted(output.url):
                continue
            yield output


class RetryAfterMiddleware:
    """Honours ``Retry-After`` on 429 and 503: the site's downloader slot waits that long (capped
    at ``RETRY_AFTER_MAX``) between requests for the rest of the crawl, before Scrapy's
    RetryMiddleware sends the retry. Counts ``retry_after/honoured`` and ``retry_after/capped``,
    and keeps the longest wait asked for in ``retry_after/max_seconds``; logs once per site."""

    def __init__(self, crawler: Crawler, cap: float):
        self.crawler = crawler
        self.stats = crawler.stats
        self.cap = cap
        self._told: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RetryAfterMiddleware:
        return cls(crawler, crawler.settings.getfloat("RETRY_AFTER_MAX"))

    def process_response(self, request: Request, response: Response) -> Response:
        if response.status not in (429, 503):
            return response
        seconds = _retry_after(response.headers.get("Retry-After", b"").decode("latin-1"))
        if seconds is None:
            return response
        if seconds > self.cap:
            self.stats.inc_value("retry_after/capped")
            seconds = self.cap
        downloader = self.crawler.engine.downloader
        key = downloader.get_slot_key(request)
        slot = downloader.slots.get(key)
        if slot is not None and slot.delay < seconds:
            slot.delay = seconds
        self.stats.inc_value("retry_after/honoured")
        self.stats.max_value("retry_after/max_seconds", seconds)
        if key not in self._told:
            self._told.add(key)
            logger.info(
                "%s asks us to wait (%s, Retry-After): %g s between its requests",
                key,
                response.status,
                seconds,
            )
        return response


def _retry_after(value: str) -> float | None:
    """Seconds from a Retry-After value: a number of seconds or an HTTP date; None if neither."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when.tzinfo else None
