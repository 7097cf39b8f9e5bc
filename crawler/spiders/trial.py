"""The spider of ``newsarchive try``: the crawl's own discovery of an outlet, with each discovery
page's links and their verdicts kept for the command to show, and its first article pages kept
for the extraction stage. It opens no archive: ``newsarchive try`` runs it with no store, spool,
lock, WARC or item pipeline, so nothing is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from scrapy import Request
from scrapy.http import Response
from twisted.python.failure import Failure

from crawler.registry import Outlet
from crawler.spiders.links import LinkVerdict
from crawler.spiders.outlets import OutletsSpider, refusal_reason
from pipelines.article import Article

LINKS_SHOWN = 5  # links kept of each verdict on each discovery page (all of them are counted)
MAX_DISCOVERY_PAGES = 20  # sitemaps, feeds and listing pages requested in all, start points included
MAX_SPARE_LINKS = 20  # article links past TRY_ARTICLES kept, each fetched in place of one that failed


@dataclass
class TriedPage:
    """One discovery page as the trial read it."""

    url: str
    kind: str  # sitemap, sitemap index, feed or listing
    failure: str | None = None  # why it could not be read (a refusal reason: dns, http_404 ...)
    counts: Counter[str] = field(default_factory=Counter)  # its links, by verdict
    shown: list[LinkVerdict] = field(default_factory=list)  # the first LINKS_SHOWN distinct of each verdict


class TrialSpider(OutletsSpider):
    """``TRY_ARTICLES`` (setting): article pages fetched at most."""

    # named as it is made, not in the class: Scrapy's spider loader lists only classes with a
    # name, and this one is no crawl of its own (`scrapy list` and `scrapy crawl` know "outlets")
    name = ""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, name="try", **kwargs)
        self.pages: dict[str, TriedPage] = {}  # discovery pages, in the order they were read
        self.taken: list[str] = []  # article links fetched, TRY_ARTICLES and those in place of failed ones
        self.spare: list[str] = []  # article links past TRY_ARTICLES, at most MAX_SPARE_LINKS
        self.fetched: list[Article] = []  # the article pages, as the crawl hands them to extraction
        self.not_fetched: list[tuple[str, str]] = []  # article links that failed: (url, reason)
        self.discovery_requests = 0
        self.pages_not_read = 0  # discovery pages past MAX_DISCOVERY_PAGES

    async def start(self) -> AsyncIterator[Any]:
        """The start points, with nothing known: no archive is opened."""
        for request in self._bounded(self.start_points()):
            yield request

    def _bounded(self, requests: Iterable[Request]) -> Iterable[Request]:
        """Discovery requests past :data:`MAX_DISCOVERY_PAGES` are counted, not sent."""
        for request in requests:
            if request.callback != self.parse_article:
                if self.discovery_requests >= MAX_DISCOVERY_PAGES:
                    self.pages_not_read += 1
                    continue
                self.discovery_requests += 1
            yield request

    def _parse_sitemap(self, response: Response) -> Iterable[Request]:
        yield from self._bounded(super()._parse_sitemap(response))

    def parse_listing(self, response: Response, outlet_id: str, start: str) -> Iterable[Request]:
        yield from self._bounded(super().parse_listing(response, outlet_id, start))

    def _read(self, outlet: Outlet, response: Response) -> None:
        super()._read(outlet, response)
        self.pages[response.url] = TriedPage(response.url, self.discovery_kind(response.request))

    def _judge(self, outlet: Outlet, page: str, url: str) -> LinkVerdict:
        verdict = super()._judge(outlet, page, url)
        tried = self.pages[page]
        tried.counts[verdict.kind] += 1
        shown = sum(v.kind == verdict.kind for v in tried.shown)
        if shown < LINKS_SHOWN and verdict not in tried.shown:
            tried.shown.append(verdict)
        return verdict

    def discovery_failed(self, failure: Failure) -> None:
        request = failure.request
        reason = refusal_reason(failure.value)
        self.pages[request.url] = TriedPage(request.url, self.discovery_kind(request), failure=reason)
        super().discovery_failed(failure)

    def sitemap_filter(self, entries: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        """A sitemap index's child sitemaps counted as its links (a sitemap's are judged)."""
        tried = self.pages.get(self._sitemap_page[1])
        index = getattr(entries, "type", "") == "sitemapindex"
        if tried is not None and index:
            tried.kind = "sitemap index"
        for entry in super().sitemap_filter(entries):
            if tried is not None and index:
                tried.counts["sitemap"] += 1
            yield entry

    def _take_link(self, outlet: Outlet, url: str) -> bool:
        if url in self.taken or url in self.spare:
            return False
        if len(self.taken) < self.settings.getint("TRY_ARTICLES"):
            self.taken.append(url)
            return True
        if len(self.spare) < MAX_SPARE_LINKS:
            self.spare.append(url)
        return False

    def _refused(self, request: Request, reason: str) -> None:
        """An article page that failed is shown with its reason; a spare link is fetched instead."""
        super()._refused(request, reason)
        self.not_fetched.append((request.url, reason))
        if self.spare:
            url = self.spare.pop(0)
            self.taken.append(url)
            self.crawler.engine.crawl(self._article_request(url))

    def parse_article(self, response: Response) -> list[Article]:
        """Kept for the command, which runs extraction once the fetching is done."""
        self.fetched.extend(super().parse_article(response))
        return []
