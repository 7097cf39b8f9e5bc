"""The crawl's WARC capture: Scrapy adapters over :mod:`pipelines.archive.warc`.

:class:`WarcCaptureMiddleware` sits next to the downloader, so it sees every response as
received: before decompression (``HttpCompressionMiddleware``), before redirects and retries
act on it, robots.txt and sitemaps included. It hands each exchange to
:class:`WarcExtension`, which writes it in a thread of its own, and waits for the record's
place, which it leaves in ``request.meta["warc_capture"]`` for the spider to put on the item.
Responses served from Scrapy's HTTP cache were captured when they were received; they are not
written again.

What a page asks is honoured in the WARC as in the rows (``ROBOTS_NOARCHIVE_OBEY``): a response
whose X-Robots-Tag says ``noarchive`` (or ``none``) is not written; an article page's record
waits for extraction's verdict, which reads its robots meta tags, and is written only if the
page does not say ``noarchive`` (:meth:`WarcExtension.hold`, :meth:`WarcExtension.keep`); a
listing page's waits for the spider's reading of its meta tags (:meth:`WarcExtension.release`). No
record keeps a credential: the request headers ``Authorization``, ``Proxy-Authorization`` and
``Cookie`` are left out, and so is ``Set-Cookie`` of the responses, whose values the cookie jar
sends back as ``Cookie`` (a session a site gave the crawl, perhaps a login of the operator's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response

from crawler.extensions import ArchiveExtension, archive_extension
from pipelines.archive.warc import Capture, Exchange, WarcFile, WarcWriter
from pipelines.article import Article

CAPTURE_META = "warc_capture"  # (file, offset, length) of the response record, or the Exchange held
JUDGED_META = "warc_judged"  # on article and listing requests: the record waits for the page's verdict
# headers no record keeps (lower case): credentials, and the cookies that become them
UNKEPT_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "set-cookie2"})


class WarcExtension:
    """One crawl's WARC files, written in the spool folder of the crawl's archive.

    Settings: ``WARC_ENABLED`` (``crawl --no-warc`` turns it off), ``WARC_MAX_BYTES`` (a file
    rotates past this size; 1 GB, as Heritrix), ``ROBOTS_NOARCHIVE_OBEY``, ``WARC_HEADERS_REMOVED``
    (header names no record keeps, beside :data:`UNKEPT_HEADERS`: the operator's own credentials,
    such as an ``X-Api-Key`` set in ``DEFAULT_REQUEST_HEADERS``). A full file is
    published at once, and so is the last one when the crawl closes, before its manifest lists
    them all. Counts ``warc/records`` (exchanges), ``warc/files`` and ``warc/noarchive`` (exchanges
    not written: the page says noarchive, or was never judged).
    """

    def __init__(
        self,
        crawler: Crawler,
        max_bytes: int,
        obey_noarchive: bool = True,
        unkept_headers: frozenset[str] = UNKEPT_HEADERS,
    ):
        self.crawler = crawler
        self.stats = crawler.stats
        self.max_bytes = max_bytes
        self.obey_noarchive = obey_noarchive
        self.unkept_headers = unkept_headers  # lower case
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="warc")
        self._writer: WarcWriter | None = None
        self._held: dict[tuple[str, datetime], Exchange] = {}  # article pages awaiting their verdict
        self._writes: set[asyncio.Future[Capture]] = set()  # of records released (dropped articles, listings)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> WarcExtension:
        settings = crawler.settings
        if not settings.getbool("WARC_ENABLED"):
            raise NotConfigured
        warc = cls(
            crawler,
            settings.getint("WARC_MAX_BYTES"),
            settings.getbool("ROBOTS_NOARCHIVE_OBEY"),
            UNKEPT_HEADERS | {name.strip().lower() for name in settings.getlist("WARC_HEADERS_REMOVED")},
        )
        crawler.signals.connect(warc._item_dropped, signal=signals.item_dropped)
        crawler.signals.connect(warc._item_error, signal=signals.item_error)
        return warc

    @property
    def archive(self) -> ArchiveExtension:
        return archive_extension(self.crawler)  # built beside this one: asked for when needed

    async def capture(self, exchange: Exchange) -> Capture:
        if self._writer is None:
            archive = await self.archive.opened()
            if self._writer is None:
                self._writer = WarcWriter(
                    archive.crawl.folder, archive.crawl.crawl_id, self.max_bytes, self._info()
                )
        capture, full = await asyncio.get_running_loop().run_in_executor(
            self._thread, self._writer.write, exchange
        )
        self.stats.inc_value("warc/records")
        if full is not None:
            self._publish(full)
        return capture

    def hold(self, item: Article, exchange: Exchange) -> None:
        """Keep an article page's exchange until extraction has judged the page."""
        self._held[(item.url, item.fetched_at)] = exchange

    async def keep(self, item: Article) -> None:
        """The item is archived: its page's held record is written, and the item points at it."""
        exchange = self._held.pop((item.url, item.fetched_at), None)
        if exchange is not None:
            capture = await self.capture(exchange)
            item.warc_file, item.warc_offset, item.warc_length = capture.file, capture.offset, capture.length

    def _item_dropped(self, item: Any) -> None:
        """A dropped article's page is kept too (it was fetched), unless it says noarchive or
        extraction never judged it (it failed: the next run fetches it again)."""
        if not isinstance(item, Article):
            return
        exchange = self._held.pop((item.url, item.fetched_at), None)
        if exchange is None:
            return
        self.release(exchange, keep=item.not_article != "noarchive" and item.extractor is not None)

    def release(self, exchange: Exchange, keep: bool) -> None:
        """A held exchange whose page has been judged: written if ``keep``, else only counted."""
        if not keep:
            self.stats.inc_value("warc/noarchive")
            return
        write = asyncio.ensure_future(self._keep_judged(exchange))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    def _item_error(self, item: Any) -> None:
        if isinstance(item, Article) and self._held.pop((item.url, item.fetched_at), None) is not None:
            self.stats.inc_value("warc/noarchive")

    async def close(self) -> None:
        """Finish the file being written and queue it for publication, with the count of records
        its writer kept (left to the spool's publication, it would be read back whole to count
        them: 0.5 ms a page at the crawl's end)."""
        await asyncio.gather(*self._writes)
        try:
            if self._writer is not None:
                last = await asyncio.get_running_loop().run_in_executor(self._thread, self._writer.finish)
                if last is not None:
                    self._publish(last)
        finally:
            self._thread.shutdown()

    async def _keep_judged(self, exchange: Exchange) -> Capture:
        """A judged page's record, kept: the archive seals the crawl for it (a run of no row too)."""
        (await self.archive.opened()).keep_capture()
        return await self.capture(exchange)

    def _publish(self, warc: WarcFile) -> None:
        self.stats.inc_value("warc/files")
        self.archive.publish_warc(warc)

    def _info(self) -> dict[str, str]:
        settings = self.crawler.settings
        return {
            "software": f"newsarchive/{version('newsarchive')} (Scrapy {version('scrapy')}, "
            f"warcio {version('warcio')})",
            "format": "WARC File Format 1.0",
            "isPartOf": self.crawler.spider.crawl_id,
            "robots": "obey" if settings.getbool("ROBOTSTXT_OBEY") else "ignore",
            "http-headers-removed": ", ".join(sorted(self.unkept_headers)),
            "description": "newsarchive crawl of "
            + ", ".join(sorted(getattr(self.crawler.spider, "registry", {}))),
        }


