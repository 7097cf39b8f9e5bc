"""The crawl's WARC capture: Scrapy adapters over :mod:`pipelines.warc`.

:class:`WarcCaptureMiddleware` sits next to the downloader, so it sees every response as
received: before decompression (``HttpCompressionMiddleware``), before redirects and retries
act on it, robots.txt and sitemaps included. It hands each exchange to
:class:`WarcExtension`, which writes it in a thread of its own, and waits for the record's
place, which it leaves in ``request.meta["warc_capture"]`` for the spider to put on the item.
Responses served from Scrapy's HTTP cache were captured when they were received; they are not
written again.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import version

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response

from crawler.extensions import ArchiveExtension, archive_extension
from pipelines.warc import Capture, Exchange, WarcFile, WarcWriter

CAPTURE_META = "warc_capture"  # (file, offset, length) of the response record


class WarcExtension:
    """One crawl's WARC files, written in the spool folder of the crawl's archive.

    Settings: ``WARC_ENABLED`` (``crawl --no-warc`` turns it off), ``WARC_MAX_BYTES`` (a file
    rotates past this size; 1 GB, as Heritrix). A full file is published at once, and so is the
    last one when the crawl closes, before its manifest lists them all. Counts ``warc/records``
    (exchanges) and ``warc/files``.
    """

    def __init__(self, crawler: Crawler, max_bytes: int):
        self.crawler = crawler
        self.stats = crawler.stats
        self.max_bytes = max_bytes
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="warc")
        self._writer: WarcWriter | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> WarcExtension:
        if not crawler.settings.getbool("WARC_ENABLED"):
            raise NotConfigured
        return cls(crawler, crawler.settings.getint("WARC_MAX_BYTES"))

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

    async def close(self) -> None:
        """Finish the file being written and queue it for publication, with the count of records
        its writer kept (left to the spool's publication, it would be read back whole to count
        them: 0.5 ms a page at the crawl's end)."""
        try:
            if self._writer is not None:
                last = await asyncio.get_running_loop().run_in_executor(self._thread, self._writer.finish)
                if last is not None:
                    self._publish(last)
        finally:
            self._thread.shutdown()

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
        capture = await self.warc.capture(exchange_of(request, response))
        request.meta[CAPTURE_META] = (capture.file, capture.offset, capture.length)
        return response


def exchange_of(request: Request, response: Response) -> Exchange:
    """What Scrapy kept of an exchange. Its headers are the request's as the middlewares left
    them, and the response's as received, names in Scrapy's capitalisation."""
    return Exchange(
        url=response.url,
        method=request.method,
        request_headers=_pairs(request.headers),
        request_body=request.body,
        protocol=response.protocol or "HTTP/1.1",
        status=response.status,
        response_headers=_pairs(response.headers),
        body=response.body,
        ip_address=str(response.ip_address) if response.ip_address else None,
        fetched_at=datetime.now(UTC),
    )


def _pairs(headers: dict) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in headers.items()
        for value in values
    ]
