"""The one spider: discovers and fetches the articles of every outlet in the registry.

Discovery, per outlet: sitemaps (indexes and Google News sitemaps included, through Scrapy's
SitemapSpider), RSS/Atom feeds, and listing pages with bounded pagination. A page is an article
when its URL matches one of the outlet's article patterns; what it holds is the pipelines' call.
Each link is judged by :func:`crawler.spiders.links.judge_link` (``newsarchive try`` shows those
verdicts) and counted per outlet under ``discovery/<id>/``, with the discovery pages read and
those that could not be: the summary of an outlet that found nothing says why from them.

Discovery pages are read every run, conditionally: the last sealed run's manifest keeps each
one's ETag and Last-Modified (and when each sitemap was read), so a page that has not changed
answers 304 and a child sitemap whose ``<lastmod>`` is older than our last read is not
requested. The manifest keeps them only when that run left nothing undone (no page failed, no
5xx, 429 or network error, no error logged, the crawl ran to its end): then every link such a
page gave was archived, known or judged, and skipping it loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import (
    CannotResolveHostError,
    DontCloseSpider,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
)
from scrapy.http import Response
from scrapy.selector import Selector
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.spiders import SitemapSpider
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet import defer
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseNeverReceived

from crawler.capture import CAPTURE_META, JUDGED_META, WarcExtension, meta_says_noarchive
from crawler.extensions import archive_extension
from crawler.middlewares import Confined, KnownArticles
from crawler.registry import MAX_SITEMAP_URLS, Outlet, Registry, host_in_domains, load_registry
from crawler.report import pages_found
from crawler.shared.extension import RedisCrawlExtension
from crawler.spiders.frontier import Frontier
from crawler.spiders.links import NO_PATTERN, LinkVerdict, judge_link
from pipelines.archive.index import ArchiveIndex
from pipelines.archive.keys import new_crawl_id
from pipelines.archive.warc import Exchange
from pipelines.article import Article
from pipelines.stages.charset import header_charset

_UNDONE = ("extract/failed/", "downloader/exception_type_count/")  # stats: work left for the next run
SITEMAP_MAX_BYTES = 50 * 1024 * 1024  # the sitemap protocol's limit: a larger one (uncompressed) is not read


class OutletsSpider(SitemapSpider):
    name = "outlets"

    def __init__(self, registry: Registry, crawl_id: str, *args: Any, **kwargs: Any):
        self.registry = registry
        self.crawl_id = crawl_id
        self.allowed_domains = sorted({d for o in registry.values() for d in o.allowed_domains})
        self.sitemap_rules = [(p, "parse_article") for o in registry.values() for p in o.article_patterns]
        self.previous: dict[str, dict] = {}  # discovery pages as the last sealed run read them
        self.read: dict[str, dict] = {}  # ... and as this run read them
        self.ran_to_the_end = False
        self.listing_pages: dict[str, set[str]] = {}  # start listing -> listing pages requested from it
        self.article_links: dict[str, int] = {}  # outlet id -> new article links taken this run
        self.index: ArchiveIndex | None = None  # what the archive holds (known links cost nothing)
        self.known: KnownArticles | None = None
        self.frontier = Frontier()  # sitemaps' article URLs not yet handed to the scheduler
        self._sitemap_limit = MAX_SITEMAP_URLS
        self._sitemap_page: tuple[Outlet | None, str] = (None, "")  # the sitemap sitemap_filter reads
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
        spider = super().from_crawler(crawler, registry, crawl_id, *args, **kwargs)
        crawler.signals.connect(spider._idle, signal=signals.spider_idle)
        crawler.signals.connect(spider._feed, signal=signals.scheduler_empty)
        crawler.signals.connect(spider._redirect_scheduled, signal=signals.request_scheduled)
        crawler.signals.connect(spider._redirect_dropped, signal=signals.request_dropped)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        archive = await archive_extension(self.crawler).opened()
        self.previous, self.index = archive.discovery, archive.index
        self.known = KnownArticles(self.crawler, archive.index)
        shared = self.crawler.get_extension(RedisCrawlExtension) if self.settings.get("REDIS_URL") else None
        if shared is not None and not shared.seeding:
            return  # another worker of the crawl queues the start points
        for request in self.start_points():
            yield request
        if shared is not None:
            shared.crawl.seeded()

    def start_points(self) -> list[Request]:
        """Every outlet's sitemaps, feeds and listings, asked conditionally."""
        requests = []
        for outlet in self.registry.values():
            for url in outlet.sitemaps:
                requests.append(self._discovery(url, self._parse_sitemap, download_maxsize=SITEMAP_MAX_BYTES))
            for url in outlet.feeds:
                requests.append(self._discovery(url, self.parse_feed, outlet_id=outlet.id))
            for url in outlet.listings:
                self.listing_pages[url] = {url}
                requests.append(self._discovery(url, self.parse_listing, outlet_id=outlet.id, start=url))
        return requests

    def discovery_state(self) -> dict[str, dict] | None:
        """What the next run may ask conditionally; None when this run left work undone."""
        stats = self.crawler.stats.get_stats()
        undone = stats.get("log_count/ERROR") or any(
            (key.startswith(_UNDONE) and not key.endswith(".IgnoreRequest"))  # robots.txt, offsite
            or key.endswith(("/links_over_budget", "/links_cut"))
            or key == "discovery/sitemap_cut"
            or (key.startswith("refused/") and not _permanent(key.removeprefix("refused/")))
            or (
                key.startswith("httperror/response_ignored_status_count/")
                and not _permanent(f"http_{key.rsplit('/', 1)[-1]}")
            )
            for key in stats
        )
        if undone or not self.ran_to_the_end or self.settings.get("REDIS_URL"):
            return None  # (a worker of a shared crawl read only some of the discovery pages)
        return self.previous | self.read

    def _discovery(
        self, url: str, callback: Any, download_maxsize: int | None = None, **cb_kwargs: Any
    ) -> Request:
        """A request for a discovery page, conditional on what the last run read of it (not when
        known articles are to be fetched again: they are found through these pages)."""
        refetching = self.settings.get("REFETCH_AFTER_DAYS") is not None
        last = {} if refetching else self.previous.get(url, {})
        headers = {}
        if last.get("etag"):
            headers["If-None-Match"] = last["etag"]
        if last.get("last_modified"):
            headers["If-Modified-Since"] = last["last_modified"]
        meta: dict[str, Any] = {"handle_httpstatus_list": [304], JUDGED_META: callback == self.parse_listing}
        if download_maxsize:
            meta["download_maxsize"] = download_maxsize
        return Request(
            url, callback, headers=headers, cb_kwargs=cb_kwargs, meta=meta, errback=self.discovery_failed
        )

    def discovery_failed(self, failure: Failure) -> None:
        """A sitemap, feed or listing page that could not be read: counted for its outlets
        (``discovery/<id>/unreachable/<reason>``, the first one kept in ``.../first_unreachable``),
        so that the summary of an outlet that found nothing says why; then raised again, so Scrapy
        logs and counts it as it does without an errback (an HTTP error, a network error)."""
        request = failure.request
        reason = refusal_reason(failure.value)
        for outlet in self._owners(request.url):
            stats = self.crawler.stats
            stats.inc_value(f"discovery/{outlet.id}/unreachable/{reason}")
            if stats.get_value(f"discovery/{outlet.id}/first_unreachable") is None:
                stats.set_value(
                    f"discovery/{outlet.id}/first_unreachable",
                    {"kind": self.discovery_kind(request), "url": request.url, "reason": reason},
                )
        raise failure.value

    def discovery_kind(self, request: Request) -> str:
        """``sitemap``, ``feed`` or ``listing``: what a discovery request asks for (its callback
        says it; a request from the shared queue keeps only its callback)."""
        return {"_parse_sitemap": "sitemap", "parse_feed": "feed", "parse_listing": "listing"}.get(
            getattr(request.callback, "__name__", ""), "discovery page"
        )

    def _owners(self, url: str) -> list[Outlet]:
        return [outlet for outlet in self.registry.values() if outlet.owns(url)]

    def _read(self, outlet: Outlet, response: Response) -> None:
        """A discovery page of ``outlet`` read (``discovery/<id>/pages/<kind>``)."""
        self.crawler.stats.inc_value(f"discovery/{outlet.id}/pages/{self.discovery_kind(response.request)}")

    def _judge(self, outlet: Outlet, page: str, url: str) -> LinkVerdict:
        """The verdict on a link of ``outlet``'s discovery page ``page``, counted by kind
        (``discovery/<id>/links/<kind>``). Of the links on its domains that matched no pattern,
        the longest is kept in ``.../unmatched_example``: the likeliest to be an article (the
        site's home and sections are short)."""
        verdict = judge_link(outlet, url)
        stats = self.crawler.stats
        stats.inc_value(f"discovery/{outlet.id}/links/{verdict.kind}")
        example = f"discovery/{outlet.id}/unmatched_example"
        if verdict.kind == NO_PATTERN and len(url) > len(stats.get_value(example, "")):
            stats.set_value(example, url)
        return verdict

    def _unchanged(self, response: Response) -> bool:
        """True for a 304; otherwise remembers the page's validators for the next run."""
        if response.status == 304:
            self.crawler.stats.inc_value("discovery/not_modified")
            for outlet in self._owners(response.url):
                self._count(outlet, "not_modified")
            return True
        self.read[response.url] = {
            "etag": response.headers.get("ETag", b"").decode("latin-1") or None,
            "last_modified": response.headers.get("Last-Modified", b"").decode("latin-1") or None,
            "read_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return False

    def _parse_sitemap(self, response: Response) -> Iterable[Request]:
        """A sitemap index's children are requested; a sitemap's new article URLs go to the
        frontier, which hands them to the scheduler as it empties (:meth:`_feed`)."""
        if self._unchanged(response):
            return
        shared_queue = bool(self.settings.get("REDIS_URL"))  # in Redis: the queue costs the crawl nothing
        owner = next(iter(self._owners(response.url)), None)
        if owner is not None:
            self._read(owner, response)
        # read by sitemap_filter
        self._sitemap_limit = owner.max_sitemap_urls if owner else MAX_SITEMAP_URLS
        self._sitemap_page = (owner, response.url)
        for request in super()._parse_sitemap(response):
            if request.callback != self.parse_article:
                meta = {**request.meta, "download_maxsize": SITEMAP_MAX_BYTES}
                yield request.replace(meta=meta, errback=self.discovery_failed)
            elif shared_queue:
                yield request.replace(errback=self.article_failed, meta={**request.meta, JUDGED_META: True})
            elif self.known is None or self.known.wanted(request.url):
                outlet = self.registry.outlet_for_article(request.url)
                self.frontier.add(outlet.id if outlet else "", request.url)
        self._feed()

    def _feed(self) -> None:
        """Tops the scheduler up from the frontier to :meth:`_window` requests."""
        if not self.frontier:
            return
        stats = self.crawler.stats
        queued = stats.get_value("scheduler/enqueued", 0) - stats.get_value("scheduler/dequeued", 0)
        for url in self.frontier.take(self._window() - queued):
            self.crawler.engine.crawl(self._article_request(url))
        stats.max_value("discovery/frontier_max", len(self.frontier))

    def _window(self) -> int:
        """Requests the scheduler holds from the frontier: enough to keep every download slot
        busy between two top-ups."""
        return 4 * self.settings.getint("CONCURRENT_REQUESTS")

    def article_failed(self, failure: Failure) -> None:
        """An article page that could not be fetched: counted by reason, logged once at INFO."""
        self._refused(failure.request, refusal_reason(failure.value))

    def _redirect_scheduled(self, request: Request) -> None:
        """An article redirected off the allowed domains: Scrapy's offsite filter drops it as it
        is scheduled, and tells no errback."""
        if (
            request.callback == self.parse_article
            and request.meta.get("redirect_urls")
            and not host_in_domains(urlparse_cached(request).hostname, self.allowed_domains)
        ):
            self._refused(request, "offsite")

    def _redirect_dropped(self, request: Request) -> None:
        """An article redirected to a URL of its own redirect chain: the duplicate filter drops
        it, and tells no errback (a redirect to another page already asked for loses nothing)."""
        if request.callback == self.parse_article and request.url in request.meta.get("redirect_urls", ()):
            self._refused(request, "redirect_loop")

    def _refused(self, request: Request, reason: str) -> None:
        """An article page not fetched, counted by reason and remembered: ``refused`` when the
        next run would meet the same (:func:`_permanent`: robots.txt, a 404, too large...),
        else ``failed`` (a 5xx, a timeout, DNS: fetched again next run)."""
        self.crawler.stats.inc_value(f"refused/{reason}")
        url = next(iter(request.meta.get("redirect_urls", ())), request.url)  # as linked
        outlet = self.registry.outlet_for_article(url)
        if outlet is not None:
            self._count(outlet, f"refused/{reason}")
        self.logger.info("article page not fetched (%s): %s", reason, url)
        self._remember(url, "refused" if _permanent(reason) else "failed")

    def _remember(self, url: str, outcome: str) -> None:
        """An article link that archived no row, remembered in the index (not by ``try``, which
        opens no archive)."""
        if self.index is not None:
            archive_extension(self.crawler).note_visit(url, None, outcome)

    def sitemap_filter(self, entries: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        """Bounded: at most ``max_sitemap_urls`` entries of a sitemap (its outlet's, set by
        :meth:`_parse_sitemap`, which calls this), and each outlet's ``max_article_links``. A
        sitemap index's children whose ``<lastmod>`` is older than our last read of them are not
        requested (their links were all handled then), unless known articles are to be fetched
        again."""
        urlset = getattr(entries, "type", "") == "urlset"
        skip_unchanged = self.settings.get("REFETCH_AFTER_DAYS") is None
        for n, entry in enumerate(entries):
            if n >= self._sitemap_limit:
                self.crawler.stats.inc_value("discovery/sitemap_cut")
                self.logger.warning("a sitemap lists over %d URLs; the rest is not read", self._sitemap_limit)
                return
            loc = entry.get("loc", "")
            if (
                not urlset
                and skip_unchanged
                and _older(entry.get("lastmod"), self.previous.get(loc, {}).get("read_at"))
            ):
                self.crawler.stats.inc_value("discovery/sitemap_unchanged")
                continue
            owner, page = self._sitemap_page
            if urlset and owner is not None:
                self._judge(owner, page, loc)
            outlet = self.registry.outlet_for_article(loc) if urlset else None
            if outlet is not None and not self._take_link(outlet, loc):
                continue
            yield entry

    def _idle(self) -> None:
        if self.frontier:
            self._feed()
            raise DontCloseSpider("article URLs wait in the frontier")
        if not self.settings.get("REDIS_URL"):  # a shared crawl ends when all its workers are idle
            self.ran_to_the_end = True  # the queue ran dry: not stopped by a signal or a limit

    def parse_feed(self, response: Response, outlet_id: str) -> Iterable[Request]:
        """RSS 2.0 ``<item><link>`` and Atom ``<entry><link href>``."""
        if self._unchanged(response):
            return
        outlet = self.registry[outlet_id]
        self._read(outlet, response)
        selector = Selector(text=response.text, type="xml")
        selector.remove_namespaces()
        links = self._links(
            outlet,
            response,
            selector,
            "//item/link/text() | //entry/link[not(@rel) or @rel='alternate']/@href",
        )
        self._count(outlet, "feeds")
        urls = _absolute(response, (link.strip() for link in links))
        yield from self._article_requests(outlet, response.url, urls)

    def parse_listing(self, response: Response, outlet_id: str, start: str) -> Iterable[Request]:
        """A listing's articles, and its next pages: ``max_listing_pages`` from each start
        listing in all (however many next-page links each page has), not a depth."""
        if self._unchanged(response):
            return
        held = response.meta.get(CAPTURE_META)
        if isinstance(held, Exchange):  # its WARC record, kept unless the page says noarchive
            metas = [
                (m.attrib.get("name", ""), m.attrib.get("content", ""))
                for m in response.xpath("//meta[@name]")
            ]
            self.crawler.get_extension(WarcExtension).release(held, keep=not meta_says_noarchive(metas))
        outlet = self.registry[outlet_id]
        self._count(outlet, "listing_pages")
        self._read(outlet, response)
        links = _absolute(response, self._links(outlet, response, response.selector, "//a/@href"))
        yield from self._article_requests(outlet, response.url, links)
        if outlet.listing_pattern is None:
            return
        requested = self.listing_pages.setdefault(start, {start})  # (a start another worker queued)
        for url in links:
            if len(requested) >= outlet.max_listing_pages:
                self.crawler.stats.inc_value("discovery/listing_pages_bounded")
                return
            if outlet.listing_pattern.search(url) and url not in requested:
                requested.add(url)
                yield Request(
                    url,
                    self.parse_listing,
                    cb_kwargs={"outlet_id": outlet.id, "start": start},
                    meta={JUDGED_META: True},
                    errback=self.discovery_failed,
                )

    def parse_article(self, response: Response) -> Iterable[Article]:
        outlet = self._outlet_of(response)
        if outlet is None:
            self.crawler.stats.inc_value("discovery/redirected_off_pattern")
            self.logger.info("redirected away from the article patterns: %s", response.url)
            self._remember(next(iter(response.meta.get("redirect_urls", [])), response.url), "not_article")
            return
        self._count(outlet, "article_pages")
        now = time.time()
        self.crawler.stats.min_value(f"outlet/{outlet.id}/first_page_at", now)
        self.crawler.stats.max_value(f"outlet/{outlet.id}/last_page_at", now)
        content_type = response.headers.get("Content-Type", b"").decode("latin-1")
        capture = response.meta.get(CAPTURE_META)
        warc_file, warc_offset, warc_length = capture if isinstance(capture, tuple) else (None, None, None)
        article = Article(
            url=response.url,
            outlet_id=outlet.id,
            outlet_name=outlet.name,
            region=outlet.region,
            outlet_timezone=outlet.timezone,
            body=response.body,
            http_status=response.status,
            content_type=content_type,
            header_charset=header_charset(content_type),
            fetched_at=datetime.now(UTC),
            crawl_id=self.crawl_id,
            drop_selectors=outlet.extraction.drop,
            body_selector=outlet.extraction.body,
            redirected_from=next(iter(response.meta.get("redirect_urls", [])), None),
            robots_headers=tuple(v.decode("latin-1") for v in response.headers.getlist("X-Robots-Tag")),
            warc_file=warc_file,
            warc_offset=warc_offset,
            warc_length=warc_length,
        )
        if isinstance(capture, Exchange):  # written once extraction has judged the page
            self.crawler.get_extension(WarcExtension).hold(article, capture)
        yield article

    def _links(self, outlet: Outlet, response: Response, selector: Selector, xpath: str) -> list[str]:
        """The first ``max_links_per_page`` links of a listing page or feed, in document order:
        the rest never become Python strings or requests (a page of 200,000 links took 1 s and
        100 MB of the reactor thread for them)."""
        limit = outlet.max_links_per_page
        links = selector.xpath(f"({xpath})[position() <= {limit + 1}]").getall()
        if len(links) > limit:
            self._count(outlet, "links_cut")
            self.logger.warning(
                "%s: a page of over %d links, the rest not read: %s", outlet.id, limit, response.url
            )
            del links[limit:]
        return links

    def _article_requests(self, outlet: Outlet, page: str, urls: Iterable[str]) -> Iterable[Request]:
        """Requests for the absolute ``urls`` of discovery page ``page`` that are this outlet's
        articles; each link judged and counted."""
        for url in urls:
            if self._judge(outlet, page, url).is_article and self._take_link(outlet, url):
                yield self._article_request(url)

    def _article_request(self, url: str) -> Request:
        """An article page's request: its WARC record waits for extraction's verdict on it."""
        return Request(url, self.parse_article, errback=self.article_failed, meta={JUDGED_META: True})

    def _take_link(self, outlet: Outlet, url: str) -> bool:
        """Counts a new article link against the outlet's ``max_article_links`` for this run
        (a known one is free: KnownArticles drops it, or fetches it again to refresh what the
        archive holds; so is one fetched lately that archived no row), False past the budget."""
        if self.index is not None and (self.index.known_url(url) is not None or self.known.held_back(url)):
            return True
        taken = self.article_links.get(outlet.id, 0)
        self.article_links[outlet.id] = taken + 1
        if taken < outlet.max_article_links:
            return True
        if taken == outlet.max_article_links:
            self.logger.warning(
                "%s: over %d article links this run; the rest wait for the next", outlet.id, taken
            )
        self._count(outlet, "links_over_budget")
        return False

    def _outlet_of(self, response: Response) -> Outlet | None:
        for url in [response.url, *response.meta.get("redirect_urls", [])]:
            outlet = self.registry.outlet_for_article(url)
            if outlet is not None:
                return outlet
        return None

    def _count(self, outlet: Outlet, what: str) -> None:
        self.crawler.stats.inc_value(f"outlet/{outlet.id}/{what}")

    def pages_found_by_outlet(self) -> dict[str, int]:
        """:func:`pages_found` of each outlet, in this process so far."""
        stats = self.crawler.stats.get_stats()
        return {outlet_id: pages_found(stats, outlet_id) for outlet_id in self.registry}


def _absolute(response: Response, hrefs: Iterable[str]) -> list[str]:
    """The links as absolute URLs; one that is no URL at all (``http://[x``, which urljoin
    refuses) is left out, as a browser leaves it."""
    urls = []
    for href in hrefs:
        try:
            urls.append(response.urljoin(href))
        except ValueError:
            continue
    return urls


def refusal_reason(error: BaseException) -> str:
    """Why a page was not fetched, in a word for the stats: ``http_404``, ``timeout``,
    ``too_large``, ``decompression_bomb``, ``redirect_loop``, ``offsite``, ``scheme`` (not
    http(s)), ``internal_address``, ``dns``, ``connection``, ``robots``, or the exception's name."""
    if isinstance(error, HttpError):
        return f"http_{error.response.status}"
    if isinstance(error, Confined):
        return error.reason
    message = str(error).lower()
    for words, reason in (
        (("max redirections",), "redirect_loop"),
        (("decompress",), "decompression_bomb"),
        (("download max size", "maxsize", "larger than"), "too_large"),
        (("offsite",), "offsite"),
        (("robots.txt",), "robots"),
    ):
        if any(word in message for word in words):
            return reason
    # Scrapy's HTTP handler says Twisted's errors as its own (scrapy/utils/_download_handlers.py)
    if isinstance(error, (TimeoutError, TwistedTimeoutError, defer.TimeoutError, DownloadTimeoutError)):
        return "timeout"
    if isinstance(error, (DNSLookupError, CannotResolveHostError)):
        return "dns"
    if isinstance(
        error,
        (
            ConnectionRefusedError,
            ConnectionLost,
            ConnectError,
            ResponseNeverReceived,
            DownloadConnectionRefusedError,
            DownloadFailedError,
        ),
    ):
        return "connection"
    return type(error).__name__


def _permanent(reason: str) -> bool:
    """A refusal the next run would meet again (a 404, robots.txt, a bomb), as opposed to one it
    may not (a 5xx, a timeout): only after those may a discovery page be skipped as unchanged."""
    if reason.startswith("http_"):
        status = int(reason.removeprefix("http_"))
        return 400 <= status < 500 and status not in (408, 429)
    return reason in (
        "robots",
        "offsite",
        "scheme",
        "internal_address",
        "redirect_loop",
        "too_large",
        "decompression_bomb",
    )


def _older(lastmod: str | None, read_at: str | None) -> bool:
    """``lastmod`` (W3C datetime, a date or a time) is before ``read_at``; False if unknown."""
    if not lastmod or not read_at:
        return False
    try:
        modified = datetime.fromisoformat(lastmod.strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    if modified.tzinfo is None:  # a bare date: the whole day, in the worst zone
        modified = modified.replace(tzinfo=UTC) + timedelta(days=1, hours=14)
    return modified < datetime.fromisoformat(read_at)
