"""The one spider: discovers and fetches the articles of every outlet in the registry.

Discovery, per outlet: sitemaps (indexes and Google News sitemaps included, through Scrapy's
SitemapSpider), RSS/Atom feeds, and listing pages with bounded pagination. A page is an article
when its URL matches one of the outlet's article patterns; what it holds is the pipelines' call.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.selector import Selector
from scrapy.spiders import SitemapSpider

from crawler.items import Article
from crawler.registry import Outlet, Registry, load_registry


def new_crawl_id(now: datetime | None = None) -> str:
    """Sortable and unique per run: ``20261123T041500Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class OutletsSpider(SitemapSpider):
    name = "outlets"

    def __init__(self, registry: Registry, crawl_id: str, *args: Any, **kwargs: Any):
        self.registry = registry
        self.crawl_id = crawl_id
        self.allowed_domains = sorted({d for o in registry.values() for d in o.allowed_domains})
        self.sitemap_rules = [(p, "parse_article") for o in registry.values() for p in o.article_patterns]
        super().__init__(*args, **kwargs)

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, outlet: str = "", **kwargs: Any) -> OutletsSpider:
        """``-a outlet=ID[,ID]`` or ``NEWSARCHIVE_OUTLETS`` restricts the crawl to those outlets."""
        settings = crawler.settings
        registry = load_registry(settings.getlist("NEWSARCHIVE_OUTLETS_FILES"))
        selected = [i for i in outlet.split(",") if i] or settings.getlist("NEWSARCHIVE_OUTLETS")
        if selected:
            registry = registry.select(selected)
        crawl_id = settings.get("NEWSARCHIVE_CRAWL_ID") or new_crawl_id()
        return super().from_crawler(crawler, registry, crawl_id, *args, **kwargs)

    async def start(self) -> AsyncIterator[Any]:
        for outlet in self.registry.values():
            for url in outlet.sitemaps:
                yield Request(url, self._parse_sitemap)
            for url in outlet.feeds:
                yield Request(url, self.parse_feed, cb_kwargs={"outlet_id": outlet.id})
            for url in outlet.listings:
                yield Request(url, self.parse_listing, cb_kwargs={"outlet_id": outlet.id, "page": 1})

    def parse_feed(self, response: Response, outlet_id: str) -> Iterable[Request]:
        """RSS 2.0 ``<item><link>`` and Atom ``<entry><link href>``."""
        outlet = self.registry[outlet_id]
        selector = Selector(text=response.text, type="xml")
        selector.remove_namespaces()
        links = selector.xpath("//item/link/text() | //entry/link[not(@rel) or @rel='alternate']/@href")
        self._count(outlet, "feeds")
        yield from self._article_requests(outlet, (response.urljoin(link.strip()) for link in links.getall()))

    def parse_listing(self, response: Response, outlet_id: str, page: int) -> Iterable[Request]:
        outlet = self.registry[outlet_id]
        self._count(outlet, "listing_pages")
        links = [response.urljoin(href) for href in response.css("a::attr(href)").getall()]
        yield from self._article_requests(outlet, links)
        if outlet.listing_pattern is None or page >= outlet.max_listing_pages:
            return
        for url in links:
            if outlet.listing_pattern.search(url):
                yield Request(url, self.parse_listing, cb_kwargs={"outlet_id": outlet.id, "page": page + 1})

    def parse_article(self, response: Response) -> Iterable[Article]:
        outlet = self._outlet_of(response)
        if outlet is None:
            self.crawler.stats.inc_value("discovery/redirected_off_pattern")
            self.logger.info("redirected away from the article patterns: %s", response.url)
            return
        self._count(outlet, "article_pages")
        content_type = response.headers.get("Content-Type", b"").decode("latin-1")
        yield Article(
            url=response.url,
            outlet_id=outlet.id,
            outlet_name=outlet.name,
            region=outlet.region,
            outlet_timezone=outlet.timezone,
            body=response.body,
            http_status=response.status,
            content_type=content_type,
            header_charset=_header_charset(content_type),
            fetched_at=datetime.now(UTC),
            crawl_id=self.crawl_id,
            drop_selectors=outlet.extraction.drop,
            body_selector=outlet.extraction.body,
            redirected_from=next(iter(response.meta.get("redirect_urls", [])), None),
        )

    def _article_requests(self, outlet: Outlet, urls: Iterable[str]) -> Iterable[Request]:
        """Requests for the absolute ``urls`` that are this outlet's articles."""
        for url in urls:
            if outlet.owns(url) and outlet.is_article(url):
                yield Request(url, self.parse_article)

    def _outlet_of(self, response: Response) -> Outlet | None:
        for url in [response.url, *response.meta.get("redirect_urls", [])]:
            outlet = self.registry.outlet_for_article(url)
            if outlet is not None:
                return outlet
        return None

    def _count(self, outlet: Outlet, what: str) -> None:
        self.crawler.stats.inc_value(f"outlet/{outlet.id}/{what}")


def _header_charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return None