class WarcCaptureMiddleware:
    """Downloader middleware: every response received goes to the crawl's WARC files."""

    def __init__(self, warc: WarcExtension):
        self.warc = warc

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> WarcCaptureMiddleware:
        warc = crawler.get_extension(WarcExtension)
        if warc is None:
            raise NotConfigured
        return cls(warc)

    async def process_response(self, request: Request, response: Response) -> Response:
        request.meta.pop(CAPTURE_META, None)  # a redirect's request inherits the meta of the one before
        if "cached" in response.flags:
            return response
        exchange = exchange_of(request, response, self.warc.unkept_headers)
        if self.warc.obey_noarchive:
            if _says_noarchive(response.headers.getlist("X-Robots-Tag")):
                self.warc.stats.inc_value("warc/noarchive")
                return response
            if request.meta.get(JUDGED_META) and _judged_page(response):
                request.meta[CAPTURE_META] = exchange  # the spider hands it to WarcExtension.hold
                return response
        capture = await self.warc.capture(exchange)
        request.meta[CAPTURE_META] = (capture.file, capture.offset, capture.length)
        return response


def _says_noarchive(robots_headers: list[bytes]) -> bool:
    if not robots_headers:
        return False
    # extraction's reading of the directives; imported when a site first sends one (its module
    # costs the crawl's start 30 ms otherwise)
    from pipelines.stages.extraction.metadata import noarchive_in

    return any(noarchive_in(value.decode("latin-1")) for value in robots_headers)


def meta_says_noarchive(metas: Iterable[tuple[str, str]]) -> bool:
    """Whether robots meta tags, as (name, content), say noarchive to us, as extraction reads them."""
    from pipelines.stages.extraction.metadata import ROBOTS_NAMES, noarchive_in  # (see _says_noarchive)

    return any(name.lower() in ROBOTS_NAMES and noarchive_in(content) for name, content in metas)


def _judged_page(response: Response) -> bool:
    """A page extraction will read (not one it drops unread as not_html, nor an error)."""
    content_type = response.headers.get("Content-Type", b"").decode("latin-1")
    return 200 <= response.status < 300 and (
        not content_type or "html" in content_type or "xml" in content_type
    )


def exchange_of(request: Request, response: Response, unkept: frozenset[str] = UNKEPT_HEADERS) -> Exchange:
    """What Scrapy kept of an exchange, less the headers ``unkept`` names. Its headers are the
    request's as the middlewares left them, and the response's as received, names in Scrapy's
    capitalisation."""
    return Exchange(
        url=response.url,
        method=request.method,
        request_headers=_pairs(request.headers, unkept),
        request_body=request.body,
        protocol=response.protocol or "HTTP/1.1",
        status=response.status,
        response_headers=_pairs(response.headers, unkept),
        body=response.body,
        ip_address=str(response.ip_address) if response.ip_address else None,
        fetched_at=datetime.now(UTC),
    )


def _pairs(headers: dict, unkept: frozenset[str]) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in headers.items()
        if name.decode("latin-1").lower() not in unkept
        for value in values
    ]
