"""Scrapy download handler that fetches every http(s) URL from the mirror server instead.

Only the transport changes: the response carries the original URL, so robots.txt, the offsite
filter, per-domain slots and the outlets' URL patterns all see the real hosts.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Request, Response


class MirrorDownloadHandler(BaseDownloadHandler):
    """Enabled by the ``MIRROR_URL`` setting (``newsarchive crawl --mirror`` sets it)."""

    lazy = False

    def __init__(self, crawler: Crawler):
        super().__init__(crawler)
        self.mirror_url = crawler.settings.get("MIRROR_URL")
        if not self.mirror_url:
            raise NotConfigured("MIRROR_URL is not set")
        self._http = HTTP11DownloadHandler(crawler)

    def mirrored_url(self, url: str) -> str:
        parts = urlsplit(url)
        path = parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.mirror_url.rstrip('/')}/{parts.hostname}{path}{query}"

    async def download_request(self, request: Request) -> Response:
        response = await self._http.download_request(request.replace(url=self.mirrored_url(request.url)))
        return response.replace(url=request.url, request=request)

    async def close(self) -> None:
        await self._http.close()
